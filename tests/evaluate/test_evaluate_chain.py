"""The curation chain in `ftctl run`: eval answers -> pack keeps the passing ones -> train -> evaluate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from jobs.cli.main import main

from tests.eval.openai_fake import FakeOpenAI, serve

N = 20
WRONG = {3, 11}  # items the live system answers wrongly


def questions() -> list[tuple[str, str, str]]:
    """(question, expected, the system's answer)."""
    out = []
    for i in range(N):
        expected = f"{i * 7} apples"
        said = f"Counting them carefully, there are {i * 7 + (1 if i in WRONG else 0)} apples in basket {i}."
        out.append((f"How many apples are in basket {i}?", expected, said))
    return out


def ftctl(*argv: str) -> int:
    with pytest.raises(SystemExit) as done:
        main(list(argv))
    return done.value.code


def write_project(root: Path, url: str, steps: dict, model: dict) -> Path:
    items = root / "items.jsonl"
    items.write_text("".join(
        json.dumps({"id": f"b{i}", "messages": [{"role": "user", "content": q}], "expected": e}) + "\n"
        for i, (q, e, _) in enumerate(questions())
    ))
    run = {
        "apiVersion": "finetune.dev/v1alpha1",
        "kind": "FineTuneRun",
        "metadata": {"name": "curate"},
        "spec": {
            "model": model,
            "data": {"sources": [{"fromStep": "eval", "format": "eval_results"}]},
            "steps": {
                "eval": {"items": "items.jsonl", "backend": {"endpoint": {"baseUrl": url, "model": "live"}}},
                "pack": {"format": "openai_chat", "minOutputTokens": 0, "split": {"train": 0.8, "val": 0.1, "test": 0.1}},
                **steps,
            },
        },
    }
    path = root / "run.yaml"
    path.write_text(yaml.safe_dump(run))
    return path


@pytest.fixture
def live():
    service = FakeOpenAI({q: said for q, _, said in questions()})
    with serve(service) as url:
        yield service, url


def test_eval_results_feed_pack_with_the_passing_answers(live, tmp_path):
    service, url = live
    run = write_project(tmp_path, url, {}, {"hf": "model"})
    store = tmp_path / "store"
    assert ftctl("run", str(run), "--store", store.as_uri(), "--work-dir", str(tmp_path / "work")) == 0
    assert service.calls == N
    pack = store / "runs" / "default" / "curate" / "pack"
    rows = [json.loads(ln) for name in ("train", "val", "test") for ln in (pack / f"{name}.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in rows) == sorted(f"b{i}" for i in range(N) if i not in WRONG)
    by_id = {r["id"]: r for r in rows}
    assert by_id["b5"]["messages"] == [
        {"role": "user", "content": "How many apples are in basket 5?"},
        {"role": "assistant", "content": "Counting them carefully, there are 35 apples in basket 5."},
    ]


@pytest.mark.slow
def test_eval_pack_train_evaluate_in_ftctl_run(live, tmp_path, tiny):
    _, url = live
    steps = {"train": {"maxSteps": 2, "batchSize": 2, "maxLength": 128}, "evaluate": {"decoding": {"maxNewTokens": 4}}}
    run = write_project(tmp_path, url, steps, {"hf": str(tiny["model"]), "name": "tiny-llama"})
    store = tmp_path / "store"
    assert ftctl("run", str(run), "--store", store.as_uri(), "--work-dir", str(tmp_path / "work")) == 0
    evaluate = store / "runs" / "default" / "curate" / "evaluate"
    metrics = json.loads((evaluate / "metrics.json").read_text())
    assert metrics["examples"] >= 1 and metrics["trained"] == "adapter"
    assert (evaluate / "_manifest.json").is_file() and (evaluate / "report.html").is_file()
