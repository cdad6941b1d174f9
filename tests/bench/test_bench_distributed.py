"""The distributed benchmark end to end at a tiny size (a random 2-layer Llama, 2 steps): both
sides train, the 2-process side reports two ranks' memory and its pre-flight (no timing asserted)."""

from __future__ import annotations

from tests.train.trainkit import smollm2_tokenizer_dir, tiny_llama  # noqa: F401

from bench.distributed import build_section, measure


def test_one_and_two_processes_are_measured(tiny_llama):
    m = measure(steps=2, rows=40, model_dir=tiny_llama)
    one, two = (m["results"][k] for k in ("1 process", "2 processes (DDP, gloo)"))
    assert one["metrics"]["worldSize"] == 1 and one["preflight"] is None and len(one["metrics"]["peakRssMiBPerRank"]) == 1
    assert two["metrics"]["worldSize"] == 2 and two["preflight"] > 0 and len(two["metrics"]["peakRssMiBPerRank"]) == 2
    assert one["metrics"]["steps"] == two["metrics"]["steps"] == 2
    section = build_section(m)
    assert [row[0] for row in section.rows] == ["1 process", "2 processes (DDP, gloo)"]
    assert "Pre-flight" in section.meaning
