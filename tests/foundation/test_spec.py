"""The spec: validation messages, unknown fields, the generated CRD."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from jobs.common.crd import build_crd, render
from jobs.common.errors import InvalidSpec
from jobs.common.specio import load_run, run_from_obj

REPO = Path(__file__).resolve().parents[2]
CRD = REPO / "crds" / "finetune.dev_finetuneruns.yaml"


def minimal(**spec_over):
    spec = {
        "model": {"gguf": "model.gguf"},
        "data": {"sources": [{"path": "d.jsonl", "format": "openai_chat"}]},
        "steps": {"pack": {}, "train": {}},
    }
    spec.update(spec_over)
    return {"apiVersion": "finetune.dev/v1alpha1", "kind": "FineTuneRun", "metadata": {"name": "r1"}, "spec": spec}


def errors_of(obj) -> str:
    with pytest.raises(InvalidSpec) as exc:
        run_from_obj(obj)
    return exc.value.message


def test_minimal_is_valid_and_defaults_apply():
    run = run_from_obj(minimal())
    assert run.metadata.namespace == "default"
    assert run.spec.steps.enabled() == ["pack", "train"]
    assert run.spec.steps.train.lora.target_modules == "all-linear"
    assert run.spec.steps.pack.near_dup_threshold == 0.8


@pytest.mark.parametrize(
    "patch, expected",
    [
        ({"steps": {"pack": {}, "train": {"learningRate": 0}}}, "spec.steps.train.learningRate: must be > 0"),
        ({"steps": {"pack": {}, "train": {"lerningRate": 1e-4}}}, "spec.steps.train.lerningRate: unknown field"),
        ({"steps": {"pack": {"nearDupThreshold": 1.5}, "train": {}}}, "spec.steps.pack.nearDupThreshold: must be <= 1"),
        ({"steps": {"pack": {}, "train": {"method": "rlhf"}}}, "spec.steps.train.method: must be one of"),
        ({"steps": {"pack": {}, "train": {}, "gguf": {"quantizations": ["Q9_X"]}}}, "unknown quantization ['Q9_X']; valid:"),
        ({"model": {"gguf": "a", "hub": "b/c"}}, "spec.model: set exactly one of hf, gguf or hub"),
        ({"store": {"uri": "s3://Bad_Bucket/x"}}, "bad bucket name"),
        ({"store": {"uri": "s3://bucket/../etc"}}, "'..' segment"),
        ({"steps": {"pack": {}, "train": {}, "evaluate": {"gate": "tunedFoo > 1"}}}, "unknown metric 'tunedFoo'"),
    ],
)
def test_bad_fields_are_named(patch, expected):
    assert expected in errors_of(minimal(**patch))


def test_bad_metadata_name():
    obj = minimal()
    obj["metadata"]["name"] = "Bad_Name"
    assert "metadata.name: must match" in errors_of(obj)


def test_unknown_top_level_field():
    obj = minimal()
    obj["specs"] = {}
    assert "specs: unknown field" in errors_of(obj)


def test_regex_check_must_compile():
    steps = {"eval": {"items": "i.jsonl", "backend": {"baseModel": True}, "checks": [{"type": "regex", "value": "(["}]}}
    assert "regex does not compile" in errors_of(minimal(steps=steps, data=None))


def test_plain_http_only_to_loopback():
    def spec(url, **extra):
        return minimal(steps={"eval": {"items": "i", "backend": {"endpoint": {"baseUrl": url, "model": "m", **extra}}}}, data=None)

    assert "plain http" in errors_of(spec("http://10.0.0.5:8000/v1"))
    run_from_obj(spec("http://127.0.0.1:8000/v1"))
    run_from_obj(spec("https://api.example.com/v1"))
    run_from_obj(spec("http://models.internal/v1", allowInsecureHttp=True))


def test_step_dependencies_are_checked():
    assert "steps.train needs steps.pack" in errors_of(minimal(steps={"train": {}}))
    assert "needs classification" in errors_of(minimal(steps={"pack": {}, "train": {"method": "classification"}}))


@pytest.mark.parametrize(
    "text, expected",
    [("a: [1, 2", "malformed YAML/JSON"), ("- 1\n- 2\n", "expected a mapping")],
)
def test_malformed_documents(tmp_path, text, expected):
    f = tmp_path / "run.yaml"
    f.write_text(text)
    with pytest.raises(InvalidSpec, match=expected):
        load_run(f)


def test_wrong_encoding_and_missing_file(tmp_path):
    f = tmp_path / "run.yaml"
    f.write_bytes("name: é".encode("latin-1"))
    with pytest.raises(InvalidSpec, match="not UTF-8"):
        load_run(f)
    with pytest.raises(InvalidSpec, match="no such file"):
        load_run(tmp_path / "absent.yaml")


def test_checked_in_crd_matches_models():
    assert CRD.read_text() == render(), "run `make crd` and commit crds/"


def test_crd_is_structural_and_complete():
    crd = build_crd()
    text = yaml.safe_dump(crd)
    assert "$ref" not in text and "$defs" not in text and "anyOf" not in text
    version = crd["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    assert [c["name"] for c in version["additionalPrinterColumns"]] == ["Phase", "Step", "Progress", "Age"]
    assert crd["spec"]["names"]["shortNames"] == ["ftr"]
    train = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["steps"]["properties"]["train"]
    assert train["properties"]["learningRate"]["exclusiveMinimum"] is True


def test_ftctl_validate_exit_codes(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(minimal()))
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(minimal(steps={"pack": {}, "train": {"learningRate": -1}})))
    ok = subprocess.run([sys.executable, "-m", "jobs.cli.main", "validate", str(good)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    res = subprocess.run([sys.executable, "-m", "jobs.cli.main", "validate", str(bad)], capture_output=True, text=True)
    assert res.returncode == 2
    assert "spec.steps.train.learningRate: must be > 0" in res.stderr
    assert "Traceback" not in res.stderr
