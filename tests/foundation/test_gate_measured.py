"""A gate naming a metric the run will not measure is refused by `ftctl validate` and the
controller's admission, not by the evaluate step after training."""

from types import SimpleNamespace

import pytest
import yaml
from tests.foundation.test_local_run import ftctl
from tests.foundation.test_spec import errors_of, minimal

from controller.reconcile import Reconciler
from controller.settings import ControllerSettings
from jobs.common.errors import InvalidSpec
from jobs.common.specio import run_from_obj


def gated(method: str, gate: str, fmt: str = "openai_chat") -> dict:
    return minimal(steps={"pack": {"format": fmt}, "train": {"method": method}, "evaluate": {"gate": gate}})


def test_generative_run_cannot_gate_on_classifier_metrics():
    message = errors_of(gated("sft", "tunedF1Macro >= baseF1Macro and tunedLoss < baseLoss"))
    assert message.startswith("spec: steps.evaluate.gate: gate names baseF1Macro, tunedF1Macro, which a sft run does not measure")


def test_classifier_run_cannot_gate_on_generation_metrics():
    message = errors_of(gated("classification", "tunedTokenF1 > 0.5", fmt="classification"))
    assert "gate names tunedTokenF1, which a classification run does not measure" in message


@pytest.mark.parametrize("method, fmt, gate", [
    ("sft", "openai_chat", "tunedTokenF1 >= baseTokenF1 + 0.05 and tunedPerplexity < basePerplexity"),
    ("classification", "classification", "tunedF1Macro >= baseF1Macro and tunedAccuracy > 0.5"),
])
def test_measured_metrics_pass(method, fmt, gate):
    run_from_obj(gated(method, gate, fmt))


def test_ftctl_validate_refuses_it(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(gated("dpo", "tunedAccuracy > 0.9", fmt="dpo")))
    res = ftctl("validate", str(path), cwd=tmp_path)
    assert res.returncode == 2 and "which a dpo run does not measure" in res.stderr


def test_controller_admission_refuses_it():
    reconciler = SimpleNamespace(settings=ControllerSettings(default_store_uri="file:///tmp/store"))
    with pytest.raises(InvalidSpec, match="which a sft run does not measure"):
        Reconciler._validate(reconciler, "default", "r1", gated("sft", "tunedAccuracy > 0.9")["spec"])


LABEL_CSV = {"path": "frames.csv", "format": "csv", "columns": {"text": "chunk_text", "label": "frame_name"}}


@pytest.mark.parametrize("columns", [{"text": "chunk_text", "label": "frame_name"}, {"instruction": "chunk_text", "output": "frame_name"}])
def test_sft_on_a_label_column_can_gate_on_the_labels_it_generates(columns):
    spec = gated("sft", "tunedF1Macro >= baseF1Macro + 0.1 and tunedF1Weighted > 0.5 and tunedRecallMacro > 0")
    spec["spec"]["data"]["sources"] = [{**LABEL_CSV, "columns": columns}]
    run_from_obj(spec)


def test_sft_without_a_named_label_column_is_told_how_to_name_it():
    spec = gated("sft", "tunedF1Micro > 0.5")
    spec["spec"]["data"]["sources"] = [{"path": "frames.csv", "format": "csv"}]  # columns from the header: unknown here
    message = errors_of(spec)
    assert "gate names tunedF1Micro, which a sft run does not measure" in message
    assert "name it in data.sources[].columns, e.g. {text: chunk_text, label: frame_name}" in message


def test_an_unknown_metric_still_fails_validate():
    spec = gated("sft", "tunedF1Macroo > 0.5")
    spec["spec"]["data"]["sources"] = [LABEL_CSV]
    assert "gate: unknown metric 'tunedF1Macroo'" in errors_of(spec)


def test_a_confident_gate_on_a_statistic_without_an_interval_fails_validate():
    spec = gated("sft", "tunedF1Weighted > 0.5")
    spec["spec"]["data"]["sources"] = [LABEL_CSV]
    spec["spec"]["steps"]["evaluate"]["gateConfidence"] = 0.9
    assert "gateConfidence: tunedF1Weighted has no bootstrap interval" in errors_of(spec)
