"""Fixtures for the pack tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture
def step_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Set the environment a pod would get; returns a function that writes the spec file."""
    store = tmp_path / "store"
    store.mkdir()
    monkeypatch.setenv("FT_STORE_URI", store.as_uri())
    monkeypatch.setenv("FT_BASE_DIR", str(tmp_path))
    monkeypatch.setenv("FT_SCRATCH", str(tmp_path / "scratch"))
    monkeypatch.setenv("FT_FORCE", "1")
    monkeypatch.delenv("FT_SPEC", raising=False)

    def write(spec: dict[str, Any]) -> Path:
        path = tmp_path / "run.json"
        path.write_text(json.dumps(spec))
        monkeypatch.setenv("FT_SPEC_FILE", str(path))
        return store

    return write
