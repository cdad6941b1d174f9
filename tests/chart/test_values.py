"""values.yaml and values.schema.json: every value documented and typed, no unknown key
accepted anywhere, and bad values rejected by Helm before anything renders."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import helm_python as helm
import pytest
import yaml

from tests.chart.chartlib import CHART

SCHEMA = json.loads((CHART / "values.schema.json").read_text())
VALUES_TEXT = (CHART / "values.yaml").read_text()


def _deref(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = SCHEMA["definitions"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def _object_schemas(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    """Every schema of type object reachable from `node`, with its values path."""
    out = []
    if isinstance(node, dict):
        node = _deref(node)
        if node.get("type") == "object":
            out.append((path or "<root>", node))
        for key, sub in node.get("properties", {}).items():
            out += _object_schemas(sub, f"{path}.{key}".lstrip("."))
        for keyword in ("items", "additionalProperties"):
            if isinstance(node.get(keyword), dict):
                out += _object_schemas(node[keyword], f"{path}[]")
        for keyword in ("oneOf", "anyOf", "allOf"):
            for sub in node.get(keyword, []):
                out += _object_schemas(sub, path)
    return out


def test_no_object_accepts_unknown_keys() -> None:
    objects = _object_schemas(SCHEMA)
    assert len(objects) > 20
    for path, node in objects:
        extra = node.get("additionalProperties")
        if node.get("properties"):
            assert extra is False, f"{path}: additionalProperties must be false"
        else:  # a free-form map (labels, annotations, node selectors): its values are typed
            assert isinstance(extra, dict) and extra.get("type"), f"{path}: free-form map without a value type"


def _leaves(values: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Paths of values.yaml keys, descending only where the schema lists properties."""
    schema = _deref(schema)
    if isinstance(values, dict) and schema.get("properties"):
        out = []
        for key, sub in values.items():
            assert key in schema["properties"], f"values.yaml: {path}{key} is not in values.schema.json"
            out += _leaves(sub, schema["properties"][key], f"{path}{key}.")
        return out
    return [path.rstrip(".")]


def test_values_and_schema_describe_the_same_keys() -> None:
    defaults = yaml.safe_load(VALUES_TEXT)
    assert set(defaults) == set(SCHEMA["properties"]), "top-level keys differ"
    for key, sub in SCHEMA["properties"].items():
        sub = _deref(sub)
        if sub.get("properties") and isinstance(defaults[key], dict):
            assert set(defaults[key]) == set(sub["properties"]), f"{key}: keys differ from the schema"
    assert _leaves(defaults, SCHEMA)


@dataclass
class Key:
    name: str
    indent: int
    documented: bool
    leaf: bool
    children: list[Key] = field(default_factory=list)


def _key_tree(text: str) -> list[Key]:
    roots: list[Key] = []
    stack: list[Key] = []
    previous = ""
    for line in text.splitlines():
        m = re.match(r"^( *)([\w./-]+):(.*)$", line)
        if m:
            indent, name, rest = len(m.group(1)), m.group(2), m.group(3).strip()
            key = Key(name, indent, previous.lstrip().startswith("#"), bool(rest))
            while stack and stack[-1].indent >= indent:
                stack.pop()
            (stack[-1].children if stack else roots).append(key)
            stack.append(key)
        if line.strip():
            previous = line
    return roots


def _undocumented(keys: list[Key], path: str = "") -> list[str]:
    out = []
    for key in keys:
        if key.documented:
            continue  # a comment on a section documents what is inside it
        if key.leaf or not key.children:
            out.append(f"{path}{key.name}")
        else:
            out += _undocumented(key.children, f"{path}{key.name}.")
    return out


def test_every_value_is_documented() -> None:
    assert not _undocumented(_key_tree(VALUES_TEXT)), "values.yaml keys without a comment above them"


BAD_VALUES = [
    ({"surprise": True}, "additional properties 'surprise'"),
    ({"crds": {"install": True, "upgrade": True}}, "additional properties 'upgrade'"),
    ({"watchAllNamespaces": "yes"}, "/watchAllNamespaces"),
    ({"watchNamespace": "Team NLP"}, "/watchNamespace"),
    ({"images": {"pullPolicy": "Sometimes"}}, "/images/pullPolicy"),
    ({"images": {"train": {"digest": "latest"}}}, "/images/train/digest"),
    ({"images": {"tag": "0.1.0 rc"}}, "/images/tag"),
    ({"images": {"pullSecrets": [""]}}, "/images/pullSecrets/0"),
    ({"controller": {"resources": {"requests": {"cpu": "lots"}}}}, "/controller/resources/requests/cpu"),
    ({"controller": {"resources": {"request": {"cpu": "1"}}}}, "additional properties 'request'"),
    ({"controller": {"metricsPort": 8080}}, "/controller/metricsPort"),
    ({"controller": {"livenessProbe": {"periodSeconds": 0}}}, "/controller/livenessProbe/periodSeconds"),
    ({"controller": {"podLabels": {"team": 7}}}, "/controller/podLabels/team"),
    ({"store": {"uri": "file:///data"}}, "/store/uri"),
    ({"store": {"uri": "s3://Bad_Bucket"}}, "/store/uri"),
    ({"store": {"secretName": "S3 Creds"}}, "/store/secretName"),
    ({"kueue": {"defaultQueue": "Team_GPU"}}, "/kueue/defaultQueue"),
    ({"steps": {"resources": {"finetune": {"cpu": "1"}}}}, "additional properties 'finetune'"),
    ({"steps": {"resources": {"train": {"nvidia.com/gpu": 1.5}}}}, "/steps/resources/train/nvidia.com~1gpu"),
    ({"steps": {"resources": {"train": {"memory": "48 GB"}}}}, "/steps/resources/train/memory"),
    ({"steps": {"gpuTolerations": [{"key": "gpu", "operator": "In"}]}}, "/steps/gpuTolerations/0/operator"),
    ({"steps": {"runAsUser": 0}}, "/steps/runAsUser"),
    ({"minio": {"enabled": True, "rootPassword": "short"}}, "/minio/rootPassword"),
    ({"minio": {"rootPassword": "has@sign-and/slash"}}, "/minio/rootPassword"),
    ({"minio": {"bucket": "B"}}, "/minio/bucket"),
]


@pytest.mark.parametrize(("values", "where"), BAD_VALUES, ids=[w for _, w in BAD_VALUES])
def test_bad_values_are_rejected_naming_the_key(chart: helm.Chart, values: dict, where: str) -> None:
    with pytest.raises(helm.HelmValuesError) as err:
        chart.render(values, name="ft", namespace="team-nlp", is_install=True)
    assert where in str(err.value)


def test_a_missing_service_account_name_is_refused(chart: helm.Chart) -> None:
    with pytest.raises(helm.HelmRenderError, match="serviceAccount.name"):
        chart.render({"serviceAccount": {"create": False}}, name="ft", namespace="team-nlp")
