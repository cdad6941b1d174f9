"""The chart renders with each value set, and every object validates against the
Kubernetes versions we support; the controller Deployment is what a cluster admin expects."""

from __future__ import annotations

import re
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest

from tests.chart.chartlib import CHART, NAMESPACE, RELEASE, VALUE_SETS, Render, controller_env, kinds, one

# The minor versions docs/install.md promises; Chart.yaml's kubeVersion is >=1.31.
KUBERNETES_VERSIONS = ("1.31", "1.33", "1.35")


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("values", VALUE_SETS)
def test_every_object_validates(render: Render, values: str, version: str) -> None:
    objs = render(VALUE_SETS[values])
    assert objs
    for obj in objs:
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        try:
            used = kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as err:
            path = ".".join(map(str, err.path))
            pytest.fail(f"{values}: {name} is invalid for Kubernetes {version}: {path}: {err.message}")
        assert used == version, f"{name} was checked against {used}, not {version}"


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("values", VALUE_SETS)
def test_helm_lint_is_clean(values: str, version: str) -> None:
    report = helm.lint(CHART, VALUE_SETS[values], strict=True, namespace=NAMESPACE, kube_version=f"v{version}.0")
    problems = [m for m in report["messages"] if m["severity"] >= 2] + report.get("errors", [])
    assert not problems, problems


def test_defaults_are_a_namespaced_install(render: Render) -> None:
    objs = render()
    assert kinds(objs) == [
        "CustomResourceDefinition", "Deployment", "Role", "RoleBinding", "ServiceAccount",
    ]
    for obj in objs:
        if obj["kind"] != "CustomResourceDefinition":
            assert obj["metadata"]["namespace"] == NAMESPACE


def test_team_install_watches_its_namespace_with_its_settings(render: Render) -> None:
    objs = render(VALUE_SETS["team"])
    assert "CustomResourceDefinition" not in kinds(objs), "the platform installs the CRD once"
    assert "ClusterRole" not in kinds(objs)
    env = controller_env(objs)
    assert env["FT_NAMESPACES"] == NAMESPACE
    assert env["FT_STORE_URI"] == "s3://team-nlp-artifacts/finetune"
    assert env["FT_STORE_SECRET"] == "team-nlp-s3"
    assert env["FT_DEFAULT_QUEUE"] == "team-nlp-gpu"
    assert env["FT_IMAGE_TRAIN"] == "registry.example.com/ml/finetune-operator/train:0.1.0"
    pod = one(objs, "Deployment", "controller")["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": "registry-pull"}]


def test_watching_another_namespace_puts_the_role_there(render: Render) -> None:
    objs = render({"watchNamespace": "team-nlp-runs"})
    assert one(objs, "Role")["metadata"]["namespace"] == "team-nlp-runs"
    binding = one(objs, "RoleBinding")
    assert binding["metadata"]["namespace"] == "team-nlp-runs"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": f"{RELEASE}-finetune-operator", "namespace": NAMESPACE}]
    assert controller_env(objs)["FT_NAMESPACES"] == "team-nlp-runs"


def test_all_options(render: Render) -> None:
    objs = render(VALUE_SETS["all-on"])
    controller_objs = [o for o in objs if o["metadata"].get("labels", {}).get("app.kubernetes.io/component") != "api"]
    assert "Role" not in kinds(controller_objs)  # the API server's Roles are namespaced; tests/chart/test_api.py
    assert {"ClusterRole", "ClusterRoleBinding", "PersistentVolumeClaim", "Secret", "Service", "Job"} <= set(kinds(objs))
    env = controller_env(objs)
    assert env["FT_NAMESPACES"] == "*"
    assert env["FT_IMAGE_TRAIN"] == (
        "registry.example.com/ml/train@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
    )
    assert env["FT_IMAGE_GGUF"] == "registry.example.com/ml/gguf:0.1.0-cpu"
    assert env["FT_IMAGE_EVAL"] == "registry.example.com/ml/eval:0.1.0-rc1"
    assert env["FT_STORE_URI"] == "s3://platform-artifacts"
    assert env["FT_STORE_SECRET"] == "platform-finetune-s3"
    assert env["FT_STEP_SERVICE_ACCOUNT"] == "finetune-steps"
    deployment = one(objs, "Deployment", "controller")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.example.com/ops/ft-controller:0.1.0-rc1"
    assert one(objs, "CustomResourceDefinition")["metadata"].get("annotations") is None  # crds.keep: false
    assert one(objs, "PersistentVolumeClaim")["spec"]["storageClassName"] == "fast-ssd"


