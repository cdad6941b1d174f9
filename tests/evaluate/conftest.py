"""A tiny random Llama with its own tokenizer, a LoRA adapter trained on the test answers,
and a store holding committed pack and train outputs, as those steps leave them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.evaluate.evaluatekit import build_classifier, build_model, build_tokenizer, commit, one_thread, train_adapter


@pytest.fixture
def one_torch_thread():
    with one_thread():
        yield


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("tiny")
    model_dir, adapter_dir = root / "model", root / "adapter"
    with one_thread():
        build_model(model_dir, build_tokenizer(model_dir))
        log = train_adapter(model_dir, adapter_dir)
    metrics = root / "metrics.jsonl"
    metrics.write_text("".join(json.dumps(r) + "\n" for r in log))
    return {"model": model_dir, "adapter": adapter_dir, "metrics": metrics}


@pytest.fixture
def run_evaluate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Run the evaluate step in this process over the given committed pack/train outputs."""
    from jobs.common.stepctx import execute
    from jobs.common.store import open_store
    from jobs.evaluate.run import run_step

    store_uri = (tmp_path / "store").as_uri()
    store = open_store(store_uri)

    def run(spec: dict[str, Any], test_rows: list[dict[str, Any]], train_files: dict[str, Path],
            pack_files: dict[str, Path] | None = None) -> dict[str, Any]:
        test = tmp_path / "test.jsonl"
        test.write_text("".join(json.dumps(r) + "\n" for r in test_rows))
        commit(store, "tiny", "pack", {"test.jsonl": test, **(pack_files or {})})
        commit(store, "tiny", "train", train_files)
        monkeypatch.setenv("FT_SPEC", json.dumps(spec))
        monkeypatch.setenv("FT_STORE_URI", store_uri)
        monkeypatch.setenv("FT_BASE_DIR", str(tmp_path))
        monkeypatch.setenv("FT_SCRATCH", str(tmp_path / "scratch"))
        monkeypatch.setenv("FT_FORCE", "1")
        return execute("evaluate", run_step)

    run.out = tmp_path / "store" / "runs" / "default" / "tiny" / "evaluate"
    run.store = store
    return run


@pytest.fixture(scope="session")
def tiny_classifier(tmp_path_factory) -> dict[str, Any]:
    with one_thread():
        return build_classifier(tmp_path_factory.mktemp("classifier"))
