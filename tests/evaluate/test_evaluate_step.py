"""The evaluate step end to end on a tiny random Llama and a LoRA adapter fitted in the test."""

from __future__ import annotations

import csv
import json
import re

import pytest

from jobs.common.errors import GateNotMet, InvalidSpec, MissingInput

from tests.evaluate.evaluatekit import QA, chat, classification_rows, evaluate_spec

CHAT_ROWS = [{"id": f"q{i}", "messages": chat(q, a)} for i, (q, a) in enumerate(QA)]
DECODING = {"maxNewTokens": 6}
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_base_vs_tuned_metrics_files_and_a_met_gate(tiny, run_evaluate):
    gate = "tunedPassRate >= basePassRate + 0.5 and tunedLoss < baseLoss"
    spec = evaluate_spec(tiny["model"], {"decoding": DECODING, "gate": gate, "checks": [{"type": "exact"}]})
    manifest = run_evaluate(spec, CHAT_ROWS, {"adapter": tiny["adapter"], "metrics.jsonl": tiny["metrics"]})
    out = run_evaluate.out
    metrics = json.loads((out / "metrics.json").read_text())
    base, tuned = metrics["base"], metrics["tuned"]
    assert tuned["passRate"] == 1.0 and base["passRate"] == 0.0
    assert tuned["exactMatch"] == 1.0 and tuned["tokenF1"] == 1.0 and base["tokenF1"] < 0.5
    assert tuned["loss"] < base["loss"] and tuned["perplexity"] < base["perplexity"]
    assert abs(tuned["perplexity"] - 2.718281828 ** tuned["loss"]) / tuned["perplexity"] < 1e-3
    assert metrics["gate"]["passed"] is True and metrics["trained"] == "adapter"
    assert metrics["perCheck"]["tuned"] == {"exact:expected": 1.0}
    assert metrics["gateMetrics"]["tunedPassRate"] == 1.0 and "baseLoss" in metrics["gateMetrics"]
    assert manifest["metrics"]["gatePassed"] is True and manifest["metrics"]["tunedPassRate"] == 1.0
    assert set(manifest["outputs"].values()) <= {f["path"] for f in manifest["files"]}

    with open(out / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["id"] for r in rows] == ["q0", "q1", "q2", "q3"]
    assert rows[0]["input"] == QA[0][0] and rows[0]["expected"] == "Berlin"
    assert [r["tuned_answer"] for r in rows] == [a for _, a in QA]
    assert rows[0]["tuned_passed"] == "True" and rows[0]["base_passed"] == "False"
    lines = [json.loads(ln) for ln in (out / "predictions.jsonl").read_text().splitlines()]
    assert lines[1]["tuned"]["checks"][0]["passed"] is True and lines[1]["base"]["answer"] != "Paris"
    assert lines[1]["messages"] == CHAT_ROWS[1]["messages"][:1] and lines[1]["tuned"]["tokens"] > 0

    html = (out / "report.html").read_text()
    assert 'id="metrics"' in html and "tiny-llama" in html
    assert len(re.findall(r'src="data:image/png;base64,[A-Za-z0-9+/=]{200,}"', html)) == 2  # chart + loss curve
    assert "http://" not in html and "https://" not in html  # renders offline
    assert "Berlin" in html and "met" in html
    assert (out / "metrics.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_failed_gate_raises_with_the_numbers_and_commits_nothing(tiny, run_evaluate):
    spec = evaluate_spec(tiny["model"], {"decoding": DECODING, "gate": "basePassRate >= tunedPassRate"})
    with pytest.raises(GateNotMet) as err:
        run_evaluate(spec, CHAT_ROWS, {"adapter": tiny["adapter"], "metrics.jsonl": tiny["metrics"]})
    assert "0.0000 >= 1.0000: NOT MET" in str(err.value)
    out = run_evaluate.out
    assert not (out / "_manifest.json").exists()
    assert (out / "report.html").exists()  # uploaded so people can see why
    assert "NOT met" in (out / "report.html").read_text()


def test_a_full_model_from_train_and_alpaca_rows(tiny, run_evaluate, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    merged = tmp_path / "merged"
    PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny["model"]), tiny["adapter"]).merge_and_unload().save_pretrained(merged)
    AutoTokenizer.from_pretrained(tiny["adapter"]).save_pretrained(merged)
    rows = [{"id": f"a{i}", "instruction": q, "input": "", "output": a} for i, (q, a) in enumerate(QA)]
    spec = evaluate_spec(tiny["model"], {"decoding": DECODING}, fmt="alpaca")
    manifest = run_evaluate(spec, rows, {"model": merged})
    metrics = json.loads((run_evaluate.out / "metrics.json").read_text())
    assert metrics["trained"] == "model" and metrics["tuned"]["passRate"] == 1.0 and metrics["gate"] is None
    html = (run_evaluate.out / "report.html").read_text()
    assert "recorded no loss values" in html  # this train output had no metrics.jsonl
    assert manifest["metrics"]["gatePassed"] is None


