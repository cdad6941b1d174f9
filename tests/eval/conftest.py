"""Fixtures for the eval step: a fake OpenAI server on 127.0.0.1, an eval set, a step runner."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.eval.evalkit import ANSWERS, ITEMS, SYNONYMS, eval_spec, write_jsonl
from tests.eval.openai_fake import FakeOpenAI, serve


@pytest.fixture
def fake() -> FakeOpenAI:
    return FakeOpenAI(ANSWERS)


@pytest.fixture
def endpoint(fake: FakeOpenAI) -> str:
    with serve(fake) as url:
        yield url


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project folder with the eval set and synonyms, as a user would have it."""
    write_jsonl(tmp_path / "items.jsonl", ITEMS)
    (tmp_path / "synonyms.json").write_text(json.dumps(SYNONYMS))
    return tmp_path


@pytest.fixture
def run_eval(project: Path, monkeypatch: pytest.MonkeyPatch):
    """Run the eval step in this process (FT_FORCE: past the step cache); returns its manifest."""
    from jobs.common.stepctx import execute
    from jobs.eval.run import run_step

    store_uri = (project / "store").as_uri()
    counter = {"n": 0}

    def run(eval_cfg: dict[str, Any], force: bool = True) -> dict[str, Any]:
        counter["n"] += 1
        monkeypatch.setenv("FT_SPEC", json.dumps(eval_spec(eval_cfg)))
        monkeypatch.setenv("FT_STORE_URI", store_uri)
        monkeypatch.setenv("FT_BASE_DIR", str(project))
        monkeypatch.setenv("FT_SCRATCH", str(project / f"scratch-{counter['n']}"))
        monkeypatch.setenv("FT_FORCE", "1" if force else "0")
        return execute("eval", run_step)

    run.store_uri = store_uri
    return run
