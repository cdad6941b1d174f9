"""Evaluate what we ship: every quantization scored on the test split with llama.cpp.

The gguf step runs this after quantizing, with the evaluate step's checks, judge and decoding
on the same test examples, and sets the results beside evaluate's base and tuned scores
(its metrics.json). The gate's clauses that name a quantization (`q4_k_mPassRate >=
tunedPassRate - 0.02`) are judged here; evaluate judged the others before any file was made.
llama.cpp scores no reference answers, so a quantization has no loss or perplexity.
"""

from __future__ import annotations

import html
import json
import time
from pathlib import Path
from typing import Any, Callable

from jobs.common.answermetrics import generation_metrics
from jobs.common.checks import DEFAULT_CHECKS
from jobs.common.gate import QUANT_KEYS, evaluate_gate, gate_name, parse_gate, quant_term, quantized
from jobs.common.judge import Judge, agreement, needs_judge, open_judge
from jobs.common.scoring import per_check, score_answers
from jobs.common.spec import EvaluateStep
from jobs.common.testset import Example, read_test_split

ROWS = {"passRate": "pass rate", "exactMatch": "exact match", "tokenF1": "token F1",
        "judgePassRate": "judge pass rate", "loss": "loss", "perplexity": "perplexity"}


def quant_gate_metrics(quants: dict[str, dict[str, Any]]) -> dict[str, float]:
    """The gate's names of the quantizations' metrics: q4_k_mPassRate, ..."""
    return {f"{q.lower()}{gate_name('', k)}": m[k] for q, m in quants.items() for k in QUANT_KEYS if m.get(k) is not None}


def judge_quantized_clauses(gate: str | None, flat: dict[str, float]) -> dict[str, Any] | None:
    """The verdict of the gate's clauses that name a quantization, None when there are none."""
    if not gate or not any(quantized(c) for c in parse_gate(gate)):
        return None
    passed, explanation = evaluate_gate(gate, flat, only=quantized)
    terms = [t for c in parse_gate(gate) if quantized(c) for _, t in (*c.left, *c.right) if isinstance(t, str)]
    named = sorted({found[0] for t in terms if (found := quant_term(t))})
    return {"expression": gate, "passed": passed, "explanation": explanation, "quantizations": named}


def score_files(
    files: dict[str, Path],
    examples: list[Example],
    cfg: EvaluateStep,
    open_model: Callable[[str, Path], Any],
    judge: Judge | None,
    tick: Callable[[], None] = lambda: None,
) -> dict[str, dict[str, Any]]:
    """Per quantization: its metrics, per-check pass rates, judge agreement, seconds and rows."""
    checks = list(cfg.checks or DEFAULT_CHECKS)
    out = {}
    for quant, path in files.items():
        backend = open_model(quant, path)
        started = time.perf_counter()
        try:
            rows = score_answers(backend, examples, cfg.decoding, checks, tick, judge)
        finally:
            backend.close()
        seconds = time.perf_counter() - started
        metrics = {k: v for k, v in generation_metrics(rows).items() if v is not None}
        out[quant] = {
            "metrics": metrics,
            "perCheck": per_check(rows),
            "judgeAgreement": agreement([r["checks"] for r in rows]) if judge else None,
            "seconds": round(seconds, 3),
            "secondsPerExample": round(seconds / len(examples), 4),
            "rows": rows,
        }
    return out


