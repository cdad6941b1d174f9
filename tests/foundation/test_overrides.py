"""FIELD=VALUE overrides on `ftctl run` and `ftctl validate`: validated like the file, the
effective spec is the one the run stores; `--store` takes a plain path."""

import json

import pytest
import yaml
from tests.foundation.test_local_run import _project, ftctl
from tests.foundation.test_spec import minimal

from jobs.common.errors import InvalidSpec
from jobs.common.specio import load_run


def spec_file(tmp_path, obj=None):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(obj or minimal()))
    return path


def test_overrides_set_typed_values_and_create_missing_parents(tmp_path):
    run = load_run(spec_file(tmp_path), overrides=[
        "steps.train.learningRate=1e-4", "steps.train.lora.r=8", "spec.steps.train.packing=false",
        "data.sources.0.path=other.jsonl", "steps.evaluate.gate=tunedPassRate >= basePassRate",
    ])
    train = run.spec.steps.train
    assert train.learning_rate == 1e-4 and train.lora.r == 8 and train.packing is False
    assert run.spec.data.sources[0].path == "other.jsonl"
    assert run.spec.steps.evaluate.gate == "tunedPassRate >= basePassRate"
    assert load_run(spec_file(tmp_path), overrides=["steps.train.lora=null"]).spec.steps.train.lora is None


@pytest.mark.parametrize(
    "override, expected",
    [
        ("steps.train.learningRate=-1", "spec.steps.train.learningRate: must be > 0"),
        ("steps.train.lerningRate=1e-4", "spec.steps.train.lerningRate: unknown field"),
        ("steps.train.learningRate=fast", "spec.steps.train.learningRate: Input should be a valid number"),
        ("steps.train.learningRate", "expected FIELD=VALUE"),
        ("model.gguf.x=1", "spec field spec.model.gguf has no 'x' to set"),
        ("data.sources.3.path=x", "spec field spec.data.sources has no '3' to set"),
    ],
)
def test_bad_overrides_are_named(tmp_path, override, expected):
    with pytest.raises(InvalidSpec) as exc:
        load_run(spec_file(tmp_path), overrides=[override])
    assert expected in exc.value.message


def test_ftctl_validate_applies_overrides(tmp_path):
    path = spec_file(tmp_path)
    ok = ftctl("validate", str(path), "steps.train.lora.r=8", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    bad = ftctl("validate", str(path), "steps.train.learningRate=0", cwd=tmp_path)
    assert bad.returncode == 2 and "spec.steps.train.learningRate: must be > 0" in bad.stderr


def test_ftctl_run_stores_the_effective_spec_in_a_plain_path_store(tmp_path):
    spec = _project(tmp_path)
    res = ftctl("run", str(spec), "steps.pack.seed=7", "--store", "store", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    stored = json.loads((tmp_path / "store/runs/team-a/packonly/spec.json").read_text())
    assert stored["spec"]["steps"]["pack"]["seed"] == 7