def test_controller_deployment(render: Render) -> None:
    deployment = one(render(), "Deployment", "controller")
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    container = pod["containers"][0]
    probe = container["livenessProbe"]
    assert probe["httpGet"]["path"] == "/healthz"
    port = {p["name"]: p["containerPort"] for p in container["ports"]}[probe["httpGet"]["port"]]
    # The controller serves kopf's liveness endpoint where FT_LIVENESS says.
    assert controller_env(render())["FT_LIVENESS"] == f"http://0.0.0.0:{port}/healthz"
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    assert pod["serviceAccountName"] == f"{RELEASE}-finetune-operator"
    # The root filesystem is read-only: HOME must be on a writable mount.
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    home = controller_env(render())["HOME"]
    assert any(home.startswith(m["mountPath"]) for m in container["volumeMounts"]), home


def _pod_specs(objs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{o['kind']}/{o['metadata']['name']}", o["spec"]["template"]["spec"])
        for o in objs if o["kind"] in ("Deployment", "Job")
    ]


@pytest.mark.parametrize("values", VALUE_SETS)
def test_every_pod_meets_the_restricted_pod_security_standard(render: Render, values: str) -> None:
    for name, pod in _pod_specs(render(VALUE_SETS[values])):
        psc = pod["securityContext"]
        assert psc["runAsNonRoot"] is True and psc["runAsUser"] != 0, name
        assert psc["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC"), name
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["capabilities"] == {"drop": ["ALL"]}, name
            assert "resources" in c and c["resources"].get("limits", {}).get("memory"), name
        for volume in pod.get("volumes", []):
            assert "hostPath" not in volume, name


@pytest.mark.parametrize("values", VALUE_SETS)
def test_only_the_controller_mounts_a_token(render: Render, values: str) -> None:
    # and the API server, which creates FineTuneRuns (tests/chart/test_api.py checks its Role)
    for name, pod in _pod_specs(render(VALUE_SETS[values])):
        expected = name.startswith("Deployment/") and name.endswith(("finetune-operator", "finetune", "-api"))
        assert pod["automountServiceAccountToken"] is expected, name


CREDENTIAL_ENV = re.compile(r"ACCESS_KEY|SECRET|PASSWORD|TOKEN|API_KEY", re.I)
SECRET_NAMES_ENV = re.compile(r"_SECRETS?$")  # FT_STORE_SECRET holds a Secret's name, not a value


@pytest.mark.parametrize("values", VALUE_SETS)
def test_credentials_only_by_secret_reference(render: Render, render_raw, values: str) -> None:
    """Every credential a container gets is a secretKeyRef; the only place a credential value
    is written is the MinIO Secret the chart itself creates."""
    objs = render(VALUE_SETS[values])
    for name, pod in _pod_specs(objs):
        for c in pod["containers"]:
            for env in c.get("env", []):
                if CREDENTIAL_ENV.search(env["name"]) and not SECRET_NAMES_ENV.search(env["name"]):
                    assert "secretKeyRef" in env.get("valueFrom", {}), f"{name}: {env['name']} is not a Secret reference"
    secrets = [o for o in objs if o["kind"] == "Secret"]
    assert len(secrets) == (1 if VALUE_SETS[values].get("minio", {}).get("enabled") else 0)
    password = VALUE_SETS[values].get("minio", {}).get("rootPassword")
    if password:
        assert secrets[0]["stringData"]["AWS_SECRET_ACCESS_KEY"] == password
        rendered = "".join(render_raw(VALUE_SETS[values]).values())
        assert rendered.count(password) == 1, "the password appears outside the Secret"


def test_a_generated_minio_password_is_random(render: Render) -> None:
    first, second = (
        one(render({"minio": {"enabled": True}}), "Secret")["stringData"]["AWS_SECRET_ACCESS_KEY"] for _ in range(2)
    )
    assert len(first) == 32 and first.isalnum() and first != second


def test_images_are_tagged_with_the_app_version_by_default(render: Render) -> None:
    objs = render()
    env = controller_env(objs)
    for step in ("eval", "pack", "train", "gguf"):
        assert env[f"FT_IMAGE_{step.upper()}"] == f"finetune-operator/{step}:0.1.0"
    assert env["FT_IMAGE_EVALUATE"] == "finetune-operator/train:0.1.0"  # one image for both
    assert one(objs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"] == (
        "finetune-operator/controller:0.1.0"
    )


def test_notes_name_the_watched_namespace_and_the_store(render_raw) -> None:
    notes = render_raw(VALUE_SETS["team"])["finetune-operator/templates/NOTES.txt"]
    assert f"watches FineTuneRuns in namespace {NAMESPACE}" in notes
    assert "s3://team-nlp-artifacts/finetune" in notes
    assert "does not install the FineTuneRun CRD" in notes
