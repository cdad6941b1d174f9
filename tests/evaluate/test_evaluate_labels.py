"""Generated answers scored as labels: SFT on a label column, evaluated like a classifier."""

from __future__ import annotations

import json
import re

import pytest

from jobs.common.errors import InvalidData, InvalidSpec
from jobs.evaluate.generated_labels import OUTSIDE, normalize_label, score_labels

from tests.evaluate.evaluatekit import QA, chat, evaluate_spec


def test_answers_are_normalised_onto_the_label_set_and_the_rest_listed():
    assert normalize_label("  Moral   VALUE.\n") == "moral value"
    labels = ["Conflict", "Economic", "Moral Value"]
    rows = [{"answer": "moral value!"}, {"answer": "Economic"}, {"answer": "economics"}, {"answer": "Conflict"}]
    metrics, outside = score_labels(["a", "b", "c", "d"], ["Moral Value", "Economic", "Economic", "Economic"], rows, labels)
    assert [r["label"] for r in rows] == ["Moral Value", "Economic", None, "Conflict"]
    assert [r["correct"] for r in rows] == [True, True, False, False]
    assert outside == [{"id": "c", "answer": "economics"}] and metrics["outsideLabelSet"] == 1
    assert metrics["accuracy"] == 0.5
    # Economic: 1 of 3 found, its one prediction right; Conflict: predicted once, wrongly
    assert metrics["perClass"]["Economic"] == {"precision": 1.0, "recall": 0.3333, "f1": 0.5, "support": 3}
    # every label of the set counts, Conflict (no support here) with recall 0, as scikit-learn does
    assert metrics["recallMacro"] == pytest.approx((0 + 1 / 3 + 1) / 3, abs=1e-4)
    assert metrics["f1Micro"] == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5), abs=1e-4)
    assert metrics["confusion"]["labels"] == [*labels, OUTSIDE]
    assert metrics["confusion"]["matrix"][1] == [1, 1, 0, 1]  # Economic: as Conflict, Economic, outside


def test_labels_that_normalise_alike_are_refused():
    with pytest.raises(InvalidData, match="'None' and 'none.' are the same after normalisation"):
        score_labels(["a"], ["None"], [{"answer": "None"}], ["None", "none."])


# The fitted adapter answers QA's answers; here they are the labels (pack keeps the CSV's case).
LABELS = ["Berlin", "Blue", "Four", "Green", "Paris"]
ROWS = [{"id": f"q{i}", "messages": chat(q, a.capitalize())} for i, (q, a) in enumerate(QA)]


def label_run(tiny, gate: str) -> dict:
    spec = evaluate_spec(tiny["model"], {"decoding": {"maxNewTokens": 6}, "gate": gate})
    spec["spec"]["data"]["sources"] = [{"path": "f.csv", "format": "csv", "columns": {"text": "chunk_text", "label": "frame_name"}}]
    return spec


@pytest.mark.usefixtures("one_torch_thread")
def test_sft_on_labels_is_scored_by_the_labels_it_generates(tiny, run_evaluate, tmp_path):
    report = tmp_path / "report.json"  # as pack reports a label column
    counts = {"in": 4, "out": 4, "dropped": 0, "train": 0, "val": 0, "test": 4}
    per_label = {label: 1 for label in LABELS}
    report.write_text(json.dumps({"counts": counts, "dropped": {}, "warnings": [],
                                  "labels": {"all": per_label, "train": {}, "val": {}, "test": per_label}}))
    gate = "tunedF1Macro >= baseF1Macro + 0.1 and tunedAccuracy == 1"
    manifest = run_evaluate(label_run(tiny, gate), ROWS, {"adapter": tiny["adapter"], "metrics.jsonl": tiny["metrics"]},
                            {"report.json": report})
    out = run_evaluate.out
    metrics = json.loads((out / "metrics.json").read_text())
    base, tuned = metrics["base"], metrics["tuned"]
    assert metrics["labels"] == LABELS
    # the adapter answers "blue" and "four": mapped onto Blue and Four
    assert tuned["accuracy"] == 1.0 and tuned["f1Micro"] == 1.0 and tuned["outsideLabelSet"] == 0
    assert base["accuracy"] == 0.0 and base["outsideLabelSet"] == len(ROWS)  # the random model babbles
    assert [o["id"] for o in metrics["outsideLabelSet"]["base"]] == [r["id"] for r in ROWS]
    assert tuned["perClass"]["Blue"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1}
    assert tuned["confusion"]["labels"] == LABELS and base["confusion"]["labels"] == [*LABELS, OUTSIDE]
    assert metrics["gate"]["passed"] is True and manifest["metrics"]["tunedF1Macro"] == 1.0
    assert "tunedF1Weighted" in manifest["metrics"] and "tunedPrecisionMacro" in manifest["metrics"]
    assert manifest["outputs"]["confusion"] == "confusion.png"
    assert (out / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = [json.loads(ln) for ln in (out / "predictions.jsonl").read_text().splitlines()]
    assert lines[2]["tuned"]["answer"] == "blue" and lines[2]["tuned"]["label"] == "Blue" and lines[2]["base"]["label"] is None
    html = (out / "report.html").read_text()
    assert 'id="per-label"' in html and 'id="outside-base"' in html and "F1 (micro)" in html
    assert len(re.findall(r'src="data:image/png;base64,', html)) == 3  # chart, loss curve, confusion matrices
    # the Markdown report beside it: before/after, the generations side by side, the loss curve drawn again
    assert manifest["outputs"]["trainingReport"] == "training_report.md" and manifest["outputs"]["lossPlot"] == "loss.png"
    md = (out / "training_report.md").read_text()
    assert "| F1 (macro) | 0 | 1 | +1.0000 |" in md and "**met**" in md
    assert "| q2 | What colour is the sky? | Blue |" in md and md.count("\n| q") == len(ROWS)
    assert "![train loss (no val split, so no val loss)](loss.png)" in md
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.usefixtures("one_torch_thread")
def test_a_gate_on_labels_without_pack_labels_is_refused_before_any_model_runs(tiny, run_evaluate):
    with pytest.raises(InvalidSpec, match="gate names tunedF1Macro, which a sft run does not measure"):
        run_evaluate(label_run(tiny, "tunedF1Macro > 0.5"), ROWS, {})  # no report.json, no adapter
