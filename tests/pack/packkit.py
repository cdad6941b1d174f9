"""Builders shared by the pack tests: sample rows, CSVs, configs and specs."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from jobs.common.spec import PackStep

QA = [
    ("What is the capital of Germany?", "The capital of Germany is Berlin, on the Spree."),
    ("How many legs does a spider have?", "A spider has eight legs, attached to its cephalothorax."),
    ("Which planet is the largest in the solar system?", "Jupiter is the largest planet of the solar system."),
    ("Who wrote the play Hamlet?", "William Shakespeare wrote Hamlet around the year 1600."),
    ("What is the boiling point of water at sea level?", "Water boils at 100 degrees Celsius at sea level."),
    ("Translate 'good morning' into German.", "In German, 'good morning' is 'Guten Morgen'."),
    ("What gas do plants take in for photosynthesis?", "Plants take in carbon dioxide and release oxygen."),
    ("Name the longest river in Africa.", "The Nile is usually named the longest river in Africa."),
    ("What is the chemical symbol for gold?", "The chemical symbol for gold is Au, from aurum."),
    ("How many continents are there?", "By the usual count there are seven continents on Earth."),
    ("Which language has the most native speakers?", "Mandarin Chinese has the most native speakers worldwide."),
    ("What is the freezing point of water in Fahrenheit?", "Water freezes at 32 degrees Fahrenheit at sea level."),
]

FRAMES = ["Conflict", "Moral Value", "Economic", "Powerlessness", "Human Impact"]


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in rows]
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def chat_rows(pairs=QA) -> list[dict[str, Any]]:
    return [
        {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]} for q, a in pairs
    ]


def frames_csv(path: Path, per_class: int = 12, delimiter: str = ",") -> Path:
    """The users' export: chunk_text,frame_name, several classes; texts far from each other."""
    rng = random.Random(len(FRAMES) * per_class)
    words = [f"{stem}{i}" for stem in ("debate", "vote", "brexit", "trade", "law", "member") for i in range(60)]
    lines = [f"chunk_text{delimiter}frame_name"]
    for frame in FRAMES:
        for _ in range(per_class):
            lines.append(f'"{" ".join(rng.sample(words, 12))}"{delimiter}"{frame}"')
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def cfg(**fields: Any) -> PackStep:
    return PackStep.model_validate(fields)


def run_spec(sources: list[dict[str, Any]], pack: dict[str, Any] | None = None, steps: dict | None = None) -> dict:
    return {
        "apiVersion": "finetune.dev/v1alpha1",
        "kind": "FineTuneRun",
        "metadata": {"name": "packtest"},
        "spec": {
            "model": {"hub": "HuggingFaceTB/SmolLM2-135M-Instruct"},
            "data": {"sources": sources},
            "steps": {"pack": pack or {}, **(steps or {})},
        },
    }
