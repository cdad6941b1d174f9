"""The job template: the shipped default makes valid runs, and job parameters land in the spec."""

from __future__ import annotations

import pytest

from jobs.api.errors import ApiError
from jobs.api.schemas import JobCreate
from jobs.api.template import JobTemplate
from jobs.common.errors import InvalidInput


def test_the_default_template_builds_runs_from_job_parameters():
    template = JobTemplate.from_file()
    req = JobCreate(model="SmolLM2-135M-Instruct", training_file="file-1", seed=3,
                    hyperparameters={"n_epochs": 2, "batch_size": "auto", "learning_rate_multiplier": 0.5})
    run = template.build("ftjob-1", "team-a", "file:///data/train.jsonl", req)
    train = run.spec.steps.train
    assert (run.metadata.name, run.metadata.namespace) == ("ftjob-1", "team-a")
    assert run.spec.data.sources[0].path == "file:///data/train.jsonl"
    assert (train.epochs, train.batch_size, train.learning_rate, train.seed) == (2, 4, 0.0005, 3)
    assert run.spec.model.gguf.endswith("SmolLM2-135M-Instruct.Q4_1.gguf")

    dpo = template.build("ftjob-2", "team-a", "file:///d.jsonl", JobCreate(
        model="SmolLM2-135M-Instruct", training_file="file-1",
        method={"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.3}}}))
    assert (dpo.spec.steps.train.method, dpo.spec.steps.pack.format, dpo.spec.steps.train.beta) == ("dpo", "dpo", 0.3)
    assert dpo.spec.data.sources[0].format == "dpo"

    with pytest.raises(ApiError) as err:
        template.build("ftjob-3", "team-a", "file:///d.jsonl", JobCreate(model="gpt-4o-mini", training_file="f"))
    assert err.value.param == "model" and "SmolLM2-135M-Instruct" in err.value.message


def test_a_template_that_cannot_make_a_valid_run_is_refused_at_start():
    with pytest.raises(InvalidInput, match="spec"):
        JobTemplate({"models": {"m": {"hf": "/models/m"}}, "spec": {"steps": {"train": {"method": "sft"}}}}, "t.yaml")
    with pytest.raises(InvalidInput, match="models and spec"):
        JobTemplate({"models": {}, "spec": {}, "extra": 1}, "t.yaml")
