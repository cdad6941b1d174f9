"""The eval step: ask a model every item of an eval set, check its answers.

    FT_SPEC_FILE=run.json FT_STORE_URI=file:///tmp/store python -m jobs.eval

Writes results.jsonl (first line {"meta": ...}: what answered, decoding, checks,
synonyms and options, so `ftctl rerun` can repeat it; then one line per item)
and summary.json. Answers found in the answer cache are not asked again.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from jobs.common.artifacts import now_iso, sha256_file
from jobs.common.backends import ChatBackend, Reply
from jobs.common.backends.factory import display_name, open_backend
from jobs.common.checks import Synonyms, Verdict, load_synonyms, run_checks
from jobs.common.errors import InvalidData
from jobs.common.handoff import EVAL_RESULTS
from jobs.common.judge import Case, Judge, agreement, needs_judge, open_judge
from jobs.common.spec import Check, Decoding
from jobs.common.stepctx import StepContext, StepResult
from jobs.common.answercache import AnswerCache, answer_key
from jobs.eval.items import Item, Malformed, load_items

SUMMARY = "summary.json"


@dataclass
class Stats:
    model_calls: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    seconds: float = 0.0
    malformed: list[Malformed] = field(default_factory=list)
    judge: dict[str, Any] | None = None  # the judge's calls, cache hits and unreadable verdicts


def answer_and_check(
    items: list[Item],
    backend: ChatBackend,
    *,
    decoding: Decoding,
    default_checks: list[Check],
    synonyms: Synonyms,
    mode: str,
    cache: AnswerCache | None,
    progress: Callable[[int, int], None] = lambda done, total: None,
    judge: Judge | None = None,
) -> tuple[list[dict[str, Any]], Stats]:
    """One result row per item, in item order."""
    started = time.perf_counter()
    stats = Stats()
    keys = [answer_key(it.chat(), decoding, backend.identity, mode) for it in items]
    replies: list[Reply | None] = [cache.get(k) if cache else None for k in keys]
    cached = [r is not None for r in replies]
    todo = [i for i, r in enumerate(replies) if r is None]
    done = len(items) - len(todo)
    progress(done, len(items))

    def on_reply(j: int, reply: Reply) -> None:
        nonlocal done
        replies[todo[j]] = reply
        if cache:
            cache.put(keys[todo[j]], reply)
        done += 1
        progress(done, len(items))

    if todo:
        try:
            backend.generate([items[i].chat() for i in todo], decoding, on_reply)
        finally:
            if cache:
                cache.flush()  # keep what was answered even when a later request failed
    stats.model_calls = len(todo)
    if cache:
        stats.cache_hits, stats.cache_misses = cache.hits, cache.misses
    verdicts: list[list[Verdict]] = [[] for _ in items]
    if judge is not None:
        cases = [Case(it.effective_checks(default_checks), it.chat(), r.text, it.expected) for it, r in zip(items, replies)]
        verdicts = judge.verdicts(cases)
        stats.judge = judge.stats()
    rows = [_row(it, r, c, default_checks, synonyms, v) for it, r, c, v in zip(items, replies, cached, verdicts)]
    stats.seconds = time.perf_counter() - started
    return rows, stats


def _row(
    item: Item, reply: Reply, cached: bool, default_checks: list[Check], synonyms: Synonyms, verdicts: list[Verdict]
) -> dict[str, Any]:
    outcomes = run_checks(item.effective_checks(default_checks), reply.text, item.expected, synonyms, verdicts)
    return {
        "id": item.id,
        "messages": item.chat(),
        "expected": item.expected,
        "response": reply.text,
        "checks": [o.to_json() for o in outcomes],
        "passed": all(o.passed for o in outcomes),
        "latency": round(reply.latency, 4),
        "tokens": {"prompt": reply.prompt_tokens, "completion": reply.completion_tokens},
        "cached": cached,
        "tags": list(item.tags),
    }


def _percentile(values: list[float], q: int) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return round(values[0], 4)
    return round(statistics.quantiles(values, n=100, method="inclusive")[q - 1], 4)


def summarize(rows: list[dict[str, Any]], stats: Stats) -> dict[str, Any]:
    per_check: dict[str, dict[str, Any]] = {}
    for row in rows:
        for outcome in row["checks"]:
            entry = per_check.setdefault(outcome["type"], {"passed": 0, "total": 0})
            entry["total"] += 1
            entry["passed"] += int(outcome["passed"])
    for entry in per_check.values():
        entry["passRate"] = round(entry["passed"] / entry["total"], 4)
    asked = [r["latency"] for r in rows if not r["cached"]]  # cached answers took no model time
    passed = sum(r["passed"] for r in rows)
    judge = {**stats.judge, "agreement": agreement([r["checks"] for r in rows])} if stats.judge else None
    return {
        "items": len(rows),
        "passed": passed,
        "failed": len(rows) - passed,
        "passRate": round(passed / len(rows), 4) if rows else 0.0,
        "perCheck": per_check,
        "latency": {"p50": _percentile(asked, 50), "p95": _percentile(asked, 95), "measured": len(asked)},
        "cache": {"hits": stats.cache_hits, "misses": stats.cache_misses},
        "modelCalls": stats.model_calls,
        "tokens": {
            "prompt": sum(r["tokens"]["prompt"] or 0 for r in rows),
            "completion": sum(r["tokens"]["completion"] or 0 for r in rows),
        },
        "malformed": [{"line": m.line, "error": m.error} for m in stats.malformed],
        "seconds": round(stats.seconds, 3),
        "judge": judge,
    }


def write_results(path: Path, meta: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps({"meta": meta}, ensure_ascii=False) + "\n")
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def read_results(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The meta and the item rows of a results file; InvalidData names a bad line."""
    lines = path.read_text(encoding="utf-8").splitlines()
    try:
        meta = json.loads(lines[0])["meta"]
    except (IndexError, KeyError, TypeError, ValueError):
        raise InvalidData(f'{path}: not an eval results file (its first line must be {{"meta": ...}})') from None
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as err:
            raise InvalidData(f"{path} line {number}: not JSON ({err})") from None
        if not isinstance(row, dict) or not {"id", "passed", "messages", "checks"} <= row.keys():
            raise InvalidData(f"{path} line {number}: an eval result needs id, messages, checks and passed")
        rows.append(row)
    return meta, rows


