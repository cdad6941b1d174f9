"""/v1/models and the models /v1/chat/completions answers with.

A tenant sees the template's base models and the fine-tuned model of each of its succeeded jobs;
another tenant's model is not found, exactly as an unknown name is. A fine-tuned model answers from
the first GGUF its run's gguf step wrote, fetched from the store (sha256 verified) and loaded into
llama.cpp once; a base model answers when the template names it by a GGUF file.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from jobs.api.errors import ApiError
from jobs.api.records import Records
from jobs.api.template import JobTemplate
from jobs.common import artifacts
from jobs.common.errors import MissingInput
from jobs.common.resolve import materialize

LOADED_MODELS = 2  # llama.cpp contexts kept in memory; the least recently used is closed


def model_not_found(model: str) -> ApiError:
    return ApiError(404, f"The model `{model}` does not exist or you do not have access to it.",
                    param="model", code="model_not_found")


class ServedModels:
    def __init__(self, records: Records, template: JobTemplate, work_root: Path, created: int):
        self.records = records
        self.template = template
        self.work_root = work_root
        self.created = created
        self._loaded: OrderedDict[Path, Any] = OrderedDict()
        self._lock = threading.Lock()

    def _tuned_jobs(self, ns: str) -> dict[str, dict[str, Any]]:
        return {j["fine_tuned_model"]: j for j in self.records.jobs(ns)
                if j["status"] == "succeeded" and j.get("fine_tuned_model")}

    def list(self, ns: str) -> list[dict[str, Any]]:
        base = [{"id": name, "object": "model", "created": self.created, "owned_by": "system"}
                for name in self.template.models]
        tuned = [{"id": model, "object": "model", "created": job["finished_at"], "owned_by": ns}
                 for model, job in self._tuned_jobs(ns).items()]
        return base + tuned

    def get(self, ns: str, model: str) -> dict[str, Any]:
        found = next((m for m in self.list(ns) if m["id"] == model), None)
        if found is None:
            raise model_not_found(model)
        return found

    def gguf_path(self, ns: str, model: str) -> Path:
        """The local GGUF file `model` answers from; 404 for a model this tenant does not have."""
        if model in self.template.models:
            source = self.template.models[model]
            if source.kind != "gguf":
                raise ApiError(400, f"The base model `{model}` is not a GGUF file; chat is served for its "
                               "fine-tuned models, whose runs write one.", param="model", code="model_not_servable")
            return materialize(source.location, Path.cwd(), self.work_root / "base-models")
        job = self._tuned_jobs(ns).get(model)
        if job is None:
            raise model_not_found(model)
        manifest = artifacts.read_manifest(self.records.store, ns, job["id"], "gguf")
        files = [p for key, p in (manifest or {}).get("outputs", {}).items() if key.startswith("gguf:")]
        if not files:
            raise ApiError(400, f"The model `{model}` has no GGUF file: its run has no gguf step. Add "
                           "steps.gguf to the job template to chat with fine-tuned models.",
                           param="model", code="model_not_servable")
        dest = self.work_root / ns / job["id"] / "serve"
        return artifacts.fetch(self.records.store, manifest, dest, only=files[0]) / files[0]

    def backend(self, ns: str, model: str):
        """A loaded llama.cpp model for `model`, kept for the next request."""
        from jobs.common.backends.llamacpp import LlamaCppBackend

        try:
            path = self.gguf_path(ns, model)
            with self._lock:
                if path in self._loaded:
                    self._loaded.move_to_end(path)
                    return self._loaded[path]
                backend = self._loaded[path] = LlamaCppBackend(path)
                while len(self._loaded) > LOADED_MODELS:
                    _, old = self._loaded.popitem(last=False)
                    with old.lock:  # after the request it is answering
                        old.close()
                return backend
        except MissingInput as err:  # no llama-cpp-python, or a base model file that is not there
            raise ApiError(503, f"The model `{model}` cannot be served here: {err}", code="model_unavailable",
                           type="server_error") from None
