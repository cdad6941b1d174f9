"""Fixtures for the gguf step: SmolLM2's real tokenizer, a tiny random Llama using it, a LoRA."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from ggufkit import TEST_ROWS, run_spec, save_tiny_llama, save_tiny_lora, smollm2_gguf

GOTEMPLATE = Path(__file__).parent / "gotemplate" / "main.go"


@pytest.fixture(scope="session")
def smollm2_tokenizer_dir(tmp_path_factory) -> Path:
    """SmolLM2-135M-Instruct's tokenizer (49152 tokens, ChatML template), read from the packaged GGUF."""
    from transformers import AutoTokenizer

    gguf = smollm2_gguf()
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    out = tmp_path_factory.mktemp("smollm2-tokenizer")
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory, smollm2_tokenizer_dir) -> Path:
    return save_tiny_llama(tmp_path_factory.mktemp("tiny-llama"), smollm2_tokenizer_dir)


@pytest.fixture
def make_tiny_llama(smollm2_tokenizer_dir):
    return lambda out, **kw: save_tiny_llama(out, smollm2_tokenizer_dir, **kw)


@pytest.fixture(scope="session")
def tiny_lora(tmp_path_factory, tiny_llama) -> Path:
    return save_tiny_lora(tiny_llama, tmp_path_factory.mktemp("tiny-lora"))


@pytest.fixture(scope="session")
def go_render(tmp_path_factory):
    """Renders a TEMPLATE with Go's text/template, the engine Ollama uses."""
    go = shutil.which("go")
    if go is None:
        pytest.skip("needs the Go toolchain (apt-get install golang-go) to run Go templates")
    binary = tmp_path_factory.mktemp("gotemplate") / "gotemplate"
    subprocess.run([go, "build", "-o", str(binary), str(GOTEMPLATE)], check=True, capture_output=True)

    def render(template: str, messages: list[dict[str, str]]) -> str:
        done = subprocess.run(
            [str(binary)], input=json.dumps({"template": template, "messages": messages}),
            capture_output=True, text=True, check=True,
        )
        return done.stdout

    return render


def llama_cpp_ready() -> str | None:
    """Why the llama.cpp tests cannot run here, or None when they can."""
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        return "llama-cpp-python is not installed (make llamacpp)"
    from jobs.gguf.install import CONVERTER, default_dir

    if not (default_dir() / CONVERTER).is_file():
        return f"llama.cpp's converter is not in {default_dir()} (make llamacpp)"
    return None


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    marked = [item for item in items if "llamacpp" in item.keywords and item.path.is_relative_to(here)]
    reason = llama_cpp_ready() if marked else None
    for item in marked if reason else []:
        item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture
def gguf_run(tmp_path, monkeypatch):
    """Commits pack and train outputs to a file store and points the step's environment at them.

    Call it with the train step's output: `adapter=` a folder, or `outputs={}` for a broken one.
    Returns the store.
    """
    from jobs.common.artifacts import StepWriter
    from jobs.common.store import open_store

    def prepare(base: Path | str, *, adapter: Path | None = None, outputs: dict | None = None,
                gguf: dict | None = None, train_config: dict | None = None, rows: list[dict] = TEST_ROWS,
                evaluate: dict | None = None, evaluated: dict | None = None):
        store = open_store((tmp_path / "store").as_uri())
        pack = StepWriter(store, "default", "tiny", "pack")
        pack.begin()
        test = tmp_path / "test.jsonl"
        test.write_text("".join(json.dumps(r) + "\n" for r in rows))
        pack.add_file("test.jsonl", test)
        pack.commit(input_key="pack-key", code_version="test", outputs={"test": "test.jsonl"})
        train = StepWriter(store, "default", "tiny", "train")
        train.begin()
        if adapter is not None:
            train.add_dir("adapter", adapter)
        config = train_config or {"method": "sft", "train": {"quantization": "none"}}
        train.add_json("train_config.json", config, tmp_path / "train-json")
        train.commit(input_key="train-key", code_version="test",
                     outputs={"adapter": "adapter/"} if outputs is None else outputs)
        if evaluate is not None:  # evaluate's output as the gguf step reads it: its metrics.json
            done = StepWriter(store, "default", "tiny", "evaluate")
            done.begin()
            done.add_json("metrics.json", evaluated or {}, tmp_path / "evaluate-json")
            done.commit(input_key="evaluate-key", code_version="test", outputs={"metrics": "metrics.json"})
        monkeypatch.setenv("FT_SPEC", json.dumps(run_spec(base, gguf, evaluate)))
        monkeypatch.setenv("FT_STORE_URI", store.uri)
        monkeypatch.setenv("FT_SCRATCH", str(tmp_path / "scratch"))
        return store

    return prepare
