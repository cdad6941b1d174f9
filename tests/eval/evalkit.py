"""The eval tests' data and helpers: an eval set, the fake server's answers, spec builders."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ANSWERS = {
    "What is the capital of Germany?": "The capital of Germany is Berlin.",
    "What is 2+2?": "4",
    "What is the capital of France?": "People call it the City of Light.",
    "Give me a JSON object.": '```json\n{"a": 1}\n```',
    "Greet me.": "Hello there!",
    "Which planet is the largest?": "Saturn is the largest.",
}

ITEMS = [
    {"id": "de", "messages": [{"role": "user", "content": "What is the capital of Germany?"}], "expected": "Berlin"},
    {
        "id": "sum",
        "messages": [{"role": "user", "content": "What is 2+2?"}],
        "expected": "4",
        "checks": [{"type": "exact"}],
    },
    {"id": "fr", "messages": [{"role": "user", "content": "What is the capital of France?"}], "expected": "Paris"},
    {"id": "json", "messages": [{"role": "user", "content": "Give me a JSON object."}], "checks": [{"type": "json_valid"}]},
    {"id": "greet", "messages": [{"role": "user", "content": "Greet me."}], "checks": [{"type": "regex", "value": "^hello\\b"}]},
    {"id": "planet", "messages": [{"role": "user", "content": "Which planet is the largest?"}], "expected": "Jupiter"},
]
SYNONYMS = {"Paris": ["City of Light"]}


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def eval_spec(eval_cfg: dict[str, Any], name: str = "qa") -> dict[str, Any]:
    return {
        "apiVersion": "finetune.dev/v1alpha1",
        "kind": "FineTuneRun",
        "metadata": {"name": name},
        "spec": {"model": {"hf": "model"}, "steps": {"eval": eval_cfg}},
    }


def endpoint_cfg(url: str, **extra: Any) -> dict[str, Any]:
    return {
        "items": "items.jsonl",
        "backend": {"endpoint": {"baseUrl": url, "model": "fake-1"}},
        "synonyms": "synonyms.json",
        **extra,
    }


def read_output(project: Path, name: str, run: str = "qa") -> Path:
    return project / "store" / "runs" / "default" / run / "eval" / name
