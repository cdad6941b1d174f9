"""ftctl init's sample project, and the promotion gate language."""

import pytest

from jobs.cli.cmd_init import QUICKSTART, write_sample
from jobs.common.errors import InvalidInput
from jobs.common.gate import evaluate_gate, parse_gate

from tests.conftest import REPO


def test_init_writes_valid_project_and_refuses_to_overwrite(tmp_path):
    data, spec = write_sample(tmp_path)
    rows = data.read_text().splitlines()
    assert len(rows) >= 300
    with pytest.raises(InvalidInput, match="already exist"):
        write_sample(tmp_path)


def test_checked_in_quickstart_is_what_init_writes(tmp_path):
    write_sample(tmp_path)
    assert (REPO / "examples" / "quickstart.yaml").read_text() == QUICKSTART
    assert (REPO / "examples" / "data" / "qa.jsonl").read_text() == (tmp_path / "data" / "qa.jsonl").read_text()


@pytest.mark.parametrize(
    "gate, metrics, passed",
    [
        ("tunedPassRate >= basePassRate + 0.05", {"tunedPassRate": 0.6, "basePassRate": 0.5}, True),
        ("tunedPassRate >= basePassRate + 0.05", {"tunedPassRate": 0.54, "basePassRate": 0.5}, False),
        ("tunedLoss < baseLoss and tunedTokenF1 > 0.5", {"tunedLoss": 1.0, "baseLoss": 2.0, "tunedTokenF1": 0.4}, False),
        ("tunedF1Macro - baseF1Macro >= 0.1", {"tunedF1Macro": 0.8, "baseF1Macro": 0.6}, True),
    ],
)
def test_gate_evaluation(gate, metrics, passed):
    assert evaluate_gate(gate, metrics)[0] is passed


@pytest.mark.parametrize("bad", ["tunedPassRate", "tunedPassRate >= ", "__import__('os') > 1", "a > b > c", "tunedPassRate >= 1 +"])
def test_gate_rejects_bad_text(bad):
    with pytest.raises(ValueError, match="gate"):
        parse_gate(bad)
