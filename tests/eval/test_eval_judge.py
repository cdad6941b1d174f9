"""Judge checks: a fake OpenAI-compatible judge on 127.0.0.1 grades the eval step's answers."""

from __future__ import annotations

import json
import re

import pytest
from pydantic import ValidationError

from jobs.common.checks import Verdict, run_checks
from jobs.common.errors import InvalidData
from jobs.common.judge import agreement, judge_prompt, parse_verdict
from jobs.common.spec import Check, EvalStep, GrpoReward

from tests.eval.evalkit import endpoint_cfg, read_output, write_jsonl
from tests.eval.openai_fake import FakeOpenAI, serve

RUBRIC = "The answer names the right thing, in any words."
GOOD = ("Berlin", "City of Light", "4")


def grade(prompt: str) -> str:
    """The fake judge: pass when the graded answer says one of GOOD."""
    answer = re.search(r"Answer to grade:\n(.*)\Z", prompt, re.DOTALL).group(1)
    verdict = "pass" if any(g in answer for g in GOOD) else "fail"
    return json.dumps({"verdict": verdict, "reason": f"graded {answer[:20]!r}"})


def item(id_: str, question: str, expected: str | None, *checks: dict) -> dict:
    row = {"id": id_, "messages": [{"role": "user", "content": question}], "checks": list(checks)}
    return row | ({"expected": expected} if expected else {})


JUDGE = {"type": "judge", "rubric": RUBRIC}
ITEMS = [
    item("de", "What is the capital of Germany?", "Berlin", {"type": "any_of"}, JUDGE),  # both pass
    item("fr", "What is the capital of France?", "Paris", {"type": "any_of"}, JUDGE),  # judge only
    item("planet", "Which planet is the largest?", "Jupiter", {"type": "any_of"}, JUDGE),  # both fail
    item("sum", "What is 2+2?", "4", {"type": "exact"}, JUDGE),  # both pass
    item("greet", "Greet me.", None, JUDGE),  # judge alone: not in the agreement
]


@pytest.fixture
def judge_server():
    judge = FakeOpenAI(api_key="judge-s3cret", reply=grade)
    with serve(judge) as url:
        judge.url = url
        yield judge


def judged_cfg(endpoint: str, judge_url: str) -> dict:
    cfg = endpoint_cfg(endpoint, items="judged.jsonl")
    cfg.pop("synonyms")  # no synonyms: "City of Light" fails any_of, the judge passes it
    cfg["judge"] = {
        "backend": {"endpoint": {"baseUrl": judge_url, "model": "judge-1", "apiKeySecret": {"name": "judge", "key": "JUDGE_API_KEY"}}}
    }
    return cfg


def test_the_judge_grades_answers_its_key_comes_from_the_secret_env_and_verdicts_are_cached(
    project, run_eval, endpoint, judge_server, monkeypatch
):
    write_jsonl(project / "judged.jsonl", ITEMS)
    monkeypatch.setenv("JUDGE_API_KEY", "judge-s3cret")
    manifest = run_eval(judged_cfg(endpoint, judge_server.url))

    rows = {r["id"]: r for r in map(json.loads, read_output(project, "results.jsonl").read_text().splitlines()[1:])}
    judged = {i: next(o for o in r["checks"] if o["type"] == "judge") for i, r in rows.items()}
    assert {i: o["passed"] for i, o in judged.items()} == {"de": True, "fr": True, "planet": False, "sum": True, "greet": False}
    assert judged["fr"]["rubric"] == RUBRIC and judged["fr"]["detail"] == "graded 'People call it the C'"
    assert rows["fr"]["passed"] is False  # any_of failed: every check must pass
    assert judge_server.calls == 5
    body = judge_server.bodies[0]
    assert body["model"] == "judge-1" and body["temperature"] == 0.0
    assert body["messages"][0]["role"] == "system" and RUBRIC in body["messages"][1]["content"]

    summary = json.loads(read_output(project, "summary.json").read_text())
    # Judge vs checks on de, fr, planet, sum: (1,1) (1,0) (0,0) (1,1): 3 of 4 agree; chance 0.5, so kappa 0.5.
    assert summary["judge"]["agreement"] == {
        "items": 4, "agreement": 0.75, "kappa": 0.5, "judgePassRate": 0.75, "checksPassRate": 0.5
    }
    assert summary["judge"]["calls"] == 5 and summary["judge"]["unreadable"] == 0
    assert manifest["metrics"]["judgeAgreement"] == 0.75 and manifest["metrics"]["judgeKappa"] == 0.5

    run_eval(judged_cfg(endpoint, judge_server.url))  # the same answers and rubric: all from the cache
    assert judge_server.calls == 5
    new_rubric = {"type": "judge", "rubric": "Say it."}  # a new rubric is a new question to the judge
    write_jsonl(project / "judged.jsonl", [item("de", "What is the capital of Germany?", "Berlin", new_rubric)])
    run_eval(judged_cfg(endpoint, judge_server.url))
    assert judge_server.calls == 6


