"""The evaluate step's pure parts: metrics, test rows, the gate's names, the report pieces."""

from __future__ import annotations

import json
import math

import pytest

from jobs.common.errors import InvalidData, MissingInput
from jobs.common.answermetrics import exact_match, generation_metrics, token_f1
from jobs.evaluate.metrics import classification_metrics, gate_metrics, split_gate_metrics
from jobs.evaluate.report import comparison_table, loss_curve, read_train_metrics
from jobs.common.testset import read_test_split, to_example


def test_exact_match_and_token_f1_normalize_like_squad():
    assert exact_match("The Berlin.", "berlin") == 1.0
    assert exact_match("Berlin city", "Berlin") == 0.0
    assert token_f1("the capital is Berlin", "Berlin") == pytest.approx(2 * (1 / 3) * 1 / (1 / 3 + 1))
    assert token_f1("", "") == 1.0 and token_f1("x", "") == 0.0 and token_f1("a b", "c d") == 0.0


def test_generation_metrics_weight_loss_by_tokens():
    rows = [
        {"passed": True, "exactMatch": 1.0, "tokenF1": 1.0, "nll": 2.0, "tokens": 1},
        {"passed": False, "exactMatch": 0.0, "tokenF1": 0.5, "nll": 6.0, "tokens": 3},
    ]
    m = generation_metrics(rows)
    assert m["passRate"] == 0.5 and m["exactMatch"] == 0.5 and m["tokenF1"] == 0.75
    assert m["loss"] == 2.0 and m["perplexity"] == pytest.approx(math.exp(2.0), rel=1e-4)


def test_classification_metrics_f1_family():
    m = classification_metrics(["a", "a", "b", "b"], ["a", "b", "b", "b"], ["a", "b"])
    assert m["accuracy"] == 0.75
    assert m["perClass"]["a"] == {"precision": 1.0, "recall": 0.5, "f1": 0.6667, "support": 2}
    assert m["f1Macro"] == pytest.approx((2 / 3 + 0.8) / 2, abs=1e-4)


def test_gate_metric_names_and_back():
    flat = gate_metrics({"passRate": 0.1, "loss": 2.0, "perplexity": None}, {"passRate": 0.5, "accuracy": 0.9})
    assert flat == {"basePassRate": 0.1, "baseLoss": 2.0, "tunedPassRate": 0.5, "tunedAccuracy": 0.9}
    assert split_gate_metrics({**flat, "examples": 4}) == ({"passRate": 0.1, "loss": 2.0}, {"passRate": 0.5, "accuracy": 0.9})


