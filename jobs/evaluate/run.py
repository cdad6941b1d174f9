"""The evaluate step: the base model against the tuned model on the held-out test split.

    FT_SPEC_FILE=run.json FT_STORE_URI=file:///tmp/store python -m jobs.evaluate

Both models answer every test example with the same decoding settings (one
loaded model: the adapter is switched off for the base answers) and score the
reference answers for loss and perplexity. Outputs: predictions.csv,
predictions.jsonl, metrics.json, report.html and metrics.png.

Promotion gate: when steps.evaluate.gate is not met, the report files are still
uploaded, so people can read why, but no manifest is committed: the step fails
with GateNotMet, its output does not exist for later steps, and gguf does not run.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Callable

from jobs.common.backends.hf import HFBackend
from jobs.common.checks import DEFAULT_CHECKS, run_checks
from jobs.common.errors import GateNotMet, InvalidSpec
from jobs.common.gate import evaluate_gate, parse_gate
from jobs.common.handoff import train_output
from jobs.common.spec import Check, Decoding
from jobs.common.stepctx import StepContext, StepResult
from jobs.evaluate import report
from jobs.evaluate.bootstrap import clause_bounds, delta_intervals, resampled_gate_metrics
from jobs.evaluate.metrics import GATE_NAMES, exact_match, gate_metrics, generation_metrics, token_f1
from jobs.evaluate.testset import Example, read_test_split

# What each kind of run measures (keys of metrics.json's base/tuned), by "is classification".
MEASURED = {
    False: ("passRate", "exactMatch", "tokenF1", "loss", "perplexity"),
    True: ("passRate", "accuracy", "f1Macro", "loss"),
}
OUTPUTS = {
    "report": "report.html",
    "metrics": "metrics.json",
    "predictions": "predictions.csv",
    "predictionsJsonl": "predictions.jsonl",
    "chart": "metrics.png",
}


def answer(
    backend: HFBackend,
    examples: list[Example],
    decoding: Decoding,
    checks: list[Check],
    tick: Callable[[], None],
) -> list[dict[str, Any]]:
    """One model's answers, check outcomes, text metrics and reference-answer NLL per example."""
    replies = backend.generate([e.messages for e in examples], decoding, lambda i, r: tick())
    scores = backend.score([(e.messages, e.expected) for e in examples])
    rows = []
    for example, reply, (nll, tokens) in zip(examples, replies, scores):
        outcomes = run_checks(checks, reply.text, example.expected, {})
        rows.append(
            {
                "answer": reply.text,
                "checks": [o.to_json() for o in outcomes],
                "passed": all(o.passed for o in outcomes),
                "exactMatch": exact_match(reply.text, example.expected),
                "tokenF1": round(token_f1(reply.text, example.expected), 4),
                "nll": round(nll, 4),
                "tokens": tokens,
                "latency": round(reply.latency, 4),
            }
        )
    return rows


def per_check(rows: list[dict[str, Any]]) -> dict[str, float]:
    totals: dict[str, list[int]] = {}
    for row in rows:
        for o in row["checks"]:
            totals.setdefault(o["check"], []).append(int(o["passed"]))
    return {name: round(sum(v) / len(v), 4) for name, v in totals.items()}


def generative(ctx: StepContext, examples: list[Example]) -> dict[str, Any]:
    from jobs.common.backends.hf import load_hf_backend
    from jobs.common.modelload import base_model_dir, load_causal_lm

    cfg = ctx.config
    kind, tuned_dir = train_output(ctx)
    model_dir = base_model_dir(ctx)
    if kind == "adapter":
        model, tokenizer = load_causal_lm(model_dir, tuned_dir)
        base = HFBackend(model, tokenizer, use_adapter=False)
        tuned = HFBackend(model, tokenizer, use_adapter=True)
    else:
        base, tuned = load_hf_backend(model_dir), load_hf_backend(tuned_dir)
    checks = list(cfg.checks or DEFAULT_CHECKS)
    done, total = [0], 2 * len(examples)

    def tick() -> None:
        done[0] += 1
        ctx.progress.update(done[0], total)

    base_rows = answer(base, examples, cfg.decoding, checks, tick)
    tuned_rows = answer(tuned, examples, cfg.decoding, checks, tick)
    return {
        "kind": kind,
        "checks": [c.model_dump(mode="json", by_alias=True) for c in checks],
        "base": generation_metrics(base_rows),
        "tuned": generation_metrics(tuned_rows),
        "perCheck": {"base": per_check(base_rows), "tuned": per_check(tuned_rows)},
        "rows": [{"base": b, "tuned": t} for b, t in zip(base_rows, tuned_rows)],
    }


