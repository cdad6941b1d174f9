"""Seeded train/val/test split, stratified by label, that keeps equal prompts together.

Rows are grouped by a key (the normalized prompt), so that copies of one prompt
never land in two splits even when dedupe is off. Groups are shuffled with the
seed, ordered by label (stable, so each class stays shuffled), and each split
takes evenly spaced positions of that order: every class then gets its share of
each split, give or take one row.
"""

from __future__ import annotations

import random
from collections.abc import Hashable, Sequence

SPLITS = ("train", "val", "test")


def split_counts(n: int, fractions: Sequence[float]) -> list[int]:
    """Counts summing to n, by largest remainder; a split with a positive fraction gets at
    least one row when there are enough rows for every such split."""
    raw = [f * n for f in fractions]
    counts = [int(x) for x in raw]
    by_remainder = sorted(range(len(raw)), key=lambda i: (counts[i] - raw[i], i))
    for i in by_remainder[: n - sum(counts)]:
        counts[i] += 1
    wanted = [i for i, f in enumerate(fractions) if f > 0]
    if n >= len(wanted):
        for i in wanted:
            if counts[i] == 0:
                donor = max(range(len(counts)), key=lambda j: counts[j])
                counts[donor] -= 1
                counts[i] += 1
    return counts


def _spread(positions: list[int], count: int) -> tuple[list[int], list[int]]:
    """(`count` evenly spaced items of `positions`, the others)."""
    n = len(positions)
    taken, rest = [], []
    for k, p in enumerate(positions):
        (taken if (k + 1) * count // n > k * count // n else rest).append(p)
    return taken, rest


def split_indices(
    keys: Sequence[Hashable],
    fractions: Sequence[float],
    seed: int,
    labels: Sequence[str] | None = None,
) -> dict[str, list[int]]:
    """Row indices per split (train, val, test), each in the seeded shuffled order."""
    groups: dict[Hashable, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    members = list(groups.values())
    order = list(range(len(members)))
    random.Random(seed).shuffle(order)
    rank = {g: r for r, g in enumerate(order)}
    if labels is not None:
        order.sort(key=lambda g: labels[members[g][0]])
    _, val_n, test_n = split_counts(len(members), fractions)
    test, rest = _spread(order, test_n)
    val, train = _spread(rest, val_n)
    return {
        name: [i for g in sorted(chosen, key=rank.__getitem__) for i in members[g]]
        for name, chosen in zip(SPLITS, (train, val, test))
    }
