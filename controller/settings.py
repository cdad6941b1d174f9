"""The controller's own settings, read once from its environment (the Helm chart sets them).

    FT_NAMESPACES          comma-separated namespaces to watch; "*" watches the whole cluster;
                           default: the controller's own namespace (POD_NAMESPACE), else "default"
    FT_STORE_URI           store for runs whose spec.store.uri is unset
    FT_STORE_SECRET        Secret with S3 credentials for runs whose spec.store.secretRef is unset
    FT_IMAGE_<STEP>        image of one step (FT_IMAGE_EVAL, FT_IMAGE_TRAIN, ...)
    FT_IMAGE               image for every step without its own; default
                           finetune-operator/<step>:<version>, evaluate in the train image
    FT_IMAGE_PULL_POLICY   Always | IfNotPresent | Never (default IfNotPresent)
    FT_IMAGE_PULL_SECRETS  comma-separated image pull Secrets of step pods
    FT_DEFAULT_QUEUE       Kueue LocalQueue for runs whose spec.queue is unset
    FT_DEFAULT_RESOURCES   JSON in the form of spec.resources: each step's default cpu, memory
                           and nvidia.com/gpu; a run's own spec.resources.<step> fields win
    FT_GPU_TOLERATIONS     JSON list of tolerations (spec.scheduling form) added to GPU steps
    FT_GPU_NODE_SELECTOR   JSON map added under the node selector of GPU steps
    FT_STEP_SERVICE_ACCOUNT  service account of step pods (its token is never mounted)
    FT_RUN_AS_USER         uid/gid of step containers (default 10001, the images' user)
    FT_SCRATCH_SIZE        size limit of the scratch emptyDir, e.g. 200Gi (default: none)
    FT_PROGRESS_INTERVAL   seconds between progress.json reads (default 15)
    FT_METRICS_PORT        Prometheus port (default 9090; 0 turns metrics off)
    FT_LIVENESS            kopf liveness endpoint (default http://0.0.0.0:8080/healthz)
    FT_WORKERS             threads for blocking API and store calls (default 16)
    FT_SECRET_BACKOFF      first retry delay in seconds while a Secret is missing, doubled
                           on each retry up to 5 minutes (default 5)
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from importlib import metadata
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from jobs.common.keys import validate_store_uri
from jobs.common.names import STEP_ORDER
from jobs.common.spec import DNS_LABEL, Resources, Toleration

# Steps that run in another step's image: evaluate needs exactly what train installs.
_SHARED_IMAGE = {"evaluate": "train"}

_JSON_VARS = {
    "FT_DEFAULT_RESOURCES": "default_resources",
    "FT_GPU_TOLERATIONS": "gpu_tolerations",
    "FT_GPU_NODE_SELECTOR": "gpu_node_selector",
}


def _version() -> str:
    try:
        return metadata.version("finetune-operator")
    except metadata.PackageNotFoundError:
        return "dev"


def _json(var: str, text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{var}: not valid JSON ({err})") from None


class ControllerSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    namespaces: tuple[str, ...] = ("default",)
    clusterwide: bool = False
    default_store_uri: str | None = None
    default_store_secret: str | None = Field(default=None, pattern=DNS_LABEL)
    images: dict[str, str] = Field(default_factory=dict)
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    image_pull_secrets: tuple[str, ...] = ()
    default_queue: str | None = Field(default=None, pattern=DNS_LABEL)
    default_resources: Resources = Field(default_factory=Resources)
    gpu_tolerations: tuple[Toleration, ...] = ()
    gpu_node_selector: dict[str, str] = Field(default_factory=dict)
    step_service_account: str | None = Field(default=None, pattern=DNS_LABEL)
    run_as_user: int = Field(default=10001, ge=1)
    scratch_size: str | None = None
    progress_interval: float = Field(default=15.0, gt=0)
    metrics_port: int = Field(default=9090, ge=0, le=65535)
    liveness: str | None = "http://0.0.0.0:8080/healthz"
    workers: int = Field(default=16, ge=1, le=512)
    secret_backoff: float = Field(default=5.0, gt=0)

    @field_validator("default_store_uri")
    @classmethod
    def _store_uri(cls, v: str | None) -> str | None:
        if v is not None:
            validate_store_uri(v)
        return v

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ControllerSettings:
        env = os.environ if env is None else env
        raw_ns = env.get("FT_NAMESPACES") or env.get("POD_NAMESPACE") or "default"
        names = tuple(n.strip() for n in raw_ns.split(",") if n.strip())
        version = _version()
        fallback = env.get("FT_IMAGE")
        images = {
            step: env.get(f"FT_IMAGE_{step.upper()}") or fallback
            or f"finetune-operator/{_SHARED_IMAGE.get(step, step)}:{version}"
            for step in STEP_ORDER
        }
        pull_secrets = tuple(s.strip() for s in (env.get("FT_IMAGE_PULL_SECRETS") or "").split(",") if s.strip())
        optional: dict[str, Any] = {
            "default_store_uri": env.get("FT_STORE_URI"),
            "default_store_secret": env.get("FT_STORE_SECRET"),
            "image_pull_policy": env.get("FT_IMAGE_PULL_POLICY"),
            "default_queue": env.get("FT_DEFAULT_QUEUE"),
            "step_service_account": env.get("FT_STEP_SERVICE_ACCOUNT"),
            "run_as_user": env.get("FT_RUN_AS_USER"),
            "scratch_size": env.get("FT_SCRATCH_SIZE"),
            "progress_interval": env.get("FT_PROGRESS_INTERVAL"),
            "metrics_port": env.get("FT_METRICS_PORT"),
            "liveness": env.get("FT_LIVENESS"),
            "workers": env.get("FT_WORKERS"),
            "secret_backoff": env.get("FT_SECRET_BACKOFF"),
        }
        for var, field in _JSON_VARS.items():
            if text := env.get(var):
                optional[field] = _json(var, text)
        return cls(
            namespaces=() if names == ("*",) else names,
            clusterwide=names == ("*",),
            images=images,
            image_pull_secrets=pull_secrets,
            **{k: v for k, v in optional.items() if v not in (None, "")},
        )