def score_quantizations(ctx: Any, files: dict[str, Path], tick: Callable[[], None]) -> dict[str, Any]:
    """Score `files` (quantization -> GGUF) on pack's test split as evaluate scored base and tuned."""
    from jobs.common.backends.llamacpp import LlamaCppBackend

    cfg: EvaluateStep = ctx.spec.steps.evaluate
    examples = read_test_split(ctx.input_dir("pack", only="test.jsonl") / "test.jsonl", ctx.spec.steps.pack.format, cfg.max_items)
    evaluated = json.loads((ctx.input_dir("evaluate", only="metrics.json") / "metrics.json").read_text(encoding="utf-8"))
    checks = list(cfg.checks or DEFAULT_CHECKS)
    judge = open_judge(cfg.judge, ctx) if cfg.judge and needs_judge(checks) else None

    def open_model(quant: str, path: Path) -> Any:
        return LlamaCppBackend(path, n_ctx=ctx.config.num_ctx, identity={"kind": "gguf", "quantization": quant})

    try:
        scored = score_files(files, examples, cfg, open_model, judge, tick)
    finally:
        if judge:
            judge.close()
    quants = {q: s["metrics"] for q, s in scored.items()}
    flat = {**evaluated.get("gateMetrics", {}), **quant_gate_metrics(quants)}
    return {
        "examples": len(examples),
        "decoding": cfg.decoding.model_dump(mode="json", by_alias=True),
        "checks": [c.model_dump(mode="json", by_alias=True) for c in checks],
        "base": evaluated.get("base", {}),
        "tuned": evaluated.get("tuned", {}),
        "quantizations": {q: {k: v for k, v in s.items() if k != "rows"} for q, s in scored.items()},
        "gateMetrics": quant_gate_metrics(quants),
        "gate": judge_quantized_clauses(cfg.gate, flat),
        "rows": [{"id": e.id, "expected": e.expected, **{q: s["rows"][i] for q, s in scored.items()}}
                 for i, e in enumerate(examples)],
    }


def _cell(value: Any) -> str:
    return "" if value is None else (f"{value:.4f}".rstrip("0").rstrip(".") if isinstance(value, float) else str(value))


def report_html(result: dict[str, Any], title: str) -> str:
    """Base, tuned and every quantization side by side: metrics, per check, the gate, the cost."""
    quants = list(result["quantizations"])
    models = {"base": result["base"], "tuned": result["tuned"], **{q: result["quantizations"][q]["metrics"] for q in quants}}
    head = "".join(f"<th>{html.escape(m)}</th>" for m in models)
    rows = [
        f"<tr><td>{label}</td>" + "".join(f'<td class="num">{_cell(v.get(key))}</td>' for v in models.values()) + "</tr>"
        for key, label in ROWS.items()
        if any(v.get(key) is not None for v in models.values())
    ]
    checks = sorted({name for q in quants for name in result["quantizations"][q]["perCheck"]})
    check_rows = [
        f"<tr><td><code>{html.escape(name)}</code></td>"
        + "".join(f'<td class="num">{_cell(result["quantizations"][q]["perCheck"].get(name))}</td>' for q in quants) + "</tr>"
        for name in checks
    ]
    cost = "".join(
        f'<tr><td>{html.escape(q)}</td><td class="num">{_cell(s["seconds"])}</td><td class="num">{_cell(s["secondsPerExample"])}</td></tr>'
        for q, s in result["quantizations"].items()
    )
    gate = result["gate"]
    verdict = (
        f"<p><b>Gate {'met' if gate['passed'] else 'NOT MET'}</b>: <code>{html.escape(gate['expression'])}</code>: "
        f"{html.escape(gate['explanation'])}</p>" if gate else ""
    )
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}: quantizations</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:4px 10px;border-bottom:1px solid #ddd}}.num{{text-align:right}}</style>
</head><body><h1>{html.escape(title)}: what we ship</h1>
<p>{result['examples']} test examples, the evaluate step's checks and decoding; base and tuned from the evaluate step
(transformers), the quantizations from llama.cpp (no reference-answer loss).</p>{verdict}
<h2>Metrics</h2><table><tr><th>metric</th>{head}</tr>{''.join(rows)}</table>
<h2>Per check (quantizations)</h2><table><tr><th>check</th>{''.join(f'<th>{html.escape(q)}</th>' for q in quants)}</tr>{''.join(check_rows)}</table>
<h2>Scoring cost</h2><table><tr><th>quantization</th><th>seconds</th><th>seconds per example</th></tr>{cost}</table>
</body></html>"""


def write(out: Path, result: dict[str, Any], title: str) -> dict[str, str]:
    """quantized.json, quantized-predictions.jsonl and quantized.html in `out`; their output names."""
    (out / "quantized.json").write_text(json.dumps({k: v for k, v in result.items() if k != "rows"}, indent=2, ensure_ascii=False))
    with open(out / "quantized-predictions.jsonl", "w", encoding="utf-8") as f:
        for row in result["rows"]:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    (out / "quantized.html").write_text(report_html(result, title), encoding="utf-8")
    return {"quantized": "quantized.json", "quantizedPredictions": "quantized-predictions.jsonl", "quantizedReport": "quantized.html"}
