"""The split: seeded, disjoint, complete, stratified, and equal prompts stay together."""

from __future__ import annotations

from collections import Counter

import pytest

from jobs.pack.split import split_counts, split_indices

FRACTIONS = (0.8, 0.1, 0.1)


def test_same_seed_same_split_other_seed_other_split():
    keys = list(range(200))
    assert split_indices(keys, FRACTIONS, 7) == split_indices(keys, FRACTIONS, 7)
    assert split_indices(keys, FRACTIONS, 7)["test"] != split_indices(keys, FRACTIONS, 8)["test"]


def test_splits_are_disjoint_complete_and_sized():
    parts = split_indices(list(range(1000)), FRACTIONS, 1)
    rows = parts["train"] + parts["val"] + parts["test"]
    assert sorted(rows) == list(range(1000))
    assert [len(parts[s]) for s in ("train", "val", "test")] == [800, 100, 100]


def test_order_within_a_split_is_shuffled_not_grouped_by_label():
    labels = ["a"] * 100 + ["b"] * 100
    train = split_indices(list(range(200)), FRACTIONS, 3, labels)["train"]
    assert train != sorted(train)
    assert len({labels[i] for i in train[:20]}) == 2


def test_stratified_by_label():
    labels = ["common"] * 600 + ["medium"] * 300 + ["rare"] * 100
    parts = split_indices(list(range(1000)), FRACTIONS, 5, labels)
    for split, share in zip(("train", "val", "test"), FRACTIONS):
        counts = Counter(labels[i] for i in parts[split])
        for label, total in Counter(labels).items():
            assert abs(counts[label] - total * share) <= 1, (split, label, counts)


def test_small_classes_still_reach_the_test_split_proportionally():
    labels = ["a"] * 10 + ["b"] * 10 + ["c"] * 10
    test = split_indices(list(range(30)), FRACTIONS, 0, labels)["test"]
    assert Counter(labels[i] for i in test) == {"a": 1, "b": 1, "c": 1}


def test_rows_with_the_same_key_stay_in_one_split():
    keys = [f"prompt {i % 50}" for i in range(200)]  # every prompt four times
    parts = split_indices(keys, FRACTIONS, 11)
    where = {}
    for split, rows in parts.items():
        for i in rows:
            assert where.setdefault(keys[i], split) == split
    assert len(parts["test"]) == 4 * 5


@pytest.mark.parametrize(
    ("n", "fractions", "counts"),
    [
        (10, FRACTIONS, [8, 1, 1]),
        (3, FRACTIONS, [1, 1, 1]),
        (2, FRACTIONS, [2, 0, 0]),
        (1, FRACTIONS, [1, 0, 0]),
        (7, (0.5, 0.5, 0.0), [4, 3, 0]),
        (11, (0.7, 0.15, 0.15), [8, 2, 1]),
    ],
)
def test_split_counts(n, fractions, counts):
    assert split_counts(n, fractions) == counts
    assert sum(counts) == n
