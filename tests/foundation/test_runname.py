"""W&B run names: placeholders are filled from the spec; an unknown one is a validation error naming it."""

import pytest
from tests.foundation.test_spec import errors_of, minimal

from jobs.common.runname import expand
from jobs.common.specio import run_from_obj


def with_run_name(name: str, **train) -> dict:
    return minimal(
        model={"gguf": "models/Mistral-7B.gguf"},
        steps={"pack": {}, "train": {"learningRate": 2e-5, "lora": {"r": 8}, **train}},
        tracking={"wandb": {"project": "p", "runName": name}},
    )


def test_placeholders_are_filled_from_the_spec():
    run = run_from_obj(with_run_name("{model_name}-{method}-{learning_rate}-r{lora_r}-{run_name}"))
    assert expand(run.spec.tracking.wandb.run_name, run) == "Mistral-7B-sft-2e-05-r8-r1"
    assert expand("lr{learning_rate:.0e}-{{literal}}", run) == "lr2e-05-{literal}"
    full = run_from_obj(with_run_name("{lora_r}", lora=None))
    assert expand("{lora_r}", full) == "full"


@pytest.mark.parametrize(
    "name, expected",
    [
        ("sft-{learning_rte}", "spec.tracking.wandb.runName: unknown placeholder {learning_rte}; known:"),
        ("sft-{}", "unknown placeholder {}"),
        ("sft-{learning_rate", "malformed placeholder"),
    ],
)
def test_unknown_or_malformed_placeholder_is_named(name, expected):
    assert expected in errors_of(with_run_name(name))
