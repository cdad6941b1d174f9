"""The benchmark harness: every benchmark runs end to end at a tiny size (no timing is
asserted: benchmarks are not tests), and the pure pieces they report with are right on
hand-made cases."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bench import report
from bench.controller_scale import handoff_latencies, percentile
from bench.dedupe import _pack_dedupe, all_pairs, fit_quadratic, greedy_drops, planted_recall, precision_recall
from bench.instructions import Planted, generate
from bench.step_cache import executed_steps
from bench.train_throughput import make_rows, padding_fraction

# Token sets: 1 is 0 with other case and punctuation; 2 adds a word to 0 (J 7/8); 5 adds one to
# 3 (J 6/7); 6 is 3 reordered (J 1); 4 changes one word of 3 (J 5/7, below 0.8).
TEXTS = [
    "Explain the water cycle in simple words",
    "explain the WATER cycle, in simple words!",
    "Explain the water cycle in very simple words",
    "Describe a mountain river at night",
    "Describe a mountain river at dawn",
    "Describe a mountain river at night today",
    "night at river mountain a describe",
]


def bench(module: str, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=timeout,
                          env=report.python_env(), cwd=report.REPO)


def ran(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


# --- dedupe: the truth, the scores, the data ---------------------------------------------------------


def test_all_pairs_and_greedy_drops_on_a_hand_made_set():
    pairs = all_pairs(TEXTS, 0.8)
    assert pairs == [(0, 1), (0, 2), (1, 2), (3, 5), (3, 6), (5, 6)]
    assert greedy_drops(len(TEXTS), pairs) == {1: 0, 2: 0, 5: 3, 6: 3}
    # A row similar only to a dropped row is kept: 2 ~ 1 only, and 1 was dropped for 0.
    assert greedy_drops(3, [(0, 1), (1, 2)]) == {1: 0}


def test_pack_dedupe_matches_the_exact_truth_on_the_hand_made_set(tmp_path):
    data = tmp_path / "rows.txt"
    data.write_text("".join(t + "\n" for t in TEXTS), encoding="utf-8")
    dropped, _, rows = _pack_dedupe(data, 0.8)  # streamed from the file, as the benchmark's child does
    assert rows == len(TEXTS)
    truth = greedy_drops(len(TEXTS), all_pairs(TEXTS, 0.8))
    scores = precision_recall(set(dropped), set(truth))
    assert (scores.precision, scores.recall, scores.true_positives) == (1.0, 1.0, 4)


def test_precision_and_recall_count_rows():
    s = precision_recall({1, 2, 4}, {1, 2, 5, 6})
    assert (s.true_positives, s.predicted, s.actual) == (2, 3, 4)
    assert s.precision == pytest.approx(2 / 3) and s.recall == pytest.approx(0.5)
    assert precision_recall(set(), set()).precision == precision_recall(set(), set()).recall == 1.0
    assert precision_recall(set(), {3}).recall == 0.0


def test_planted_recall_by_band():
    planted = [
        Planted(10, 0, "exact", 1.0), Planted(11, 0, "edit", 0.95), Planted(12, 0, "edit", 0.85),
        Planted(13, 0, "swap", 0.82), Planted(14, 0, "delete", 0.7), Planted(15, 0, "insert", 0.5),
    ]
    out = planted_recall(planted, {10, 11, 12, 14}, 0.8)
    assert out["exact"] == 1.0 and out["0.9-1.0"] == 1.0 and out["0.8-0.9"] == 0.5
    assert out["all"] == 0.75 and out["belowDropped"] == 0.5


def test_planted_duplicates_have_the_jaccard_they_claim():
    from jobs.pack.dedupe import jaccard, normalize

    ds = generate(3000, seed=3)
    assert len(ds.texts) == 3000
    assert 0.08 < len(ds.planted) / 3000 < 0.16
    for p in ds.planted:
        assert p.source < p.row
        assert jaccard(ds.texts[p.row], ds.texts[p.source]) == pytest.approx(p.jaccard)
        if p.kind == "exact":
            assert normalize(ds.texts[p.row]) == normalize(ds.texts[p.source])
            assert ds.texts[p.row] != ds.texts[p.source]
    levels = [p.jaccard for p in ds.planted if p.kind != "exact"]
    assert min(levels) < 0.7 and any(0.8 <= j < 0.9 for j in levels) and max(levels) > 0.9
    assert generate(500, seed=3).texts == generate(500, seed=3).texts


def test_quadratic_fit():
    assert fit_quadratic([(10, 2.0), (20, 8.0)]) == pytest.approx(0.02)


def test_dedupe_benchmark_runs_and_reports(tmp_path):
    doc = tmp_path / "b.md"
    ran(bench("bench.dedupe", "--sizes", "600", "--naive-sizes", "300,600", "--profile", "--doc", str(doc)))
    text = doc.read_text()
    assert text.startswith("# Benchmarks")
    assert "## Near-duplicate dedupe (pack)" in text
    assert "`python -m bench.dedupe --sizes 600 --naive-sizes 300,600 --profile`" in text
    assert "recall on 600 rows vs exact all-pairs: goal >= 0.99" in text
    row = next(line for line in text.splitlines() if line.startswith("| 600 |"))
    assert "extrapolated" not in row  # all-pairs was measured at 600 rows
    assert "Profile of the pack dedupe" in text


# --- the other benchmarks, end to end at tiny sizes ------------------------------------------------


def test_pack_scale_benchmark_packs_every_source_and_reports(tmp_path):
    doc = tmp_path / "b.md"
    ran(bench("bench.pack_scale", "--rows", "500", "--doc", str(doc)))
    text = doc.read_text()
    assert "## Pack on mixed formats" in text and "`python -m bench.pack_scale --rows 500`" in text
    row = next(line for line in text.splitlines() if line.startswith("| 500 |"))
    assert "openai_chat, sharegpt, alpaca, json, csv" in row  # two of them detected


def test_eval_cache_benchmark_makes_no_model_calls_on_the_rerun(tmp_path):
    doc = tmp_path / "b.md"
    ran(bench("bench.eval_cache", "--items", "20", "--latency", "0.01", "--doc", str(doc)))
    text = doc.read_text()
    assert "## Eval answer cache" in text
    assert "model calls on the cached rerun: goal 0, measured 0: met" in text
    assert "| uncached | " in text and "| 20 | 0 |" in text  # 20 calls, no cache hit on the first run


def test_step_cache_benchmark_executes_nothing_the_second_time(tmp_path):
    doc = tmp_path / "b.md"
    ran(bench("bench.step_cache", "--quick", "--doc", str(doc)))
    text = doc.read_text()
    assert "steps executed by the second run: goal 0, measured 0: met" in text
    assert "| first run |" in text and "| pack |" in text


def test_executed_steps_parsing():
    assert executed_steps("...\nsteps executed: pack, train; wall time 3.0s\n") == ["pack", "train"]
    assert executed_steps("steps executed: none; wall time 1.0s") == []
    with pytest.raises(RuntimeError, match="no 'steps executed' line"):
        executed_steps("boom")


def test_store_benchmark_round_trips_through_moto(tmp_path):
    doc = tmp_path / "b.md"
    ran(bench("bench.store", "--size-mib", "8", "--doc", str(doc)))
    text = doc.read_text()
    for side in ("single PUT", "store put", "store get", "single GET", "sha256"):
        assert f"| {side} |" in text
    assert "MB/s" in text


def test_controller_scale_benchmark_finishes_its_runs(tmp_path):
    doc = tmp_path / "b.md"
    ran(bench("bench.controller_scale", "--runs", "2", "--run-pods", "--timeout", "240", "--doc", str(doc)))
    text = doc.read_text()
    assert "| runs Succeeded / Failed / unfinished | 2 / 0 / 0 |" in text
    assert "| Jobs created | 10 |" in text
    assert "(8 hand-offs)" in text


def test_controller_scale_paces_jobs(tmp_path):
    doc = tmp_path / "b.md"
    ran(bench("bench.controller_scale", "--runs", "2", "--job-seconds", "2", "--timeout", "240", "--doc", str(doc)))
    text = doc.read_text()
    assert "| runs Succeeded / Failed / unfinished | 2 / 0 / 0 |" in text
    assert "each after running 1 to 3 s" in text
    wall = float(text.split("| total wall time (first create to last run finished) | ")[1].split(" s |")[0])
    assert wall >= 5 * 1  # five steps, none finishing in under a second


def test_percentile_and_handoffs():
    assert percentile([5, 1, 3, 2, 4], 50) == 3
    assert percentile(list(range(1, 101)), 99) == 99
    created = {"r-eval": 0.0, "r-pack": 1.5, "r-train": 4.0, "s-eval": 0.0}
    succeeded = {"r-eval": 1.0, "r-pack": 3.0, "s-eval": 2.0}  # s never got its next Job
    assert sorted(handoff_latencies(succeeded, created, ["eval", "pack", "train"])) == [0.5, 1.0]


def test_training_rows_spread_and_padding_fraction():
    rows = make_rows(300)
    lengths = [len(r["messages"][1]["content"].split()) for r in rows]
    assert max(lengths) > 8 * min(lengths) and len({r["id"] for r in rows}) == 300
    assert padding_fraction(100, 75) == 0.25 and padding_fraction(0, 0) == 0.0


def test_train_throughput_benchmark_runs(tmp_path, tiny_llama):
    # A tiny random model: the smoke test proves the harness, `make bench` measures SmolLM2.
    doc = tmp_path / "b.md"
    ran(bench("bench.train_throughput", "--steps", "1", "--rows", "120", "--model-dir", str(tiny_llama),
              "--doc", str(doc), timeout=900))
    text = doc.read_text()
    for side in ("train step", "TRL defaults", "TRL defaults, no checkpointing", "the same, length-grouped batches"):
        assert f"| {side} | 1 |" in text


def test_grpo_step_benchmark_runs_both_sides(tmp_path, tiny_llama):
    doc = tmp_path / "b.md"
    ran(bench("bench.grpo_step", "--steps", "1", "--rows", "20", "--model-dir", str(tiny_llama), "--doc", str(doc), timeout=900))
    text = doc.read_text()
    assert "| train step | 1 |" in text and "| plain TRL GRPOTrainer | 1 |" in text


# --- the shared report --------------------------------------------------------------------------------


def test_publish_appends_sections_under_one_header(tmp_path):
    doc = tmp_path / "b.md"
    section = report.Section("Thing", ["a", "b"], [[1, "x"]], "It means little.",
                             goals=[report.Goal("speed", ">= 2x", "3.0x", True)], notes=["A note."])
    report.publish(section, "python -m bench.thing", doc)
    report.publish(section, "python -m bench.thing --quick", doc)
    text = doc.read_text()
    assert text.count("# Benchmarks\n") == 1 and text.count("## Thing") == 2
    assert "| a | b |\n|---|---|\n| 1 | x |\n" in text
    assert "`python -m bench.thing --quick`" in text and "cores" in text and "GiB RAM" in text
    assert "- speed: goal >= 2x, measured 3.0x: met" in text


def test_command_line_leaves_out_where_the_figures_went():
    assert report.command_line("bench.x", ["--quick", "--doc", "/tmp/b.md"]) == "python -m bench.x --quick"
    assert report.command_line("bench.x", ["--no-doc", "--runs", "3"]) == "python -m bench.x --runs 3"


def test_child_peak_rss_is_its_own_not_the_parents():
    ballast = bytearray(400 * report.MiB)  # a large parent: a forked child's ru_maxrss would report it
    ballast[:: 4096] = b"\x01" * (len(ballast) // 4096)
    child = report.run_child([sys.executable, "-c", "b = bytearray(60 * 2**20); b[::4096] = b'\\x01' * (len(b) // 4096)"])
    assert child.returncode == 0
    assert 60 * report.MiB < child.peak_rss < 200 * report.MiB
    del ballast


def test_all_rejects_an_unknown_benchmark():
    proc = bench("bench.all", "--only", "dedupe,nope", "--no-doc")
    assert proc.returncode == 2 and "unknown benchmark(s) nope" in proc.stderr
