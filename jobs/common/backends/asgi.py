"""An ASGI app that speaks the OpenAI chat API, called in-process: no server, no port.

`asgi: myservice.main:app` imports `myservice.main` (from the project folder
first) and sends each request through httpx's ASGITransport.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

from jobs.common.backends.http import OpenAIChatBackend
from jobs.common.errors import InvalidInput

BASE_URL = "http://asgi.local/v1"


def load_app(target: str, search_dir: Path | None = None) -> Any:
    module_name, _, attr = target.partition(":")
    if search_dir is not None and str(search_dir) not in sys.path:
        sys.path.insert(0, str(search_dir))
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise InvalidInput(f"asgi: cannot import {module_name!r}: {err}") from None
    app = getattr(module, attr, None)
    if not callable(app):
        raise InvalidInput(f"asgi: {module_name!r} has no ASGI app named {attr!r}")
    return app


def asgi_backend(target: str, *, search_dir: Path | None = None, model: str = "asgi", **options: Any) -> OpenAIChatBackend:
    import httpx

    transport = httpx.ASGITransport(app=load_app(target, search_dir))
    return OpenAIChatBackend(
        BASE_URL, model, transport=transport, identity={"kind": "asgi", "app": target, "model": model}, **options
    )
