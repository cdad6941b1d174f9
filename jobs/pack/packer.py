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
# Rows of a fixed test or val source come first in dedupe, so a copy of one is the row dropped,
# wherever else it is: a training copy of a test row would leak the test into training.
HELD_OUT_ORDER = {"test": 0, "val": 1}


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


def _held_out_copy(kept: list[Record], i: int, j: int, held_out: list[dict[str, Any]], **how: Any) -> bool:
    """Row j repeats row i of a fixed test/val source in another split: listed, and j is dropped."""
    if kept[i].split not in HELD_OUT_ORDER or kept[j].split == kept[i].split:
        return False
    held_out.append({"kept": kept[i].id, "split": kept[i].split, "dropped": kept[j].id, **how})
    return True


def _drop_exact(
    kept: list[Record], dropped: dict[str, list[str]], labelled: bool, conflicts: dict[str, list[Any]],
    held_out: list[dict[str, Any]],
) -> tuple[list[Record], list[dict[str, Any]]]:
    """Copies of a text are dropped; a copy labelled differently is dropped as label_conflict, the
    first row's label kept, and the pair is listed; a copy of a fixed test/val row, as held_out_copy."""
    repeats = exact_duplicates([r.prompt for r in kept])
    clusters: dict[int, list[str]] = defaultdict(list)
    for j, i in sorted(repeats.items()):
        conflict = _conflict(kept, i, j, labelled)
        if conflict:
            conflicts["exact"].append(conflict)
            dropped["label_conflict"].append(kept[j].id)
        elif _held_out_copy(kept, i, j, held_out, jaccard=1.0):
            dropped["held_out_copy"].append(kept[j].id)
        else:
            clusters[i].append(kept[j].id)
            dropped["duplicate"].append(kept[j].id)
    survivors = [r for k, r in enumerate(kept) if k not in repeats]
    return survivors, [{"kept": kept[i].id, "dropped": ids} for i, ids in sorted(clusters.items())]


def _drop_near(
    kept: list[Record], threshold: float, dropped: dict[str, list[str]], labelled: bool, conflicts: dict[str, list[Any]],
    held_out: list[dict[str, Any]],
) -> tuple[list[Record], list[dict[str, Any]], dict[str, Any]]:
    """Near-duplicates are dropped, except those labelled differently: similar texts of different
    classes are what a classifier must learn apart, so both are kept and the pair is listed."""
    started = time.perf_counter()
    found = near_duplicates([r.prompt for r in kept], threshold)
    clusters: dict[int, list[dict[str, Any]]] = defaultdict(list)
    removed = set()
    near_dropped = dropped["near_duplicate"]  # listed, even at 0, whenever near dedupe ran
    for j, (i, similarity) in sorted(found.duplicate_of.items()):
        conflict = _conflict(kept, i, j, labelled)
        if conflict:
            conflicts["near"].append({**conflict, "jaccard": round(similarity, 4)})
            continue
        if _held_out_copy(kept, i, j, held_out, jaccard=round(similarity, 4)):
            dropped["held_out_copy"].append(kept[j].id)
        else:
            clusters[i].append({"id": kept[j].id, "jaccard": round(similarity, 4)})
            near_dropped.append(kept[j].id)
        removed.add(j)
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


def _drop_held_out_copies(kept: list[Record], dropped: dict[str, list[str]], held_out: list[dict[str, Any]]) -> list[Record]:
    """With dedupe off copies stay, except copies of a fixed test/val row in another split."""
    copies = {
        j for j, i in exact_duplicates([r.prompt for r in kept]).items()
        if _held_out_copy(kept, i, j, held_out, jaccard=1.0)
    }
    dropped["held_out_copy"] += [kept[j].id for j in sorted(copies)]
    return [r for k, r in enumerate(kept) if k not in copies]


