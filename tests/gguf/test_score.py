"""Scoring every quantization on the test split: the pure parts with stand-in models, the gate's
quantized names in the spec and evaluate, and (marked llamacpp) the gguf step with llama.cpp."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from jobs.common import artifacts
from jobs.common.backends import Reply
from jobs.common.errors import GateNotMet
from jobs.common.gate import parse_gate, quant_term, quantized
from jobs.common.spec import EvaluateStep, FineTuneRun
from jobs.common.testset import Example
from jobs.gguf.score import judge_quantized_clauses, quant_gate_metrics, report_html, score_files

from ggufkit import TEST_ROWS, run_spec

EXAMPLES = [Example("a", [{"role": "user", "content": "Capital of Germany?"}], "Berlin"),
            Example("b", [{"role": "user", "content": "2+2?"}], "4")]


class StandIn:
    """A quantization that answers from a table (as llama.cpp would, one chat at a time)."""

    def __init__(self, answers: dict[str, str]):
        self.answers, self.identity, self.closed = answers, {"kind": "stand-in"}, False

    def generate(self, batch, decoding, on_reply=None):
        replies = [Reply(self.answers[m[-1]["content"]]) for m in batch]
        for i, r in enumerate(replies):
            on_reply and on_reply(i, r)
        return replies

    def close(self):
        self.closed = True


def test_each_quantization_is_scored_with_the_same_checks_and_named_for_the_gate(tmp_path):
    models = {"Q4_K_M": StandIn({"Capital of Germany?": "Berlin", "2+2?": "5"}),
              "Q8_0": StandIn({"Capital of Germany?": "Berlin", "2+2?": "4"})}
    cfg = EvaluateStep.model_validate({"checks": [{"type": "exact"}]})
    files = {q: tmp_path / f"{q}.gguf" for q in models}
    scored = score_files(files, EXAMPLES, cfg, lambda q, path: models[q], judge=None)
    assert scored["Q4_K_M"]["metrics"] == {"passRate": 0.5, "exactMatch": 0.5, "tokenF1": 0.5}  # no loss: llama.cpp scores none
    assert scored["Q8_0"]["perCheck"] == {"exact:expected": 1.0}
    assert [r["answer"] for r in scored["Q4_K_M"]["rows"]] == ["Berlin", "5"]
    assert all(m.closed for m in models.values()) and scored["Q8_0"]["seconds"] >= 0
    flat = quant_gate_metrics({q: s["metrics"] for q, s in scored.items()})
    assert flat["q4_k_mPassRate"] == 0.5 and flat["q8_0TokenF1"] == 1.0

    gate = "tunedPassRate >= basePassRate and q4_k_mPassRate >= tunedPassRate - 0.02 and q8_0PassRate >= 0.9"
    verdict = judge_quantized_clauses(gate, {"tunedPassRate": 1.0, "basePassRate": 0.0, **flat})
    assert verdict["passed"] is False and verdict["quantizations"] == ["Q4_K_M", "Q8_0"]
    assert verdict["explanation"] == "0.5000 >= 0.9800: NOT MET; 1.0000 >= 0.9000: ok"  # evaluate judged the first clause
    assert judge_quantized_clauses("tunedPassRate >= basePassRate", flat) is None

    result = {"examples": 2, "base": {"passRate": 0.0, "loss": 2.0}, "tuned": {"passRate": 1.0, "loss": 1.0},
              "quantizations": {q: {k: v for k, v in s.items() if k != "rows"} for q, s in scored.items()}, "gate": verdict}
    html = report_html(result, "tiny")
    assert "<th>base</th><th>tuned</th><th>Q4_K_M</th><th>Q8_0</th>" in html
    assert '<tr><td>pass rate</td><td class="num">0</td><td class="num">1</td><td class="num">0.5</td><td class="num">1</td></tr>' in html
    assert "Gate NOT MET" in html and "Scoring cost" in html


def test_quantized_metric_names_parse_and_only_known_quantizations_count():
    assert quant_term("q4_k_mPassRate") == ("Q4_K_M", "passRate") and quant_term("f16ExactMatch") == ("F16", "exactMatch")
    assert quant_term("tunedPassRate") is None and quant_term("q4_k_mLoss") is None
    with pytest.raises(ValueError, match="unknown metric 'q4_k_mLoss'.*q4_k_mPassRate"):
        parse_gate("q4_k_mLoss < 1")
    assert [quantized(c) for c in parse_gate("q8_0PassRate >= tunedPassRate and tunedLoss < baseLoss")] == [True, False]


def spec(gate: str, gguf: dict | None = None, confidence: float | None = None) -> dict:
    return run_spec(Path("m"), gguf or {}, {"gate": gate} | ({"gateConfidence": confidence} if confidence else {}))


def test_the_spec_refuses_a_quantized_gate_the_gguf_step_cannot_answer():
    FineTuneRun.model_validate(spec("q4_k_mPassRate >= tunedPassRate - 0.02"))
    with pytest.raises(ValidationError, match=r"names Q5_K_M, which steps.gguf.quantizations \(Q4_K_M, Q8_0\) does not make"):
        FineTuneRun.model_validate(spec("q5_k_mPassRate >= 0.5"))
    with pytest.raises(ValidationError, match="enable steps.gguf with score: true"):
        FineTuneRun.model_validate(spec("q4_k_mPassRate >= 0.5", {"score": False}))
    with pytest.raises(ValidationError, match="gateConfidence: clauses naming a quantization"):
        FineTuneRun.model_validate(spec("q4_k_mPassRate >= 0.5", confidence=0.9))
    with pytest.raises(ValidationError, match="unknown metric 'q4_k_mPasRate'"):
        FineTuneRun.model_validate(spec("q4_k_mPasRate >= 0.5"))


def test_evaluate_leaves_the_quantized_clauses_to_the_gguf_step():
    from jobs.evaluate.run import check_gate

    gate = check_gate("tunedPassRate >= basePassRate and q4_k_mPassRate >= 0.99", {"tunedPassRate": 1.0, "basePassRate": 0.5}, {}, None)
    assert gate["passed"] is True
    assert gate["explanation"] == "1.0000 >= 0.5000: ok; clauses naming a quantization: judged by the gguf step"


EVALUATED = {"base": {"passRate": 0.0}, "tuned": {"passRate": 1.0}, "gateMetrics": {"basePassRate": 0.0, "tunedPassRate": 1.0}}


@pytest.mark.llamacpp
def test_a_quantization_failing_the_gate_is_scored_reported_and_not_promoted(gguf_run, tiny_llama, tiny_lora, tmp_path):
    from jobs.common.stepctx import execute
    from jobs.gguf.run import run_step

    store = gguf_run(tiny_llama, adapter=tiny_lora, gguf={"quantizations": ["Q4_K_M", "Q8_0"], "smokePrompts": 0},
                     evaluate={"checks": [{"type": "exact"}], "decoding": {"maxNewTokens": 4},
                               "gate": "q4_k_mPassRate >= tunedPassRate - 0.02"},
                     evaluated=EVALUATED)
    with pytest.raises(GateNotMet, match=r"not met for Q4_K_M \(scored with llama.cpp on the test split\).*no GGUF file promoted"):
        execute("gguf", run_step)
    prefix = "runs/default/tiny/gguf"
    uploaded = set(store.list(prefix))
    assert {f"{prefix}/quantized.json", f"{prefix}/quantized.html"} <= uploaded
    assert not any(k.endswith(".gguf") for k in uploaded) and f"{prefix}/_manifest.json" not in uploaded
    scores = json.loads(store.get_bytes(f"{prefix}/quantized.json"))
    assert set(scores["quantizations"]) == {"Q4_K_M", "Q8_0"} and scores["examples"] == len(TEST_ROWS)
    assert scores["tuned"] == EVALUATED["tuned"] and scores["gate"]["passed"] is False


@pytest.mark.llamacpp
def test_a_met_quantized_gate_commits_the_files_with_their_scores(gguf_run, tiny_llama, tiny_lora, tmp_path):
    from jobs.common.stepctx import execute
    from jobs.gguf.run import run_step

    store = gguf_run(tiny_llama, adapter=tiny_lora, gguf={"quantizations": ["Q8_0"], "smokePrompts": 0},
                     evaluate={"decoding": {"maxNewTokens": 4}, "gate": "q8_0PassRate >= 0"}, evaluated=EVALUATED)
    manifest = execute("gguf", run_step)
    assert manifest["outputs"]["quantizedReport"] == "quantized.html" and "gguf:Q8_0" in manifest["outputs"]
    metrics = manifest["metrics"]
    assert metrics["gatePassed"] is True and set(metrics["quantized"]["Q8_0"]) == {"passRate", "exactMatch", "tokenF1"}
    assert metrics["q8_0PassRate"] == metrics["quantized"]["Q8_0"]["passRate"] and metrics["scoringSeconds"]["Q8_0"] > 0
    local = artifacts.fetch(store, manifest, tmp_path / "fetched")
    rows = [json.loads(line) for line in (local / "quantized-predictions.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [r["id"] for r in TEST_ROWS] and "answer" in rows[0]["Q8_0"]
