"""The kind quickstart runs to Succeeded and leaves its GGUF files in MinIO."""

from __future__ import annotations

import hashlib
import json

import pytest
import yaml

from tests.e2e.cluster import (
    BUCKET, NAMESPACE, ROOT, apply_run, condition, keys_under, kubectl_json, minio_client, requires_cluster, step,
    wait_phase,
)

pytestmark = [pytest.mark.e2e, requires_cluster]


def test_quickstart_succeeds_with_gguf_files_in_minio(inputs: dict[str, str], tmp_path) -> None:
    manifest = yaml.safe_load((ROOT / "examples" / "kind-quickstart.yaml").read_text())
    name = apply_run(manifest)
    status = wait_phase(name, {"Succeeded"}, timeout=60 * 60)

    assert condition(status, "Succeeded")["status"] == "True"
    for s in ("pack", "train", "evaluate", "gguf"):
        assert step(status, s).get("phase") in ("Succeeded", "Cached"), step(status, s)
    jobs = kubectl_json("get", "jobs", "-l", f"finetune.dev/run={name}")["items"]
    assert {j["metadata"]["labels"]["finetune.dev/step"] for j in jobs} <= {"pack", "train", "evaluate", "gguf"}
    for job in jobs:  # steps get no API token and run as non-root
        pod = job["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False and pod["securityContext"]["runAsNonRoot"] is True

    manifest_key = f"runs/{NAMESPACE}/{name}/gguf/_manifest.json"
    with minio_client() as s3:
        committed = json.loads(s3.get_object(Bucket=BUCKET, Key=manifest_key)["Body"].read())
        ggufs = sorted((f for f in committed["files"] if f["path"].endswith(".gguf")), key=lambda f: f["path"])
        assert [f["path"].rsplit("-", 1)[-1] for f in ggufs] == ["Q4_K_M.gguf", "Q8_0.gguf"], committed["files"]
        assert any(f["path"] == "Modelfile" for f in committed["files"])
        for f in ggufs:  # every file the manifest names is in MinIO, whole
            assert keys_under(s3, f["key"]) == {f["key"]: f["size"]}
        local = tmp_path / "q4.gguf"
        s3.download_file(BUCKET, ggufs[0]["key"], str(local))
    assert hashlib.sha256(local.read_bytes()).hexdigest() == ggufs[0]["sha256"]
    assert local.read_bytes()[:4] == b"GGUF"
    assert any(uri.endswith(".gguf") for uri in status.get("artifacts", {}).values())