def progress_of(ctx: StepContext) -> Callable[[int, int], None]:
    last = [0.0]

    def report(done: int, total: int) -> None:
        now = time.monotonic()
        if done == total or now - last[0] >= 1.0:  # at most one line a second
            last[0] = now
            ctx.progress.update(done, total)

    return report


def build_meta(
    ctx: StepContext, synonyms: Synonyms, identity: dict[str, Any], items_path: Path, malformed: list[Malformed]
) -> dict[str, Any]:
    """Everything `ftctl rerun` needs to ask and judge the same way again."""
    cfg = ctx.config
    return {
        "createdAt": now_iso(),
        "run": {"namespace": ctx.namespace, "name": ctx.name},
        "model": display_name(cfg.backend, ctx.spec.model),
        "endpoint": cfg.backend.endpoint.base_url if cfg.backend.endpoint else None,
        "temperature": cfg.decoding.temperature,
        "decoding": cfg.decoding.model_dump(mode="json", by_alias=True),
        "backend": cfg.backend.model_dump(mode="json", by_alias=True, exclude_none=True),
        "modelSource": ctx.spec.model.model_dump(mode="json", by_alias=True, exclude_none=True),
        "identity": identity,
        "mode": cfg.mode,
        "checks": [c.model_dump(mode="json", by_alias=True) for c in cfg.checks],
        "judge": cfg.judge.model_dump(mode="json", by_alias=True, exclude_none=True) if cfg.judge else None,
        "synonyms": synonyms,
        "options": {
            "concurrency": cfg.concurrency,
            "timeoutSeconds": cfg.timeout_seconds,
            "retries": cfg.retries,
            "cache": cfg.cache,
            "store": ctx.store.uri,
        },
        "baseDir": str(ctx.base_dir),
        "overrides": {},
        "source": {"items": cfg.items, "sha256": sha256_file(items_path), "malformedLines": [m.line for m in malformed]},
        "previous": None,
    }


def run_step(ctx: StepContext) -> StepResult:
    cfg = ctx.config
    items_path = ctx.resolve(cfg.items)
    items, malformed = load_items(items_path, list(cfg.checks), cfg.allow_partial, judged=cfg.judge is not None)
    synonyms = load_synonyms(
        ctx.resolve(cfg.synonyms) if cfg.synonyms else None,
        ctx.resolve(cfg.synonyms_override) if cfg.synonyms_override else None,
    )
    backend = open_backend(
        cfg.backend,
        model=ctx.spec.model,
        base_dir=ctx.base_dir,
        resolve=ctx.resolve,
        hf_model_dir=lambda: _base_model_dir(ctx),
        concurrency=cfg.concurrency,
        timeout=cfg.timeout_seconds,
        retries=cfg.retries,
    )
    cache = AnswerCache(ctx.store, backend.identity, cfg.mode) if cfg.cache else None
    judged = cfg.judge is not None and any(needs_judge(it.effective_checks(list(cfg.checks))) for it in items)
    judge = open_judge(cfg.judge, ctx) if judged else None
    try:
        rows, stats = answer_and_check(
            items,
            backend,
            decoding=cfg.decoding,
            default_checks=list(cfg.checks),
            synonyms=synonyms,
            mode=cfg.mode,
            cache=cache,
            progress=progress_of(ctx),
            judge=judge,
        )
    finally:
        backend.close()
        if judge is not None:
            judge.close()
    stats.malformed = malformed
    meta = build_meta(ctx, synonyms, backend.identity, items_path, malformed)
    summary = summarize(rows, stats)
    write_results(ctx.out / EVAL_RESULTS, meta, rows)
    (ctx.out / SUMMARY).write_text(json.dumps(summary, indent=2, ensure_ascii=False))
    ctx.upload_outputs()
    metrics = {
        "items": summary["items"],
        "passRate": summary["passRate"],
        "cacheHits": summary["cache"]["hits"],
        "cacheMisses": summary["cache"]["misses"],
        "modelCalls": summary["modelCalls"],
        "latencyP50": summary["latency"]["p50"],
        "latencyP95": summary["latency"]["p95"],
        "malformed": len(malformed),
    }
    if summary["judge"]:
        agreed = summary["judge"]["agreement"] or {}
        metrics |= {"judgeCalls": summary["judge"]["calls"], "judgeAgreement": agreed.get("agreement"), "judgeKappa": agreed.get("kappa")}
    ctx.progress.event("eval done", **metrics)
    return StepResult(metrics=metrics, outputs={"results": EVAL_RESULTS, "summary": SUMMARY})


def _base_model_dir(ctx: StepContext) -> Path:
    from jobs.common.modelload import base_model_dir

    return base_model_dir(ctx)
