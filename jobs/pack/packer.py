"""Records in; train/val/test rows and the report out: filter, dedupe, convert, split.

Pure: no files, no store. The step body (run.py) reads the sources and writes
what this returns.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

from jobs.common.errors import InvalidData
from jobs.common.spec import PackStep
from jobs.pack.convert import check_convertible, label_of, to_row
from jobs.pack.dedupe import NUM_PERM, exact_duplicates, near_duplicates, normalize
from jobs.pack.filters import REASONS, row_problem
from jobs.pack.records import Record
from jobs.pack.split import SPLITS, split_indices


# Below this many training rows a fine-tune rarely learns more than the format.
USEFUL_TRAIN_ROWS = 100


@dataclass
class Packed:
    splits: dict[str, list[dict[str, Any]]]
    report: dict[str, Any]


def check_unique_ids(records: list[Record]) -> None:
    seen: dict[str, str] = {}
    for record in records:
        if record.id in seen:
            raise InvalidData(
                f"{record.origin}: id {record.id!r} is already used at {seen[record.id]}; "
                "ids must be unique across all data sources"
            )
        seen[record.id] = record.origin


def _conflict(kept: list[Record], i: int, j: int, labelled: bool) -> dict[str, Any] | None:
    """Rows i (first) and j whose labels differ, for the report's labelConflicts."""
    first, other = label_of(kept[i]), label_of(kept[j])
    if not labelled or first == other:
        return None
    return {"kept": kept[i].id, "label": first, "other": kept[j].id, "otherLabel": other}


def _drop_exact(
    kept: list[Record], dropped: dict[str, list[str]], labelled: bool, conflicts: dict[str, list[Any]]
) -> tuple[list[Record], list[dict[str, Any]]]:
    """Copies of a text are dropped; a copy labelled differently is dropped as label_conflict, the
    first row's label kept, and the pair is listed."""
    repeats = exact_duplicates([r.prompt for r in kept])
    clusters: dict[int, list[str]] = defaultdict(list)
    for j, i in sorted(repeats.items()):
        conflict = _conflict(kept, i, j, labelled)
        if conflict:
            conflicts["exact"].append(conflict)
            dropped["label_conflict"].append(kept[j].id)
        else:
            clusters[i].append(kept[j].id)
            dropped["duplicate"].append(kept[j].id)
    survivors = [r for k, r in enumerate(kept) if k not in repeats]
    return survivors, [{"kept": kept[i].id, "dropped": ids} for i, ids in sorted(clusters.items())]


def _drop_near(
    kept: list[Record], threshold: float, dropped: dict[str, list[str]], labelled: bool, conflicts: dict[str, list[Any]]
) -> tuple[list[Record], list[dict[str, Any]], dict[str, Any]]:
    """Near-duplicates are dropped, except those labelled differently: similar texts of different
    classes are what a classifier must learn apart, so both are kept and the pair is listed."""
    started = time.perf_counter()
    found = near_duplicates([r.prompt for r in kept], threshold)
    clusters: dict[int, list[dict[str, Any]]] = defaultdict(list)
    removed = set()
    for j, (i, similarity) in sorted(found.duplicate_of.items()):
        conflict = _conflict(kept, i, j, labelled)
        if conflict:
            conflicts["near"].append({**conflict, "jaccard": round(similarity, 4)})
            continue
        clusters[i].append({"id": kept[j].id, "jaccard": round(similarity, 4)})
        removed.add(j)
    dropped["near_duplicate"] += [kept[j].id for j in sorted(removed)]
    stats = {
        "threshold": threshold,
        "rows": found.rows,
        "candidatePairs": found.candidate_pairs,
        "similarPairs": found.similar_pairs,
        "numPerm": NUM_PERM,
        "bands": found.bands,
        "rowsPerBand": found.rows_per_band,
        "seconds": round(time.perf_counter() - started, 3),
    }
    survivors = [r for k, r in enumerate(kept) if k not in removed]
    return survivors, [{"kept": kept[i].id, "dropped": d} for i, d in sorted(clusters.items())], stats


def _nothing_left(total: int, dropped: dict[str, list[str]], cfg: PackStep) -> InvalidData:
    reasons = "; ".join(f"{reason}: {len(ids)} ({REASONS[reason]})" for reason, ids in dropped.items())
    return InvalidData(
        f"all {total} rows were filtered out, nothing to pack. {reasons}. Settings: "
        f"minOutputChars={cfg.min_output_chars}, maxTokens={cfg.max_tokens}, "
        f"nearDupThreshold={cfg.near_dup_threshold}, curate={cfg.curate}"
    )


