"""Rendering the chart with the real Helm engine (helm-python-sdk: Helm's Go SDK), offline,
and reading what it rendered."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "finetune-operator"
VALUES = Path(__file__).parent / "values"
E2E_VALUES = ROOT / "tests" / "e2e" / "values-e2e.yaml"
RELEASE, NAMESPACE = "ft", "team-nlp"

Render = Callable[..., list[dict[str, Any]]]


def load_values(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text()) or {}


# The value sets the chart is rendered and validated with.
VALUE_SETS = {
    "defaults": {},
    "team": load_values(VALUES / "team.yaml"),
    "all-on": load_values(VALUES / "all-on.yaml"),
    "e2e": load_values(E2E_VALUES),
}


def objects(manifests: dict[str, str]) -> list[dict[str, Any]]:
    """Every Kubernetes object in rendered templates (NOTES.txt is not a manifest)."""
    out = []
    for path, text in sorted(manifests.items()):
        if path.endswith(".yaml"):
            out += [doc for doc in yaml.safe_load_all(text) if doc]
    return out


def one(objs: list[dict[str, Any]], kind: str, component: str | None = None) -> dict[str, Any]:
    found = [
        o for o in objs
        if o["kind"] == kind
        and (component is None or o["metadata"].get("labels", {}).get("app.kubernetes.io/component") == component)
    ]
    assert len(found) == 1, f"expected one {kind} ({component}), found {len(found)}"
    return found[0]


def kinds(objs: list[dict[str, Any]]) -> list[str]:
    return sorted(o["kind"] for o in objs)


def controller_env(objs: list[dict[str, Any]], namespace: str = NAMESPACE) -> dict[str, str]:
    """The controller container's plain env, as its process would see it (fieldRefs resolved;
    Secret references left out: their values are not the chart's)."""
    container = one(objs, "Deployment", "controller")["spec"]["template"]["spec"]["containers"][0]
    env = {}
    for item in container["env"]:
        if "value" in item:
            env[item["name"]] = item["value"]
        elif item["valueFrom"].get("fieldRef", {}).get("fieldPath") == "metadata.namespace":
            env[item["name"]] = namespace
    return env
