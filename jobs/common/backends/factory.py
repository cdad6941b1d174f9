"""Open the backend a spec's `backend:` block names."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from jobs.common.backends.base import ChatBackend
from jobs.common.cachekey import fingerprint
from jobs.common.spec import Backend, BaseModelSource


def display_name(cfg: Backend, model: BaseModelSource) -> str:
    if cfg.endpoint:
        return cfg.endpoint.model
    if cfg.asgi:
        return cfg.asgi
    if cfg.gguf:
        return Path(cfg.gguf).name
    return model.name or model.location


def open_backend(
    cfg: Backend,
    *,
    model: BaseModelSource,
    base_dir: Path,
    resolve: Callable[[str], Path],
    hf_model_dir: Callable[[], Path],
    concurrency: int = 4,
    timeout: float = 60.0,
    retries: int = 3,
) -> ChatBackend:
    """`resolve` makes a spec location local; `hf_model_dir` gives the base model's HF folder."""
    if cfg.endpoint:
        from jobs.common.backends.http import OpenAIChatBackend, api_key_from_env

        key, source = api_key_from_env(cfg.endpoint.api_key_secret)
        return OpenAIChatBackend(
            cfg.endpoint.base_url,
            cfg.endpoint.model,
            api_key=key,
            key_source=source,
            concurrency=concurrency,
            timeout=timeout,
            retries=retries,
        )
    if cfg.asgi:
        from jobs.common.backends.asgi import asgi_backend

        return asgi_backend(cfg.asgi, search_dir=base_dir, concurrency=concurrency, timeout=timeout, retries=retries)
    if cfg.gguf:
        from jobs.common.backends.llamacpp import LlamaCppBackend

        identity: dict[str, Any] = {"kind": "gguf", "file": cfg.gguf, "fingerprint": fingerprint(cfg.gguf, base_dir)}
        return LlamaCppBackend(resolve(cfg.gguf), identity=identity)
    from jobs.common.backends.hf import load_hf_backend

    identity = {
        "kind": "hf",
        "model": model.model_dump(mode="json", exclude={"name"}),
        "fingerprint": fingerprint(model.location, base_dir) if model.kind != "hub" else model.revision,
    }
    return load_hf_backend(hf_model_dir(), identity=identity)
