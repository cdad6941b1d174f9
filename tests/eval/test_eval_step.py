"""The eval step end to end: results, summary, the answer cache, bad input, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from jobs.common.errors import InvalidData, TransientError

from tests.conftest import REPO
from tests.eval.evalkit import ITEMS, endpoint_cfg, eval_spec, read_output, write_jsonl


def results(project) -> tuple[dict, list[dict]]:
    lines = read_output(project, "results.jsonl").read_text().splitlines()
    return json.loads(lines[0])["meta"], [json.loads(ln) for ln in lines[1:]]


def summary(project) -> dict:
    return json.loads(read_output(project, "summary.json").read_text())


def test_results_and_summary(run_eval, endpoint, fake, project):
    manifest = run_eval(endpoint_cfg(endpoint, decoding={"temperature": 0.2, "maxNewTokens": 32}))
    meta, rows = results(project)
    assert meta["model"] == "fake-1" and meta["endpoint"] == endpoint and meta["temperature"] == 0.2
    assert meta["synonyms"] == {"Paris": ["City of Light"]} and meta["mode"] == "eval"
    assert meta["backend"]["endpoint"]["baseUrl"] == endpoint and meta["previous"] is None
    assert meta["source"]["items"] == "items.jsonl" and len(meta["source"]["sha256"]) == 64
    by_id = {r["id"]: r for r in rows}
    assert [r["id"] for r in rows] == [i["id"] for i in ITEMS]
    assert {i: r["passed"] for i, r in by_id.items()} == {
        "de": True, "sum": True, "fr": True, "json": True, "greet": True, "planet": False
    }
    assert by_id["fr"]["checks"][0]["detail"] == "matched 'City of Light'"
    assert by_id["sum"]["checks"][0]["type"] == "exact"
    assert by_id["de"]["messages"] == ITEMS[0]["messages"] and by_id["de"]["expected"] == "Berlin"
    assert by_id["de"]["response"] == "The capital of Germany is Berlin."
    assert by_id["de"]["tokens"] == {"prompt": 6, "completion": 6} and by_id["de"]["cached"] is False
    assert fake.bodies[0]["max_tokens"] == 32
    s = summary(project)
    assert s["items"] == 6 and s["passed"] == 5 and s["passRate"] == round(5 / 6, 4)
    assert s["perCheck"]["any_of"] == {"passed": 2, "total": 3, "passRate": round(2 / 3, 4)}
    assert s["perCheck"]["regex"]["passed"] == 1 and s["perCheck"]["json_valid"]["passed"] == 1
    assert s["cache"] == {"hits": 0, "misses": 6} and s["modelCalls"] == 6 == fake.calls
    assert s["latency"]["p50"] > 0 and s["latency"]["p95"] >= s["latency"]["p50"]
    assert manifest["outputs"] == {"results": "results.jsonl", "summary": "summary.json"}
    assert manifest["metrics"]["passRate"] == s["passRate"] and manifest["metrics"]["modelCalls"] == 6


def test_second_run_is_answered_from_the_cache_with_zero_model_calls(run_eval, endpoint, fake, project):
    run_eval(endpoint_cfg(endpoint))
    first = [r["response"] for r in results(project)[1]]
    assert fake.calls == 6
    manifest = run_eval(endpoint_cfg(endpoint))
    assert fake.calls == 6  # nothing asked again
    _, rows = results(project)
    assert [r["response"] for r in rows] == first and all(r["cached"] for r in rows)
    s = summary(project)
    assert s["cache"] == {"hits": 6, "misses": 0} and s["modelCalls"] == 0
    assert manifest["metrics"]["cacheHits"] == 6 and s["latency"]["measured"] == 0
    assert (project / "store" / "cache" / "eval-answers").is_dir()


def test_cache_key_covers_options_mode_and_model(run_eval, endpoint, fake):
    run_eval(endpoint_cfg(endpoint))
    run_eval(endpoint_cfg(endpoint, decoding={"temperature": 0.7}))
    assert fake.calls == 12
    run_eval(endpoint_cfg(endpoint, mode="strict"))
    assert fake.calls == 18
    cfg = endpoint_cfg(endpoint)
    cfg["backend"]["endpoint"]["model"] = "fake-2"
    run_eval(cfg)
    assert fake.calls == 24
    run_eval(endpoint_cfg(endpoint, decoding={"temperature": 0.7}))
    assert fake.calls == 24


def test_cache_off_asks_every_time(run_eval, endpoint, fake, project):
    run_eval(endpoint_cfg(endpoint, cache=False))
    run_eval(endpoint_cfg(endpoint, cache=False))
    assert fake.calls == 12 and summary(project)["cache"] == {"hits": 0, "misses": 0}


def test_answers_before_a_failure_are_kept_in_the_cache(run_eval, endpoint, fake, project):
    fake.answers["boom"] = 500
    write_jsonl(project / "boom.jsonl", [*ITEMS, {"id": "boom", "messages": [{"role": "user", "content": "boom"}], "expected": "x"}])
    with pytest.raises(TransientError, match="answered 500"):
        run_eval(endpoint_cfg(endpoint, items="boom.jsonl", concurrency=1, retries=0))
    assert fake.calls == 7
    run_eval(endpoint_cfg(endpoint))
    assert fake.calls == 7 and summary(project)["cache"]["hits"] == 6


def test_synonyms_override_changes_the_verdict(run_eval, endpoint, project):
    (project / "synonyms.local.json").write_text(json.dumps({"Paris": ["Lutetia"]}))
    run_eval(endpoint_cfg(endpoint, synonymsOverride="synonyms.local.json"))
    meta, rows = results(project)
    assert meta["synonyms"] == {"Paris": ["Lutetia"]}
    assert next(r for r in rows if r["id"] == "fr")["passed"] is False


def test_malformed_items_fail_the_step_unless_allow_partial(run_eval, endpoint, fake, project):
    write_jsonl(project / "mixed.jsonl", [ITEMS[0], "{oops", {"id": "x"}, ITEMS[1]])
    with pytest.raises(InvalidData, match=r"2 malformed item\(s\)") as err:
        run_eval(endpoint_cfg(endpoint, items="mixed.jsonl"))
    assert "line 2: not JSON" in str(err.value) and "line 3: messages" in str(err.value)
    assert fake.calls == 0
    run_eval(endpoint_cfg(endpoint, items="mixed.jsonl", allowPartial=True))
    s = summary(project)
    assert s["items"] == 2 and [m["line"] for m in s["malformed"]] == [2, 3]
    assert results(project)[0]["source"]["malformedLines"] == [2, 3]


def test_asgi_app_in_process(run_eval, project):
    from tests.eval import openai_fake

    before = openai_fake.service.calls
    run_eval({"items": "items.jsonl", "backend": {"asgi": "tests.eval.openai_fake:app"}})
    meta, rows = results(project)
    assert openai_fake.service.calls - before == 6
    assert meta["model"] == "tests.eval.openai_fake:app" and rows[0]["response"] == "echo: What is the capital of Germany?"


def run_module(project, cfg: dict, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "jobs.eval"],
        cwd=REPO,
        env={
            **os.environ,
            "PYTHONPATH": str(REPO),
            "FT_SPEC": json.dumps(eval_spec(cfg)),
            "FT_STORE_URI": (project / "store").as_uri(),
            "FT_BASE_DIR": str(project),
            **(env or {}),
        },
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_step_exit_codes_for_a_wrong_key_and_an_unreachable_endpoint(endpoint, fake, project):
    fake.api_key = "right"
    cfg = endpoint_cfg(endpoint, concurrency=1)
    cfg["backend"]["endpoint"]["apiKeySecret"] = {"name": "llm", "key": "LLM_KEY"}
    proc = run_module(project, cfg, {"LLM_KEY": "sk-wrong-key"})
    assert proc.returncode == 2, proc.stderr
    assert "rejected the API key (401" in proc.stderr and "sk-wrong-key" not in proc.stderr + proc.stdout
    assert fake.calls == 1  # not retried, and the step stopped at the first 401
    proc = run_module(project, endpoint_cfg("http://127.0.0.1:9/v1", retries=1))
    assert proc.returncode == 75, proc.stderr
    assert "unreachable" in proc.stderr and "gave up after 2 attempt(s)" in proc.stderr
    assert not read_output(project, "_manifest.json").exists()
