"""ftctl rerun RESULTS: ask an eval's items again, with the settings stored in its results file.

    ftctl rerun results.jsonl                 # the items that failed (default)
    ftctl rerun results.jsonl --all
    ftctl rerun results.jsonl --ids de,fr
    ftctl rerun results.jsonl --synonyms-override synonyms.local.json --cache

The backend, decoding, checks, synonyms and options come from the file's meta
line. The new results file (next to the old one, or --out) links to the old one
and records what was overridden. Reruns ask the model again; --cache answers
from the answer cache where it can (useful after changing synonyms).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from jobs.common.errors import InvalidInput, MissingInput


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("rerun", help="rerun an eval's failed, all or chosen items from its results file")
    p.add_argument("results", type=Path, help="an eval results.jsonl")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--failed", dest="select", action="store_const", const="failed", help="failed items (default)")
    which.add_argument("--all", dest="select", action="store_const", const="all", help="every item")
    which.add_argument("--ids", help="comma-separated item ids")
    p.add_argument("--out", type=Path, help="where to write the new results (default: next to RESULTS)")
    p.add_argument("--synonyms-override", type=Path, help="synonyms merged over the stored ones")
    p.add_argument("--cache", action="store_true", help="answer from the answer cache where possible")
    p.add_argument("--store", help="store holding the answer cache (default: the one the eval used)")
    p.set_defaults(func=run, select="failed")


def select_rows(rows: list[dict[str, Any]], select: str, ids: list[str] | None) -> list[dict[str, Any]]:
    if ids is not None:
        known = {r["id"] for r in rows}
        unknown = [i for i in ids if i not in known]
        if unknown:
            raise InvalidInput(f"--ids: no item(s) {', '.join(unknown)} in the results file")
        wanted = set(ids)
        return [r for r in rows if r["id"] in wanted]
    return rows if select == "all" else [r for r in rows if not r["passed"]]


def default_out(results: Path) -> Path:
    base = results.name.removesuffix(".jsonl").split(".rerun-")[0]
    return results.with_name(f"{base}.rerun-{time.strftime('%Y%m%dT%H%M%S')}.jsonl")


def items_of(rows: list[dict[str, Any]], source: Path) -> list[Any]:
    """The rows as eval items again, each with the checks it was judged by."""
    from pydantic import ValidationError

    from jobs.common.checks import check_of
    from jobs.common.errors import InvalidData
    from jobs.eval.items import Item

    items = []
    for number, row in enumerate(rows, start=2):  # line 1 is the meta line
        try:
            checks = [check_of(o) for o in row["checks"]]
            items.append(Item(id=row["id"], messages=row["messages"], expected=row.get("expected"), checks=checks, tags=row.get("tags", [])))
        except (KeyError, TypeError, ValidationError) as err:
            raise InvalidData(f"{source} line {number}: not an eval result ({type(err).__name__}: {err})") from None
    return items


def open_rerun_backend(meta: dict[str, Any], store_uri: str | None, backend: Any = None, options: Any = None) -> Any:
    """The backend the eval used (or `backend`, its judge's), with its options, from the meta line."""
    from jobs.common.backends.factory import open_backend
    from jobs.common.resolve import materialize
    from jobs.common.spec import Backend, BaseModelSource

    options = options or meta.get("options") or {}
    base_dir = Path(meta.get("baseDir") or Path.cwd())
    scratch = Path(".ft-work/rerun").resolve()
    return open_backend(
        backend or Backend.model_validate(meta["backend"]),
        model=BaseModelSource.model_validate(meta["modelSource"]),
        base_dir=base_dir,
        resolve=lambda loc: materialize(loc, base_dir, scratch),
        hf_model_dir=lambda: _base_model_dir(meta, base_dir, store_uri),
        concurrency=options.get("concurrency", 4),
        timeout=options.get("timeoutSeconds", 60),
        retries=options.get("retries", 3),
    )


def open_rerun_judge(meta: dict[str, Any], store_uri: str | None, cache: bool) -> Any:
    """The judge the eval graded its judge checks with, None when it had none."""
    from jobs.common.answercache import AnswerCache
    from jobs.common.judge import MODE, Judge
    from jobs.common.spec import Judge as JudgeSpec
    from jobs.common.store import open_store

    if not meta.get("judge"):
        return None
    cfg = JudgeSpec.model_validate(meta["judge"])
    options = {"concurrency": cfg.concurrency, "timeoutSeconds": cfg.timeout_seconds, "retries": cfg.retries}
    backend = open_rerun_backend(meta, store_uri, cfg.backend, options)
    return Judge(backend, cfg.decoding, AnswerCache(open_store(store_uri), backend.identity, MODE) if cache else None)


def run(args: argparse.Namespace) -> int:
    from jobs.common.artifacts import now_iso
    from jobs.common.checks import load_synonyms
    from jobs.common.spec import Decoding
    from jobs.common.store import open_store
    from jobs.common.answercache import AnswerCache
    from jobs.eval.run import answer_and_check, read_results, summarize, write_results

    if not args.results.is_file():
        raise MissingInput(f"{args.results}: no such results file")
    meta, rows = read_results(args.results)
    ids = [i.strip() for i in args.ids.split(",") if i.strip()] if args.ids else None
    select = "ids" if ids is not None else args.select
    chosen = select_rows(rows, select, ids)
    if not chosen:
        print(f"nothing to rerun: all {len(rows)} item(s) in {args.results} passed")
        return 0
    items = items_of(chosen, args.results)
    synonyms = dict(meta.get("synonyms") or {})
    if args.synonyms_override:
        synonyms.update(load_synonyms(None, args.synonyms_override))
    store_uri = args.store or (meta.get("options") or {}).get("store")
    if args.cache and not store_uri:
        raise InvalidInput("--cache: the results file names no store; pass --store")
    backend = open_rerun_backend(meta, store_uri)
    judge = open_rerun_judge(meta, store_uri, args.cache)
    mode = meta.get("mode", "eval")
    cache = AnswerCache(open_store(store_uri), backend.identity, mode) if args.cache else None
    try:
        new_rows, stats = answer_and_check(
            items, backend, decoding=Decoding.model_validate(meta["decoding"]), default_checks=[],
            synonyms=synonyms, mode=mode, cache=cache, judge=judge,
        )
    finally:
        backend.close()
        if judge is not None:
            judge.close()
    out = args.out or default_out(args.results)
    overrides = {"select": select, "ids": [r["id"] for r in chosen], "cache": args.cache}
    if args.synonyms_override:
        overrides["synonymsOverride"] = str(args.synonyms_override)
    new_meta = {**meta, "createdAt": now_iso(), "synonyms": synonyms, "overrides": overrides, "previous": str(args.results.resolve())}
    summary = summarize(new_rows, stats)
    write_results(out, new_meta, new_rows)
    out.with_name(out.name.removesuffix(".jsonl") + ".summary.json").write_text(json.dumps(summary, indent=2))
    before = {r["id"]: r["passed"] for r in chosen}
    fixed = sum(1 for r in new_rows if r["passed"] and not before[r["id"]])
    broke = sum(1 for r in new_rows if not r["passed"] and before[r["id"]])
    print(
        f"reran {len(new_rows)} of {len(rows)} item(s) ({select}): {summary['passed']} passed, "
        f"{summary['failed']} failed ({fixed} newly passing, {broke} newly failing); "
        f"model calls {summary['modelCalls']}, cache hits {summary['cache']['hits']}, misses {summary['cache']['misses']}"
    )
    print(f"wrote {out} (previous: {args.results})")
    return 0


def _base_model_dir(meta: dict[str, Any], base_dir: Path, store_uri: str | None) -> Path:
    """The eval's base model (baseModel backend), found as the eval step found it."""
    from jobs.cli.reader import reader_context
    from jobs.common.errors import InvalidInput
    from jobs.common.modelload import base_model_dir
    from jobs.common.spec import FineTuneRun
    from jobs.common.store import open_store

    if not store_uri:
        raise InvalidInput("the results file names no store for the base model cache; pass --store")
    ftr = FineTuneRun.model_validate(
        {
            "apiVersion": "finetune.dev/v1alpha1",
            "kind": "FineTuneRun",
            "metadata": meta["run"],
            "spec": {"model": meta["modelSource"], "steps": {"eval": {"items": meta["source"]["items"], "backend": meta["backend"]}}},
        }
    )
    return base_model_dir(reader_context(ftr, open_store(store_uri), base_dir, "rerun"))