def _split(
    kept: list[Record], cfg: PackStep, labels: list[str] | None, fixed: set[str]
) -> tuple[dict[str, list[int]], dict[str, float]]:
    """Row indices per split, and the fractions the rows of no fixed split were split by: rows of
    a fixed source stay in its split, and a val or test split some source fixes takes no others
    (its fraction goes to train)."""
    fractions = {"train": cfg.split.train, "val": cfg.split.val, "test": cfg.split.test}
    for name in fixed & {"val", "test"}:
        fractions["train"] += fractions[name]
        fractions[name] = 0.0
    free = [i for i, r in enumerate(kept) if r.split is None]
    # Copies of a prompt stay in one split; after exact dedupe every prompt is unique already.
    keys = [kept[i].id if cfg.dedupe else normalize(kept[i].prompt) for i in free]
    parts = split_indices(keys, list(fractions.values()), cfg.seed, [labels[i] for i in free] if labels is not None else None)
    return {
        name: [i for i, r in enumerate(kept) if r.split == name] + [free[k] for k in parts[name]] for name in SPLITS
    }, fractions


def _nothing_left(total: int, dropped: dict[str, list[str]], cfg: PackStep) -> InvalidData:
    reasons = "; ".join(f"{reason}: {len(ids)} ({REASONS[reason]})" for reason, ids in dropped.items())
    return InvalidData(
        f"all {total} rows were filtered out, nothing to pack. {reasons}. Settings: "
        f"minOutputTokens={cfg.min_output_tokens}, maxTokens={cfg.max_tokens}, "
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


def _warnings(
    splits: dict[str, list[Any]], fractions: dict[str, float], labels: list[str] | None, fixed: set[str]
) -> list[str]:
    out = [
        f"the {name} split is empty although its fraction is {fractions[name]}: too few rows"
        for name in SPLITS
        if fractions[name] > 0 and not splits[name] and name not in fixed
    ]
    out += [f"the {name} split is empty: every row of the sources fixed to it was dropped" for name in SPLITS
            if name in fixed and not splits[name]]
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
        reason = row_problem(record, cfg.format, cfg.min_output_tokens, cfg.max_tokens)
        if reason:
            dropped[reason].append(record.id)
        else:
            kept.append(record)
    exact: list[dict[str, Any]] = []
    near: list[dict[str, Any]] = []
    near_stats = None
    conflicts: dict[str, list[Any]] = {"exact": [], "near": []}
    held_out: list[dict[str, Any]] = []
    fixed = {r.split for r in records if r.split is not None}
    kept.sort(key=lambda r: HELD_OUT_ORDER.get(r.split, len(HELD_OUT_ORDER)))  # stable: else the given order
    if cfg.dedupe:
        labelled = cfg.format == "classification" or bool(kept) and all(r.label is not None for r in kept)
        kept, exact = _drop_exact(kept, dropped, labelled, conflicts, held_out)
        if cfg.near_dup_threshold is not None and kept:
            kept, near, near_stats = _drop_near(kept, cfg.near_dup_threshold, dropped, labelled, conflicts, held_out)
    else:
        kept = _drop_held_out_copies(kept, dropped, held_out)
    if not kept:
        raise _nothing_left(len(records), dropped, cfg)

    rows = [to_row(r, cfg.format, cfg.system_prompt) for r in kept]
    labelled = cfg.format == "classification" or all(r.label is not None for r in kept)
    labels = [label_of(r) for r in kept] if labelled else None
    if cfg.format == "classification":
        _require_two_classes(kept, labels)
    parts, fractions = _split(kept, cfg, labels, fixed)
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
        "duplicates": {
            "exact": exact, "near": near, "nearDup": near_stats, "labelConflicts": conflicts, "heldOut": held_out,
        },
        "labels": (
            {"all": dict(Counter(labels)), **{n: dict(Counter(labels[i] for i in parts[n])) for n in SPLITS}}
            if labels is not None
            else None
        ),
        "filters": {
            "minOutputTokens": cfg.min_output_tokens,
            "maxTokens": cfg.max_tokens,
            "dedupe": cfg.dedupe,
            "nearDupThreshold": cfg.near_dup_threshold if cfg.dedupe else None,
            "curate": cfg.curate,
        },
        "split": {
            "seed": cfg.seed, "fractions": fractions, "stratified": labels is not None,
            "fixed": {name: sum(kept[i].split == name for i in parts[name]) for name in sorted(fixed)},
        },
        "warnings": _unknown_key_warnings(records) + _warnings(splits, fractions, labels, fixed),
    }
    return Packed(splits, report)
