"""The CRD's status schema is exact (no x-kubernetes-preserve-unknown-fields), and it holds every
field the controller writes, so the API server prunes nothing of a status."""

from jobs.common.crd import build_crd
from jobs.common.status import Condition, RunError, RunStatus, StepProgress, StepStatus


def unpruned(value, schema, path="status") -> list[str]:
    """Paths of `value` that a structural schema would prune."""
    if isinstance(value, dict):
        props = schema.get("properties")
        if props is None:
            return [] if schema.get("additionalProperties") else [path]
        return [p for k, v in value.items() for p in ([f"{path}.{k}"] if k not in props else unpruned(v, props[k], f"{path}.{k}"))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in unpruned(v, schema["items"], f"{path}[{i}]")]
    return []


def test_status_schema_is_exact_and_holds_a_full_status():
    status_schema = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
    assert "x-kubernetes-preserve-unknown-fields" not in status_schema
    full = RunStatus(
        phase="Running", current_step="train", progress="2/4 train 42%",
        steps=[StepStatus(name="train", phase="Running", job="r-train", started="t", attempts=1,
                          progress=StepProgress(percent=42.0, current=2, total=5, loss=1.0, tokens_per_sec=9.0, eta_seconds=3.0),
                          reason="StepRunning", message="m")],
        conditions=[Condition(type="Running", status="True", reason="StepRunning", message="m", last_transition_time="t")],
        artifacts={"adapter": "s3://b/a/"}, error=RunError(code="StepFailed", message="m", step="train"),
        spec_hash="abc", observed_generation=3,
    ).model_dump(mode="json", by_alias=True)
    assert unpruned(full, status_schema) == []
    assert unpruned({**full, "kopf": {"progress": {}}}, status_schema) == ["status.kopf"]
