"""The chart grants the controller exactly the access controller/rbac.py lists: no verb
more, no verb less, never a wildcard; namespaced unless the install watches all namespaces."""

from __future__ import annotations

import re

import pytest

from controller.rbac import RULES, policy_rules
from tests.chart.chartlib import CHART, NAMESPACE, RELEASE, VALUE_SETS, Render, kinds, one


def _rules(obj: dict) -> list[dict]:
    return [{k: r[k] for k in ("apiGroups", "resources", "verbs")} for r in obj["rules"]]


def test_per_team_role_grants_exactly_the_controllers_rules(render: Render) -> None:
    objs = render()
    role = one(objs, "Role")
    assert role["metadata"]["namespace"] == NAMESPACE
    assert _rules(role) == policy_rules()
    assert not {"ClusterRole", "ClusterRoleBinding"} & set(kinds(objs))


def test_cluster_role_only_when_watching_all_namespaces(render: Render) -> None:
    objs = render({"watchAllNamespaces": True})
    assert _rules(one(objs, "ClusterRole")) == policy_rules()
    binding = one(objs, "ClusterRoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": one(objs, "ClusterRole")["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": f"{RELEASE}-finetune-operator", "namespace": NAMESPACE}
    ]
    assert not {"Role", "RoleBinding"} & set(kinds(objs))


def test_cluster_names_do_not_collide_between_namespaces(render: Render) -> None:
    names = {one(render({"watchAllNamespaces": True}, namespace=ns), "ClusterRole")["metadata"]["name"] for ns in ("a", "b")}
    assert len(names) == 2


def test_role_binding_binds_the_controllers_service_account(render: Render) -> None:
    objs = render()
    binding = one(objs, "RoleBinding")
    assert binding["roleRef"]["name"] == one(objs, "Role")["metadata"]["name"]
    sa = one(objs, "ServiceAccount")["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa, "namespace": NAMESPACE}]
    assert one(objs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == sa


def test_rbac_create_false_grants_nothing(render: Render) -> None:
    for watch_all in (False, True):
        objs = render({"rbac": {"create": False}, "watchAllNamespaces": watch_all})
        assert not {"Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"} & set(kinds(objs))


def test_existing_service_account(render: Render) -> None:
    objs = render({"serviceAccount": {"create": False, "name": "platform-sa"}})
    assert "ServiceAccount" not in kinds(objs)
    assert one(objs, "RoleBinding")["subjects"][0]["name"] == "platform-sa"


@pytest.mark.parametrize("values", VALUE_SETS)
def test_no_wildcards(render: Render, values: str) -> None:
    for obj in render(VALUE_SETS[values]):
        for rule in obj.get("rules", []):
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[field], f"{obj['kind']}: {rule}"


def test_every_verb_is_justified_beside_its_rule() -> None:
    """Each rule in the template is preceded by comments naming every one of its verbs with
    the controller's reason, so a reviewer reads why without opening the code."""
    text = (CHART / "templates" / "rbac.yaml").read_text()
    block = text[text.index('{{- define "ft.rules" -}}') : text.index("{{- end }}")]
    rules = re.findall(r"((?:#.*\n)+)- apiGroups: \[(.*)\]\n  resources: \[(.*)\]\n  verbs: \[(.*)\]", block)
    assert len(rules) == len(policy_rules())
    for comment, _, resources, verbs in rules:
        resource = resources.strip('"')
        why = {v for r in RULES if resource in r["resources"] for v in r["verbs"]}
        for verb in (v.strip().strip('"') for v in verbs.split(",")):
            assert verb in why, f"{resource}: {verb} is not in controller.rbac.RULES"
            assert re.search(rf"#\s+(\w+, )*{verb}(, \w+)*:", comment), f"{resource}: no comment justifies {verb}"
