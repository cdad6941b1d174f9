"""A fine-tuning job's parameters -> the FineTuneRun it runs as, from a documented template."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from jobs.api.errors import bad_param
from jobs.api.schemas import JobCreate
from jobs.common.errors import InvalidInput
from jobs.common.spec import BaseModelSource, FineTuneRun

DEFAULT_TEMPLATE = Path(__file__).with_name("default_template.yaml")


class JobTemplate:
    def __init__(self, raw: dict[str, Any], origin: str):
        if not isinstance(raw, dict) or set(raw) != {"models", "spec"}:
            raise InvalidInput(f"{origin}: a job template has exactly the keys models and spec")
        try:
            self.models = {name: BaseModelSource.model_validate(src) for name, src in raw["models"].items()}
        except (AttributeError, ValidationError) as err:
            raise InvalidInput(f"{origin}: models: {err}") from None
        self.spec = raw["spec"]
        # A template that cannot make a valid run is an error now, not at the first job.
        first = next(iter(self.models), None)
        if first is None:
            raise InvalidInput(f"{origin}: models lists no model")
        try:
            self._assemble("template-check", "default", first, "file:///dev/null", None, "sft", {})
        except ValidationError as err:
            raise InvalidInput(f"{origin}: spec: {err}") from None

    @classmethod
    def from_file(cls, path: Path = DEFAULT_TEMPLATE) -> JobTemplate:
        try:
            return cls(yaml.safe_load(path.read_text()), str(path))
        except (OSError, yaml.YAMLError) as err:
            raise InvalidInput(f"{path}: cannot read the job template: {err}") from None

    def _assemble(self, name: str, namespace: str, model: str, training_uri: str, validation_uri: str | None,
                  method: str, train: dict[str, Any]) -> FineTuneRun:
        spec = copy.deepcopy(self.spec)
        spec["model"] = self.models[model].model_dump(mode="json", by_alias=True, exclude_none=True)
        steps = spec.setdefault("steps", {})
        fmt = "dpo" if method == "dpo" else steps.get("pack", {}).get("format", "openai_chat")
        spec["data"] = {"sources": [{"path": training_uri, "format": fmt}]}
        if validation_uri is not None:  # pack's fixed val split: validation rows are never trained on
            spec["data"]["sources"].append({"path": validation_uri, "format": fmt, "split": "val"})
        if method == "dpo":
            steps.setdefault("pack", {})["format"] = "dpo"
            steps.setdefault("train", {})["method"] = "dpo"
        steps.setdefault("train", {}).update(train)
        return FineTuneRun.model_validate(
            {"apiVersion": "finetune.dev/v1alpha1", "kind": "FineTuneRun",
             "metadata": {"name": name, "namespace": namespace, "labels": {"finetune.dev/api-job": name}},
             "spec": spec}
        )

    def build(self, job_id: str, namespace: str, training_uri: str, req: JobCreate,
              validation_uri: str | None = None) -> FineTuneRun:
        if req.model not in self.models:
            raise bad_param("model", f"The model '{req.model}' cannot be fine-tuned here; "
                            f"available: {', '.join(sorted(self.models))}.", code="model_not_available")
        method = req.method_type()
        hp = req.effective_hyperparameters()
        base_lr = self.spec.get("steps", {}).get("train", {}).get("learningRate", 2e-4)
        train: dict[str, Any] = {}
        if isinstance(hp.n_epochs, int):
            train["epochs"] = hp.n_epochs
        if isinstance(hp.batch_size, int):
            train["batchSize"] = hp.batch_size
        if isinstance(hp.learning_rate_multiplier, float):
            train["learningRate"] = base_lr * hp.learning_rate_multiplier
        if isinstance(getattr(hp, "beta", None), float):
            train["beta"] = hp.beta
        if req.seed is not None:
            train["seed"] = req.seed
        try:
            return self._assemble(job_id, namespace, req.model, training_uri, validation_uri, method, train)
        except ValidationError as err:
            first = err.errors()[0]
            field = ".".join(str(p) for p in first["loc"])
            raise bad_param("hyperparameters", f"The run cannot be built: {field}: {first['msg']}") from None