def require_measurable(gate: str | None, fmt: str, confidence: float | None = None) -> None:
    """Fail before any model runs when the gate names a metric this kind of run does not measure,
    or, with gateConfidence, one that has no bootstrap interval (F1 macro)."""
    if not gate:
        return
    measured = {f"{who}{GATE_NAMES[k]}" for who in ("base", "tuned") for k in MEASURED[fmt == "classification"]}
    used = {t for c in parse_gate(gate) for _, t in (*c.left, *c.right) if isinstance(t, str)}
    if used - measured:
        raise InvalidSpec(
            f"steps.evaluate.gate uses {', '.join(sorted(used - measured))}, which this run does not measure; "
            f"measured: {', '.join(sorted(measured))}"
        )
    no_interval = sorted(t for t in used if t.endswith(GATE_NAMES["f1Macro"]))
    if confidence is not None and no_interval:
        raise InvalidSpec(
            f"steps.evaluate.gateConfidence: {', '.join(no_interval)} has no bootstrap interval "
            "(F1 macro is not a per-example statistic); gate on accuracy, or drop gateConfidence"
        )


def check_gate(
    gate: str | None, flat: dict[str, float], resampled: dict[str, Any], confidence: float | None
) -> dict[str, Any] | None:
    """The gate's verdict; with a confidence level, each clause must hold over its bootstrap interval."""
    if not gate:
        return None
    bounds = (lambda clause: clause_bounds(clause, resampled, confidence)) if confidence else None
    try:
        passed, explanation = evaluate_gate(gate, flat, bounds)
    except KeyError as missing:
        raise InvalidSpec(
            f"steps.evaluate.gate uses {missing.args[0]}, which could not be computed on this test split "
            f"(no reference tokens); computed: {', '.join(sorted(flat))}"
        ) from None
    return {"expression": gate, "passed": passed, "explanation": explanation, "confidence": confidence}


def write_predictions(out: Path, examples: list[Example], rows: list[dict[str, Any]]) -> None:
    with open(out / "predictions.jsonl", "w", encoding="utf-8") as f:
        for example, row in zip(examples, rows):
            line = {"id": example.id, "input": example.input, "messages": example.messages, "expected": example.expected, **row}
            f.write(json.dumps(line, ensure_ascii=False) + "\n")
    with open(out / "predictions.csv", "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "input", "expected", "base_answer", "tuned_answer", "base_passed", "tuned_passed", "base_token_f1", "tuned_token_f1"])
        for example, row in zip(examples, rows):
            b, t = row["base"], row["tuned"]
            writer.writerow([example.id, example.input, example.expected, b["answer"], t["answer"], b["passed"], t["passed"], b.get("tokenF1", ""), t.get("tokenF1", "")])


def run_step(ctx: StepContext) -> StepResult:
    cfg = ctx.config
    fmt = ctx.spec.steps.pack.format
    require_measurable(cfg.gate, fmt, cfg.gate_confidence)
    examples = read_test_split(ctx.input_dir("pack", only="test.jsonl") / "test.jsonl", fmt, cfg.max_items)
    if fmt == "classification":
        from jobs.evaluate.classify import classification

        result = classification(ctx, examples)
    else:
        result = generative(ctx, examples)
    flat = gate_metrics(result["base"], result["tuned"])
    sides = [r["base"] for r in result["rows"]], [r["tuned"] for r in result["rows"]]
    resampled = resampled_gate_metrics(*sides, MEASURED[fmt == "classification"], cfg.bootstrap_samples)
    level = cfg.gate_confidence or 0.95
    gate = check_gate(cfg.gate, flat, resampled, cfg.gate_confidence)
    metrics = {
        "examples": len(examples),
        "format": fmt,
        "trained": result["kind"],
        "decoding": cfg.decoding.model_dump(mode="json", by_alias=True),
        "base": result["base"],
        "tuned": result["tuned"],
        "checks": result.get("checks"),
        "perCheck": result.get("perCheck"),
        "gateMetrics": flat,
        "intervals": {"level": level, "samples": cfg.bootstrap_samples, "deltas": delta_intervals(flat, resampled, level)},
        "gate": gate,
    }
    out = ctx.out
    write_predictions(out, examples, result["rows"])
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, ensure_ascii=False))
    train_metrics = ctx.input_dir("train", only="metrics.jsonl") / "metrics.jsonl"
    report.write(out, metrics, examples, result["rows"], train_metrics, model_name=ctx.spec.model.name or ctx.spec.model.location)
    ctx.upload_outputs()
    if gate and not gate["passed"]:
        raise GateNotMet(
            f"steps.evaluate.gate {gate['expression']!r} not met: {gate['explanation']} "
            f"(report uploaded to {ctx.writer.prefix}/report.html; nothing committed)"
        )
    return StepResult(metrics={**flat, "examples": len(examples), "gatePassed": gate["passed"] if gate else None}, outputs=OUTPUTS)