def _require_two_classes(kept: list[Record], labels: list[str]) -> None:
    classes = Counter(labels)
    if len(classes) < 2:
        (label, n), first = classes.most_common(1)[0], kept[0]
        column = f", column {first.label_column!r}" if first.label_column else ""
        raise InvalidData(
            f"steps.pack.format classification: the label column has one class, {label!r} "
            f"({n} rows, e.g. {first.origin}{column}); a stratified split needs at least two classes"
        )


def _unknown_key_warnings(records: list[Record]) -> list[str]:
    """Top-level keys no reader maps are not packed; say which, how often, and where first."""
    seen: dict[str, list[str]] = defaultdict(list)
    for record in records:
        for key in record.unknown_keys:
            seen[key].append(record.origin)
    return [
        f"key {key!r} in {len(origins)} row(s) (first at {origins[0]}) is not read by the format and is not packed"
        for key, origins in sorted(seen.items())
    ]


def _warnings(splits: dict[str, list[Any]], fractions: dict[str, float], labels: list[str] | None) -> list[str]:
    out = [
        f"the {name} split is empty although its fraction is {fractions[name]}: too few rows"
        for name in SPLITS
        if fractions[name] > 0 and not splits[name]
    ]
    if 0 < len(splits["train"]) < USEFUL_TRAIN_ROWS:
        out.append(f"the train split has {len(splits['train'])} rows; a useful fine-tune needs {USEFUL_TRAIN_ROWS} or more")
    if labels is not None:
        out += [
            f"class {label!r} has {n} row(s), too few to appear in every split"
            for label, n in sorted(Counter(labels).items())
            if n < sum(1 for f in fractions.values() if f > 0)
        ]
    return out


def pack(records: list[Record], cfg: PackStep, sources: list[dict[str, Any]]) -> Packed:
    check_unique_ids(records)
    check_convertible(records, cfg.format)
    dropped: dict[str, list[str]] = defaultdict(list)
    kept = []
    for record in records:
        reason = row_problem(record, cfg.format, cfg.min_output_chars, cfg.max_tokens)
        if reason:
            dropped[reason].append(record.id)
        else:
            kept.append(record)
    exact: list[dict[str, Any]] = []
    near: list[dict[str, Any]] = []
    near_stats = None
    conflicts: dict[str, list[Any]] = {"exact": [], "near": []}
    if cfg.dedupe:
        labelled = cfg.format == "classification" or bool(kept) and all(r.label is not None for r in kept)
        kept, exact = _drop_exact(kept, dropped, labelled, conflicts)
        if cfg.near_dup_threshold is not None and kept:
            kept, near, near_stats = _drop_near(kept, cfg.near_dup_threshold, dropped, labelled, conflicts)
    if not kept:
        raise _nothing_left(len(records), dropped, cfg)

    rows = [to_row(r, cfg.format, cfg.system_prompt) for r in kept]
    labelled = cfg.format == "classification" or all(r.label is not None for r in kept)
    labels = [label_of(r) for r in kept] if labelled else None
    if cfg.format == "classification":
        _require_two_classes(kept, labels)
    fractions = {"train": cfg.split.train, "val": cfg.split.val, "test": cfg.split.test}
    # Copies of a prompt stay in one split; after exact dedupe every prompt is unique already.
    keys = [r.id for r in kept] if cfg.dedupe else [normalize(r.prompt) for r in kept]
    parts = split_indices(keys, list(fractions.values()), cfg.seed, labels)
    splits = {name: [rows[i] for i in parts[name]] for name in SPLITS}

    report = {
        "format": cfg.format,
        "sources": sources,
        "counts": {
            "in": len(records),
            "out": len(kept),
            "dropped": len(records) - len(kept),
            **{name: len(splits[name]) for name in SPLITS},
        },
        "dropped": {
            reason: {"count": len(ids), "description": REASONS[reason], "ids": ids}
            for reason, ids in dropped.items()
        },
        "duplicates": {"exact": exact, "near": near, "nearDup": near_stats, "labelConflicts": conflicts},
        "labels": (
            {"all": dict(Counter(labels)), **{n: dict(Counter(labels[i] for i in parts[n])) for n in SPLITS}}
            if labels is not None
            else None
        ),
        "filters": {
            "minOutputChars": cfg.min_output_chars,
            "maxTokens": cfg.max_tokens,
            "dedupe": cfg.dedupe,
            "nearDupThreshold": cfg.near_dup_threshold if cfg.dedupe else None,
            "curate": cfg.curate,
        },
        "split": {"seed": cfg.seed, "fractions": fractions, "stratified": labels is not None},
        "warnings": _unknown_key_warnings(records) + _warnings(splits, fractions, labels),
    }
    return Packed(splits, report)
