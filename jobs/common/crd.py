"""Generate the FineTuneRun CRD from the pydantic models.

    python -m jobs.common.crd > crds/finetune.dev_finetuneruns.yaml

Pydantic emits JSON Schema (2020-12) with $defs; Kubernetes wants a structural
OpenAPI v3.0 schema. This inlines every $ref, turns `anyOf [X, null]` into
`nullable`, numeric `exclusiveMinimum` into the v3.0 boolean form, and drops
keys Kubernetes rejects. A test fails when the checked-in file drifts.
"""

from __future__ import annotations

import sys
from typing import Any

import yaml

from jobs.common.names import GROUP, KIND, PLURAL, SHORT_NAME, VERSION
from jobs.common.spec import FineTuneRunSpec
from jobs.common.status import RunStatus

_DROP = {"title", "$schema", "discriminator", "examples"}


def _resolve(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_resolve(n, defs) for n in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = _resolve(defs[node["$ref"].split("/")[-1]], defs)
        rest = {k: v for k, v in node.items() if k != "$ref"}
        return {**target, **_resolve(rest, defs)}
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP or key == "$defs":
            continue
        out[key] = _resolve(value, defs)
    return _to_openapi(out)


def _to_openapi(node: dict[str, Any]) -> dict[str, Any]:
    # Optional fields: anyOf [X, {type: null}] -> X + nullable.
    if "anyOf" in node:
        options = [o for o in node["anyOf"] if o.get("type") != "null"]
        nullable = len(options) < len(node["anyOf"])
        rest = {k: v for k, v in node.items() if k != "anyOf"}
        if len(options) == 1:
            node = {**options[0], **rest}
        else:
            # Mixed types (e.g. a list or the string "all-linear"): accept any, the
            # controller validates with the full model.
            node = {**rest, "x-kubernetes-preserve-unknown-fields": True}
        if nullable:
            node["nullable"] = True
    if "exclusiveMinimum" in node and not isinstance(node["exclusiveMinimum"], bool):
        node["minimum"], node["exclusiveMinimum"] = node["exclusiveMinimum"], True
    if "exclusiveMaximum" in node and not isinstance(node["exclusiveMaximum"], bool):
        node["maximum"], node["exclusiveMaximum"] = node["exclusiveMaximum"], True
    if "const" in node:
        node["enum"] = [node.pop("const")]
    if node.get("additionalProperties") is False:
        # Structural schemas reject additionalProperties: false next to properties;
        # Kubernetes' strict field validation already refuses unknown fields.
        del node["additionalProperties"]
    if node.get("default") is None and "default" in node:
        del node["default"]
    if node.get("x-kubernetes-preserve-unknown-fields"):
        node.pop("type", None)
    return node


def openapi_schema(model: type) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    return _resolve(raw, raw.get("$defs", {}))


def build_crd() -> dict[str, Any]:
    spec_schema = openapi_schema(FineTuneRunSpec)
    status_schema = openapi_schema(RunStatus)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": KIND.lower(),
                "shortNames": [SHORT_NAME],
                "categories": ["finetune"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                        {"name": "Step", "type": "string", "jsonPath": ".status.currentStep"},
                        {"name": "Progress", "type": "string", "jsonPath": ".status.progress"},
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                    ],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                # Immutability after start is enforced by the controller (status.specHash):
                                # a CEL equality rule over unbounded lists exceeds the API server's cost budget.
                                "spec": spec_schema,
                                # Status holds only RunStatus: kopf keeps its bookkeeping in annotations.
                                "status": status_schema,
                            },
                        }
                    },
                }
            ],
        },
    }


def render() -> str:
    header = "# Generated by `python -m jobs.common.crd` from jobs/common/spec.py. Do not edit.\n"
    return header + yaml.safe_dump(build_crd(), sort_keys=False, width=120, allow_unicode=True)


if __name__ == "__main__":
    sys.stdout.write(render())