def test_missing_adapter_is_a_clear_error(tiny, run_evaluate):
    spec = evaluate_spec(tiny["model"], {"decoding": DECODING})
    with pytest.raises(MissingInput, match="train step's output has no adapter"):
        run_evaluate(spec, CHAT_ROWS, {"metrics.jsonl": tiny["metrics"]})


def test_a_gate_on_a_metric_this_run_does_not_measure(tiny, run_evaluate):
    spec = evaluate_spec(tiny["model"], {"decoding": DECODING, "gate": "tunedAccuracy > 0.5"})
    with pytest.raises(InvalidSpec, match="gate names tunedAccuracy, which a sft run does not measure"):
        run_evaluate(spec, CHAT_ROWS, {"adapter": tiny["adapter"]})


def test_classification_runs_report_the_f1_family(tiny_classifier, run_evaluate):
    spec = evaluate_spec(tiny_classifier["model"], {"gate": "tunedF1Macro >= baseF1Macro + 0.2 and tunedLoss < baseLoss"}, fmt="classification", method="classification")
    spec["spec"]["steps"]["pack"]["format"] = "classification"
    manifest = run_evaluate(spec, classification_rows(), {"adapter": tiny_classifier["adapter"], "labels.json": tiny_classifier["labels"]})
    metrics = json.loads((run_evaluate.out / "metrics.json").read_text())
    tuned, base = metrics["tuned"], metrics["base"]
    assert tuned["accuracy"] == 1.0 and tuned["f1Macro"] == 1.0 and tuned["passRate"] == 1.0
    assert base["f1Macro"] <= 0.8 and tuned["loss"] < base["loss"]
    assert set(tuned["perClass"]) == {"money", "sport"} and tuned["perClass"]["sport"]["support"] == 3
    assert metrics["gate"]["passed"] is True and manifest["metrics"]["tunedAccuracy"] == 1.0
    with open(run_evaluate.out / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows[0]["input"] == "the team won the match" and rows[0]["tuned_answer"] == "sport"
    html = (run_evaluate.out / "report.html").read_text()
    assert "F1 (macro)" in html and "accuracy" in html


def test_the_report_shows_intervals_and_a_confident_gate_reads_them(tiny, run_evaluate):
    gate = "tunedPassRate >= basePassRate + 0.5"
    evaluate = {"decoding": DECODING, "gate": gate, "checks": [{"type": "exact"}], "gateConfidence": 0.9,
                "bootstrapSamples": 200}
    manifest = run_evaluate(evaluate_spec(tiny["model"], evaluate), CHAT_ROWS,
                            {"adapter": tiny["adapter"], "metrics.jsonl": tiny["metrics"]})
    metrics = json.loads((run_evaluate.out / "metrics.json").read_text())
    assert metrics["intervals"]["level"] == 0.9 and metrics["intervals"]["samples"] == 200
    # every test example flips from failed to passed, so every resample says +1
    assert metrics["intervals"]["deltas"]["passRate"] == {"delta": 1.0, "low": 1.0, "high": 1.0}
    assert metrics["gate"]["passed"] is True and "(margin +0.5000, interval [+0.5000, +0.5000])" in metrics["gate"]["explanation"]
    assert manifest["metrics"]["gatePassed"] is True
    html = (run_evaluate.out / "report.html").read_text()
    assert "90% interval of the change" in html and "[+1.0000, +1.0000]" in html


def test_a_confident_gate_on_f1_macro_is_refused_before_any_model_runs(tiny, run_evaluate):
    spec = evaluate_spec(tiny["model"], {"gate": "tunedF1Macro > 0.5", "gateConfidence": 0.95},
                         fmt="classification", method="classification")
    spec["spec"]["steps"]["pack"]["format"] = "classification"
    with pytest.raises(InvalidSpec, match="gateConfidence: tunedF1Macro has no bootstrap interval"):
        run_evaluate(spec, classification_rows(), {})
