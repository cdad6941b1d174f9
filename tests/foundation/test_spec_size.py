"""A run too large for a pod's env var or for the run's annotations is refused as InvalidSpec when
it is validated, naming the limit; one at the limit fits both."""

import json
from types import SimpleNamespace

import pytest
from tests.foundation.test_spec import errors_of, minimal

from controller.jobs import build_job
from controller.reconcile import Reconciler
from controller.settings import ControllerSettings
from jobs.common.errors import InvalidSpec
from jobs.common.spec import MAX_SPEC_BYTES
from jobs.common.specio import run_from_obj

ENV_LIMIT = 128 * 1024  # the kernel's MAX_ARG_STRLEN, for "FT_SPEC=<value>"
ANNOTATIONS_LIMIT = 256 * 1024


def sized(total: int) -> dict:
    """A run whose JSON, as validated, is `total` bytes (grown through a long system prompt's worth
    of eval checks, as a user would)."""
    def run(pad: int) -> dict:
        checks = [{"type": "contains", "value": "x" * 10_000}] * (pad // 10_000)
        obj = minimal(steps={"eval": {"items": "e.jsonl", "backend": {"baseModel": True}, "checks": checks}})
        obj["metadata"]["annotations"] = {"note": "x" * (pad % 10_000)}
        return obj

    def size(pad: int) -> int:
        return len(json.dumps(run_from_obj(run(pad)).snapshot(), sort_keys=True))

    one = size(10_000)
    per_check = size(20_000) - one  # a check's value plus its JSON framing after the first
    checks, rest = divmod(total - one, per_check)
    obj = run((1 + checks) * 10_000)
    obj["metadata"]["annotations"] = {"note": "x" * rest}
    return obj


def test_the_largest_run_fits_a_pod_and_the_annotations():
    obj = sized(MAX_SPEC_BYTES)
    run = run_from_obj(obj)
    assert len(json.dumps(run.snapshot(), sort_keys=True)) == MAX_SPEC_BYTES
    job = build_job(run, "eval", ControllerSettings(default_store_uri="s3://ft-artifacts/x", images={"eval": "ft-eval:1"}))
    env = {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert len(f"FT_SPEC={env['FT_SPEC']}".encode()) < ENV_LIMIT
    # the controller's spec snapshot plus kubectl's last-applied copy of the whole manifest
    snapshot, last_applied = json.dumps(obj["spec"], sort_keys=True), json.dumps(obj)
    assert len(snapshot) + len(last_applied) < ANNOTATIONS_LIMIT


def test_one_byte_more_is_refused_by_validate_naming_the_limit():
    message = errors_of(sized(MAX_SPEC_BYTES + 1))
    assert f"the run is {MAX_SPEC_BYTES + 1} bytes as JSON, over the {MAX_SPEC_BYTES}-byte limit" in message


def test_controller_admission_refuses_it_too():
    obj = sized(MAX_SPEC_BYTES + 12_000)  # the controller validates the spec under bare metadata
    reconciler = SimpleNamespace(settings=ControllerSettings(default_store_uri="file:///tmp/store"))
    with pytest.raises(InvalidSpec, match=f"over the {MAX_SPEC_BYTES}-byte limit"):
        Reconciler._validate(reconciler, "default", "r1", obj["spec"])
