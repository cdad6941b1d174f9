"""The evaluate step: the base model against the tuned model on the held-out test split.

    FT_SPEC_FILE=run.json FT_STORE_URI=file:///tmp/store python -m jobs.evaluate

Both models answer every test example with the same decoding settings (one
loaded model: the adapter is switched off for the base answers) and score the
reference answers for loss and perplexity. When every answer is a label (pack reported a label
set: a classifier, or SFT on a label column), the labels are scored as well: accuracy, the
precision/recall/F1 family, per label, and confusion.png. Outputs: predictions.csv,
predictions.jsonl, metrics.json, report.html, metrics.png (and confusion.png).

Promotion gate: when steps.evaluate.gate is not met, the report files are still
uploaded, so people can read why, but no manifest is committed: the step fails
with GateNotMet, its output does not exist for later steps, and gguf does not run.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from jobs.common import training_report
from jobs.common.backends.hf import HFBackend
from jobs.common.checks import DEFAULT_CHECKS
from jobs.common.errors import GateNotMet, InvalidSpec
from jobs.common.gate import check_confidence, check_measured, evaluate_gate, measured_keys, parse_gate, quantized
from jobs.common.handoff import pack_labels, pack_report, train_output
from jobs.common.stepctx import StepContext, StepResult
from jobs.common.tracking import MetricsLog, NullTracker, plot_loss
from jobs.evaluate import report
from jobs.evaluate.bootstrap import clause_bounds, delta_intervals, resampled_gate_metrics
from jobs.evaluate.generated_labels import score_labels
from jobs.common.answermetrics import generation_metrics
from jobs.common.judge import agreement, needs_judge, open_judge
from jobs.common.scoring import per_check, score_answers
from jobs.evaluate.metrics import gate_metrics
from jobs.common.testset import Example, read_test_split

OUTPUTS = {
    "metrics": "metrics.json",
    "predictions": "predictions.csv",
    "predictionsJsonl": "predictions.jsonl",
}


def generative(ctx: StepContext, examples: list[Example], labels: list[str] | None) -> dict[str, Any]:
    """Base and tuned answers; when every answer is a label, the labels they generate are scored too."""
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

    judge = open_judge(cfg.judge, ctx) if cfg.judge and needs_judge(checks) else None
    try:
        base_rows = score_answers(base, examples, cfg.decoding, checks, tick, judge)
        tuned_rows = score_answers(tuned, examples, cfg.decoding, checks, tick, judge)
    finally:
        if judge:
            judge.close()
    result = {
        "kind": kind,
        "checks": [c.model_dump(mode="json", by_alias=True) for c in checks],
        "base": generation_metrics(base_rows),
        "tuned": generation_metrics(tuned_rows),
        "perCheck": {"base": per_check(base_rows), "tuned": per_check(tuned_rows)},
        "rows": [{"base": b, "tuned": t} for b, t in zip(base_rows, tuned_rows)],
    }
    if judge:
        result["judge"] = judge.stats() | {
            "agreement": {who: agreement([r["checks"] for r in rows]) for who, rows in (("base", base_rows), ("tuned", tuned_rows))}
        }
    if labels is not None:
        ids, expected = [e.id for e in examples], [e.expected for e in examples]
        result["labels"], result["outsideLabelSet"] = labels, {}
        for who, rows in (("base", base_rows), ("tuned", tuned_rows)):
            scored, outside = score_labels(ids, expected, rows, labels)
            result[who].update(scored)
            result["outsideLabelSet"][who] = outside
    return result


def require_measurable(gate: str | None, method: str, labelled: bool, confidence: float | None = None) -> None:
    """Fail before any model runs when the gate names a metric this run does not measure (the spec
    checks this from what it says of the data; pack's labels are what evaluate has), or, with
    gateConfidence, one that has no bootstrap interval."""
    if not gate:
        return
    try:
        check_measured(gate, method, labelled)
    except ValueError as err:
        raise InvalidSpec(f"steps.evaluate.gate: {err}") from None
    if confidence is not None:
        try:
            check_confidence(gate)
        except ValueError as err:
            raise InvalidSpec(f"steps.evaluate.gateConfidence: {err}") from None


def check_gate(
    gate: str | None, flat: dict[str, float], resampled: dict[str, Any], confidence: float | None
) -> dict[str, Any] | None:
    """The gate's verdict; with a confidence level, each clause must hold over its bootstrap interval."""
    if not gate:
        return None
    bounds = (lambda clause: clause_bounds(clause, resampled, confidence)) if confidence else None
    try:
        passed, explanation = evaluate_gate(gate, flat, bounds, only=lambda c: not quantized(c))
    except KeyError as missing:
        raise InvalidSpec(
            f"steps.evaluate.gate uses {missing.args[0]}, which could not be computed on this test split "
            f"(no reference tokens); computed: {', '.join(sorted(flat))}"
        ) from None
    if any(quantized(c) for c in parse_gate(gate)):
        explanation = "; ".join(filter(None, [explanation, "clauses naming a quantization: judged by the gguf step"]))
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


def write_training_report(
    ctx: StepContext, metrics: dict[str, Any], examples: list[Example], rows: list[dict[str, Any]], train_metrics: Path
) -> dict[str, str]:
    """training_report.md beside report.html: the train step's page completed with the before/after
    figures and sample generations; the loss curves are drawn again from train's metrics.jsonl."""
    config_path = ctx.input_dir("train", only="train_config.json") / "train_config.json"
    written = {"trainingReport": training_report.FILE}
    log = MetricsLog(train_metrics, NullTracker()) if train_metrics.is_file() else None
    if log is not None and log.series("loss"):
        plot_loss(log, ctx.out / training_report.LOSS_PLOT, f"{ctx.name}: training loss")
        written["lossPlot"] = training_report.LOSS_PLOT
    parts = training_report.ReportParts(
        run=f"{ctx.namespace}/{ctx.name}",
        model=ctx.spec.model.name or ctx.spec.model.location,
        train_config=json.loads(config_path.read_text()) if config_path.is_file() else {"method": ctx.spec.steps.train.method},
        train_metrics=ctx.input_manifest("train").get("metrics", {}),
        pack_report=pack_report(ctx),
        loss_plot=written.get("lossPlot"),
        has_val_loss=bool(log and log.series("eval_loss")),
        before_after=report.comparison_table(metrics["base"], metrics["tuned"]),
        samples=[
            {"id": e.id, "input": e.input, "expected": e.expected, "base": r["base"]["answer"], "tuned": r["tuned"]["answer"]}
            for e, r in list(zip(examples, rows))[: training_report.SAMPLES]
        ],
        gate=metrics.get("gate"),
    )
    (ctx.out / training_report.FILE).write_text(training_report.render(parts), encoding="utf-8")
    return written


def run_step(ctx: StepContext) -> StepResult:
    cfg = ctx.config
    fmt, method = ctx.spec.steps.pack.format, ctx.spec.steps.train.method
    labels = pack_labels(ctx) if fmt in ("openai_chat", "alpaca") else None
    require_measurable(cfg.gate, method, labels is not None, cfg.gate_confidence)
    examples = read_test_split(ctx.input_dir("pack", only="test.jsonl") / "test.jsonl", fmt, cfg.max_items)
    if fmt == "classification":
        from jobs.evaluate.classify import classification

        result = classification(ctx, examples)
    else:
        result = generative(ctx, examples, labels)
    flat = gate_metrics(result["base"], result["tuned"])
    sides = [r["base"] for r in result["rows"]], [r["tuned"] for r in result["rows"]]
    measured = measured_keys(method, "labels" in result)
    resampled = resampled_gate_metrics(*sides, measured, cfg.bootstrap_samples)
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
        "judge": result.get("judge"),
        "labels": result.get("labels"),
        "outsideLabelSet": result.get("outsideLabelSet"),
        "gateMetrics": flat,
        "intervals": {"level": level, "samples": cfg.bootstrap_samples, "deltas": delta_intervals(flat, resampled, level)},
        "gate": gate,
    }
    out = ctx.out
    write_predictions(out, examples, result["rows"])
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, ensure_ascii=False))
    train_metrics = ctx.input_dir("train", only="metrics.jsonl") / "metrics.jsonl"
    written = report.write(out, metrics, examples, result["rows"], train_metrics, model_name=ctx.spec.model.name or ctx.spec.model.location)
    written.update(write_training_report(ctx, metrics, examples, result["rows"], train_metrics))
    ctx.upload_outputs()
    if gate and not gate["passed"]:
        raise GateNotMet(
            f"steps.evaluate.gate {gate['expression']!r} not met: {gate['explanation']} "
            f"(report uploaded to {ctx.writer.prefix}/report.html; nothing committed)"
        )
    return StepResult(metrics={**flat, "examples": len(examples), "gatePassed": gate["passed"] if gate else None}, outputs={**OUTPUTS, **written})