def test_a_wrong_judge_key_fails_the_step_without_showing_it(project, run_eval, endpoint, judge_server, monkeypatch):
    write_jsonl(project / "judged.jsonl", ITEMS)
    monkeypatch.setenv("JUDGE_API_KEY", "wrong-key-123")
    with pytest.raises(Exception) as err:
        run_eval(judged_cfg(endpoint, judge_server.url))
    assert getattr(err.value, "code", None) == "EndpointUnauthorized"
    assert "JUDGE_API_KEY" in str(err.value) and "wrong-key-123" not in str(err.value)


def test_an_item_judge_check_without_a_judge_is_a_malformed_line(project, run_eval, endpoint):
    write_jsonl(project / "judged.jsonl", ITEMS)
    with pytest.raises(InvalidData, match=r"line 1: item 'de' has a judge check, which needs steps.eval.judge"):
        run_eval(endpoint_cfg(endpoint, items="judged.jsonl"))


def test_the_spec_refuses_judge_checks_without_a_judge_or_rubric():
    with pytest.raises(ValidationError, match="a judge check needs rubric"):
        Check(type="judge")
    with pytest.raises(ValidationError, match="rubric applies only to type: judge"):
        Check(type="exact", rubric="x")
    with pytest.raises(ValidationError, match="a judge check needs judge:"):
        EvalStep.model_validate({"items": "i.jsonl", "backend": {"asgi": "m:app"}, "checks": [JUDGE]})
    with pytest.raises(ValidationError, match="cannot reward GRPO"):
        GrpoReward.model_validate({"check": JUDGE})
    with pytest.raises(ValidationError, match="name the keys apart"):
        EvalStep.model_validate({
            "items": "i.jsonl",
            "backend": {"endpoint": {"baseUrl": "https://a/v1", "model": "m", "apiKeySecret": {"name": "a", "key": "K"}}},
            "judge": {"backend": {"endpoint": {"baseUrl": "https://b/v1", "model": "j", "apiKeySecret": {"name": "b", "key": "K"}}}},
        })


@pytest.mark.parametrize(
    ("reply", "passed", "readable"),
    [
        ('{"verdict": "pass", "reason": "ok"}', True, True),
        ('```json\n{"verdict": "FAIL", "reason": "wrong city"}\n```', False, True),
        ("PASS: names Berlin", True, True),
        ("Fail. It says Saturn.", False, True),
        ("I think it is fine", False, False),
        ('{"verdict": "maybe"}', False, False),
    ],
)
def test_verdicts_are_read_from_json_or_a_leading_word_and_anything_else_fails(reply, passed, readable):
    verdict = parse_verdict(reply)
    assert (verdict.passed, verdict.readable) == (passed, readable)
    [outcome] = run_checks([Check(**JUDGE)], "answer", None, {}, [verdict])
    assert outcome.passed is passed and outcome.detail.startswith("unreadable verdict") is (not readable)


def test_the_prompt_shows_the_reference_only_when_there_is_one():
    with_ref = judge_prompt("r", [{"role": "user", "content": "q"}], "Berlin", "a")[1]["content"]
    assert "Reference answer:\nBerlin" in with_ref and with_ref.endswith("Answer to grade:\na")
    assert "Reference answer" not in judge_prompt("r", [{"role": "user", "content": "q"}], None, "a")[1]["content"]


def test_agreement_needs_both_kinds_of_check_and_kappa_is_none_when_undefined():
    judge = {"type": "judge", "passed": True}
    assert agreement([[judge], [{"type": "exact", "passed": True}]]) is None
    same = agreement([[judge, {"type": "exact", "passed": True}]] * 3)
    assert same["agreement"] == 1.0 and same["kappa"] is None
    with pytest.raises(Exception, match="needs the judge's verdict"):
        run_checks([Check(**JUDGE)], "a", None, {})
    assert run_checks([Check(**JUDGE), Check(type="exact")], "a", "a", {}, [Verdict(False, "no")])[1].passed


def test_rerun_asks_the_same_judge_and_reads_its_verdicts_from_the_cache(project, run_eval, endpoint, judge_server, monkeypatch, tmp_path):
    from tests.eval.test_eval_rerun import ftctl, read

    write_jsonl(project / "judged.jsonl", ITEMS)
    monkeypatch.setenv("JUDGE_API_KEY", "judge-s3cret")
    run_eval(judged_cfg(endpoint, judge_server.url))
    results = read_output(project, "results.jsonl")
    assert ftctl("rerun", str(results), "--all", "--cache", "--out", str(tmp_path / "cached.jsonl")) == 0
    assert judge_server.calls == 5  # every verdict from the cache
    assert ftctl("rerun", str(results), "--ids", "fr", "--out", str(tmp_path / "asked.jsonl")) == 0
    assert judge_server.calls == 6
    _, [row] = read(tmp_path / "asked.jsonl")
    assert [o["passed"] for o in row["checks"]] == [False, True]  # any_of fails, the judge passes
