"""The chart's OpenAI-compatible API server: off by default; when on, a Deployment running
`ftctl serve --backend cluster` from the controller image, a Service, its own ServiceAccount and
in each tenant namespace a Role granting exactly jobs.api.cluster.RULES; keys from a Secret."""

from __future__ import annotations

import pytest
import yaml

from jobs.api.cluster import RULES
from jobs.api.template import JobTemplate
from tests.chart.chartlib import NAMESPACE, VALUE_SETS, Render, one

ON = {"api": {"enabled": True, "keysSecret": "ft-api-keys"}}


def api_objects(objs: list[dict]) -> list[dict]:
    return [o for o in objs if o["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "api"]


def test_the_api_is_off_by_default(render: Render) -> None:
    assert api_objects(render()) == []


def test_the_api_server_runs_serve_from_the_controller_image(render: Render) -> None:
    objs = render(ON)
    assert sorted(o["kind"] for o in api_objects(objs)) == ["Deployment", "Role", "RoleBinding", "Service", "ServiceAccount"]
    deployment = one(objs, "Deployment", "api")
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert deployment["spec"]["replicas"] == 1
    assert container["image"] == one(objs, "Deployment", "controller")["spec"]["template"]["spec"]["containers"][0]["image"]
    assert container["command"] == ["python", "-m", "jobs.cli.main", "serve"]
    assert "--backend=cluster" in container["args"] and "--keys=/etc/ft-api/keys.yaml" in container["args"]
    assert pod["serviceAccountName"] == one(objs, "ServiceAccount", "api")["metadata"]["name"]
    # The keys come from the Secret as a mounted file: never an env var, never in the manifest.
    keys = next(v for v in pod["volumes"] if v["name"] == "keys")
    assert keys["secret"] == {"secretName": "ft-api-keys", "items": [{"key": "keys.yaml", "path": "keys.yaml"}]}
    assert all("ft-api-keys" not in str(e) for e in container["env"])
    service = one(objs, "Service", "api")
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "http"}]


def test_the_api_role_grants_exactly_what_the_cluster_backend_calls(render: Render) -> None:
    objs = render({"api": {**ON["api"], "namespaces": ["team-a", "team-b"]}})
    roles = [o for o in api_objects(objs) if o["kind"] == "Role"]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    for role in roles:
        assert role["rules"] == RULES
    sa = one(objs, "ServiceAccount", "api")["metadata"]
    for binding in (o for o in api_objects(objs) if o["kind"] == "RoleBinding"):
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa["name"], "namespace": NAMESPACE}]
        assert binding["roleRef"]["name"] == roles[0]["metadata"]["name"]
    # Without a list, the tenant is the namespace the controller watches.
    [default_role] = [o for o in api_objects(render(ON)) if o["kind"] == "Role"]
    assert default_role["metadata"]["namespace"] == NAMESPACE


def test_the_api_needs_a_keys_secret(render: Render) -> None:
    with pytest.raises(Exception, match="api.keysSecret"):
        render({"api": {"enabled": True}})


def test_a_template_value_becomes_a_config_map_the_server_accepts(render: Render) -> None:
    objs = render(VALUE_SETS["all-on"])
    config = one(objs, "ConfigMap", "api")
    template = JobTemplate(yaml.safe_load(config["data"]["template.yaml"]), "the chart's ConfigMap")
    assert list(template.models) == ["SmolLM2-135M-Instruct"]
    container = one(objs, "Deployment", "api")["spec"]["template"]["spec"]["containers"][0]
    assert "--template=/etc/ft-api-template/template.yaml" in container["args"]
    assert one(objs, "Service", "api")["spec"]["ports"][0]["port"] == 8080