def test_rows_of_every_format_become_prompt_and_reference():
    chat = to_example({"id": "c", "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}, "openai_chat", "w")
    assert chat.messages[-1] == {"role": "user", "content": "q"} and chat.expected == "a" and chat.input == "q"
    alpaca = to_example({"id": "a", "instruction": "Translate", "input": "Hallo", "output": "Hello"}, "alpaca", "w")
    assert alpaca.messages == [{"role": "user", "content": "Translate\n\nHallo"}] and alpaca.expected == "Hello"
    dpo = to_example({"id": "d", "prompt": "p", "chosen": "good", "rejected": "bad"}, "dpo", "w")
    assert dpo.expected == "good"
    cls = to_example({"id": "k", "text": "great film", "label": "pos"}, "classification", "w")
    assert cls.input == "great film" and cls.expected == "pos"


def test_bad_test_rows_name_the_line(tmp_path):
    path = tmp_path / "test.jsonl"
    path.write_text(json.dumps({"id": "x", "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}) + "\n{broken\n")
    with pytest.raises(InvalidData, match=r"pack/test.jsonl line 2: not JSON"):
        read_test_split(path, "openai_chat", None)
    path.write_text(json.dumps({"id": "x", "text": "t"}) + "\n")
    with pytest.raises(InvalidData, match=r"line 1: a classification row needs 'label'"):
        read_test_split(path, "classification", None)
    path.write_text("\n")
    with pytest.raises(InvalidData, match="is empty: nothing to evaluate"):
        read_test_split(path, "openai_chat", None)
    with pytest.raises(MissingInput, match="no nope.jsonl"):
        read_test_split(tmp_path / "nope.jsonl", "openai_chat", None)


def test_max_items_limits_the_split(tmp_path):
    path = tmp_path / "test.jsonl"
    row = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    path.write_text("".join(json.dumps({"id": str(i), **row}) + "\n" for i in range(5)))
    assert [e.id for e in read_test_split(path, "openai_chat", 2)] == ["0", "1"]


def test_loss_curve_reads_every_loss_series(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [{"step": 1, "loss": 3.0}, {"step": 2, "loss": 2.0, "eval_loss": 2.5}, {"step": 3, "epoch": 1}]) + "\nnot json\n")
    rows = read_train_metrics(path)
    assert len(rows) == 3
    assert loss_curve(rows)[:4] == b"\x89PNG"
    assert loss_curve([{"step": 1, "lr": 0.1}]) is None
    assert read_train_metrics(tmp_path / "missing.jsonl") == []


def test_comparison_table_knows_which_way_is_better():
    rows = {r["name"]: r for r in comparison_table({"passRate": 0.2, "loss": 2.0, "tokenF1": 0.5}, {"passRate": 0.6, "loss": 2.5, "tokenF1": 0.5})}
    assert rows["pass rate"]["better"] is True and rows["loss"]["better"] is False and rows["token F1"]["better"] is None


def _rows(passed: int, n: int) -> list[dict]:
    return [{"passed": i < passed, "exactMatch": float(i < passed), "tokenF1": 1.0 if i < passed else 0.5,
             "nll": 2.0 if i < passed else 4.0, "tokens": 2} for i in range(n)]


def test_bootstrap_intervals_are_paired_and_reproducible():
    from jobs.evaluate.bootstrap import delta_intervals, resampled_gate_metrics
    from jobs.evaluate.metrics import gate_metrics

    base, tuned = _rows(8, 20), _rows(12, 20)  # tuned passes the 8 base passes and 4 more
    measured = ("passRate", "exactMatch", "tokenF1", "loss", "perplexity")
    flat = gate_metrics(generation_metrics(base), generation_metrics(tuned))
    resampled = resampled_gate_metrics(base, tuned, measured, 2000)
    deltas = delta_intervals(flat, resampled, 0.95)
    assert deltas == delta_intervals(flat, resampled_gate_metrics(base, tuned, measured, 2000), 0.95)
    rate = deltas["passRate"]
    assert rate["delta"] == 0.2 and 0.0 < rate["low"] < 0.2 < rate["high"] <= 0.4
    # paired: every resample keeps tuned at least as good as base, so the interval never goes below 0
    assert rate["low"] >= 0.0 and deltas["loss"]["high"] <= 0.0
    assert set(deltas) == set(measured)


def test_a_gate_with_confidence_needs_the_lower_bound_to_clear():
    from jobs.common.gate import evaluate_gate, parse_gate
    from jobs.evaluate.bootstrap import clause_bounds, resampled_gate_metrics
    from jobs.evaluate.metrics import gate_metrics

    base, tuned = _rows(8, 20), _rows(12, 20)
    flat = gate_metrics(generation_metrics(base), generation_metrics(tuned))
    resampled = resampled_gate_metrics(base, tuned, ("passRate",), 2000)
    gate = "tunedPassRate >= basePassRate + 0.1"
    assert evaluate_gate(gate, flat)[0] is True  # the point estimate clears by 0.1
    low, high = clause_bounds(parse_gate(gate)[0], resampled, 0.95)
    assert low < 0 < high
    passed, explanation = evaluate_gate(gate, flat, lambda c: clause_bounds(c, resampled, 0.95))
    assert passed is False and "margin +0.1000, interval [" in explanation and "NOT MET" in explanation
    assert evaluate_gate("tunedPassRate >= basePassRate", flat, lambda c: clause_bounds(c, resampled, 0.95))[0]
    assert evaluate_gate("tunedLoss < baseLoss", flat, lambda c: (-0.5, -0.1))[0]
    assert not evaluate_gate("tunedLoss < baseLoss", flat, lambda c: (-0.5, 0.1))[0]
