"""The chart speaks the controller's language: the environment it renders parses with
controller.settings.ControllerSettings into the settings the values asked for, and it sets
no FT_* variable that the controller does not read."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import pytest
from pydantic import TypeAdapter

from controller.settings import ControllerSettings
from jobs.common.spec import Resources, Toleration
from tests.chart.chartlib import NAMESPACE, VALUE_SETS, Render, controller_env

# Defaults for step pods that the chart carries but controller/settings.py does not read yet:
# FT_DEFAULT_RESOURCES (JSON, spec.resources form), FT_GPU_TOLERATIONS (JSON list of
# spec.scheduling.tolerations items), FT_GPU_NODE_SELECTOR (JSON map), FT_IMAGE_PULL_SECRETS
# (comma-separated Secret names).
STEP_DEFAULTS = {"FT_DEFAULT_RESOURCES", "FT_GPU_TOLERATIONS", "FT_GPU_NODE_SELECTOR", "FT_IMAGE_PULL_SECRETS"}


class RecordingEnv(Mapping[str, str]):
    """An environment that remembers which variables were looked up."""

    def __init__(self, env: dict[str, str]):
        self.env, self.read = env, set()

    def __getitem__(self, key: str) -> str:
        self.read.add(key)
        return self.env[key]

    def get(self, key, default=None):  # type: ignore[override]
        self.read.add(key)
        return self.env.get(key, default)

    def __iter__(self) -> Iterator[str]:
        return iter(self.env)

    def __len__(self) -> int:
        return len(self.env)


def _settings(render: Render, values: str) -> tuple[ControllerSettings, RecordingEnv]:
    env = RecordingEnv(controller_env(render(VALUE_SETS[values])))
    return ControllerSettings.from_env(env), env


@pytest.mark.parametrize("values", VALUE_SETS)
def test_rendered_env_parses_into_controller_settings(render: Render, values: str) -> None:
    settings, env = _settings(render, values)
    set_by_chart = {k for k in env.env if k.startswith("FT_")}
    unread = set_by_chart - env.read
    assert not unread, f"the chart sets {sorted(unread)}, which the controller never reads"
    assert settings.liveness == "http://0.0.0.0:8080/healthz"
    assert settings.run_as_user == 10001 or values == "all-on"


def test_controller_reads_the_step_defaults(render: Render) -> None:
    _, env = _settings(render, "all-on")
    assert STEP_DEFAULTS <= env.read


def test_per_team_settings(render: Render) -> None:
    settings, _ = _settings(render, "team")
    assert settings.namespaces == (NAMESPACE,) and not settings.clusterwide
    assert settings.default_store_uri == "s3://team-nlp-artifacts/finetune"
    assert settings.default_store_secret == "team-nlp-s3"
    assert settings.default_queue == "team-nlp-gpu"
    assert settings.images == {
        step: f"registry.example.com/ml/finetune-operator/{image}:0.1.0"
        for step, image in {"eval": "eval", "pack": "pack", "train": "train", "evaluate": "train", "gguf": "gguf"}.items()
    }
    assert settings.scratch_size == "100Gi"


def test_all_options_settings(render: Render) -> None:
    settings, _ = _settings(render, "all-on")
    assert settings.clusterwide and settings.namespaces == ()
    assert settings.image_pull_policy == "Always"
    assert settings.step_service_account == "finetune-steps"
    assert settings.run_as_user == 20001
    assert settings.progress_interval == 5
    assert settings.metrics_port == 9091
    assert settings.workers == 32
    assert settings.default_queue == "shared-gpu"
    assert settings.default_store_uri == "s3://platform-artifacts"


def test_e2e_settings_use_minio_and_cpu_images(render: Render) -> None:
    settings, _ = _settings(render, "e2e")
    assert settings.default_store_uri == "s3://ft-artifacts"
    assert settings.default_store_secret == "ft-finetune-operator-s3"
    assert settings.image_pull_policy == "Never"
    assert all(image.endswith(":0.1.0-cpu") for image in settings.images.values())


@pytest.mark.parametrize("values", VALUE_SETS)
def test_step_defaults_are_in_the_specs_own_form(render: Render, values: str) -> None:
    """Default resources and GPU tolerations validate with the spec's models, so that the
    controller can merge them with a run's spec.resources and spec.scheduling field by field."""
    env = controller_env(render(VALUE_SETS[values]))
    resources = Resources.model_validate_json(env["FT_DEFAULT_RESOURCES"])
    TypeAdapter(list[Toleration]).validate_json(env["FT_GPU_TOLERATIONS"])
    if values == "defaults":
        assert resources.train.gpu == 1 and resources.evaluate.gpu == 1 and not resources.pack.gpu
    if values == "e2e":
        assert not any(getattr(resources, s).gpu for s in ("eval", "pack", "train", "evaluate", "gguf"))
