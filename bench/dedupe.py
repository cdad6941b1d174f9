"""Near-duplicate dedupe: the pack step's MinHash/LSH dedupe against naive all-pairs Jaccard.

    python -m bench.dedupe            # 10k, 100k, 1M, 10M rows; all-pairs on 10k and 20k
    python -m bench.dedupe --quick    # 10k, 100k rows; all-pairs on 2k and 4k

The data is bench.instructions' synthetic set (12% planted duplicates at known Jaccard).
Each side runs in its own child process, reading the rows from a file, so its time, CPU time
and peak RSS are its own; the pack side streams the rows from the file (twice: exact, then near
dedupe of the rest), as the dedupe reads them once, so its peak RSS is the dedupe's own. Both sides drop exact duplicates first (jobs.pack.dedupe.exact_duplicates)
and then near duplicates among the rest, keeping the earlier row, as the pack step does.
Precision and recall are of the dropped rows, against exact all-pairs token Jaccard on the
largest all-pairs size; pair recall is the share of all similar pairs that LSH proposed.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from bench import report
from bench.instructions import Dataset, Planted, generate

THRESHOLD = 0.8  # steps.pack.nearDupThreshold's default
GOAL_SECONDS_1M = 60.0
GOAL_SECONDS_10M = 300.0
GOAL_RSS_10M = 6 * 1024**3
GOAL_RECALL = 0.99
GOAL_PRECISION = 0.99
SEED = 7
# Larger sets are rotated copies of one this size (generating rows costs ~0.2 ms each under load).
GENERATED_MAX = 1_000_000
LOWER = "abcdefghijklmnopqrstuvwxyz"
UPPER = LOWER.upper()


# --- pure pieces (tested on hand-made cases) ----------------------------------------------------


@dataclass(frozen=True)
class Scores:
    precision: float
    recall: float
    true_positives: int
    predicted: int
    actual: int


def precision_recall(predicted: set[int], actual: set[int]) -> Scores:
    """Of the rows a method dropped (predicted) and the rows it should have dropped (actual)."""
    hits = len(predicted & actual)
    return Scores(
        precision=hits / len(predicted) if predicted else 1.0,
        recall=hits / len(actual) if actual else 1.0,
        true_positives=hits,
        predicted=len(predicted),
        actual=len(actual),
    )


def all_pairs(texts: Sequence[str], threshold: float) -> list[tuple[int, int]]:
    """Every pair (i, j), i < j, with token-set Jaccard >= threshold: the O(n^2) way a
    script would do it, with the pack step's tokenizer."""
    from jobs.pack.dedupe import tokens

    sets = [frozenset(tokens(t)) for t in texts]
    pairs = []
    for j, b in enumerate(sets):
        nb = len(b)
        for i in range(j):
            a = sets[i]
            inter = len(a & b)
            if inter and inter >= threshold * (len(a) + nb - inter):
                pairs.append((i, j))
    return pairs


def greedy_drops(n: int, pairs: Sequence[tuple[int, int]]) -> dict[int, int]:
    """dropped row -> kept row: rows in order, a row is dropped when it is similar to an
    earlier row that was kept (the pack step's rule)."""
    earlier: dict[int, list[int]] = {}
    for i, j in pairs:
        earlier.setdefault(j, []).append(i)
    dropped: dict[int, int] = {}
    for j in range(n):
        keeper = next((i for i in sorted(earlier.get(j, ())) if i not in dropped), None)
        if keeper is not None:
            dropped[j] = keeper
    return dropped


def planted_recall(planted: Sequence[Planted], dropped: set[int], threshold: float) -> dict[str, Any]:
    """Share of the planted rows at or above the threshold that were dropped, overall and by band."""
    bands = {"exact": (1.0, 1.01), "0.9-1.0": (0.9, 1.0), "0.8-0.9": (threshold, 0.9)}
    out: dict[str, Any] = {}
    for name, (lo, hi) in bands.items():
        rows = [p.row for p in planted if lo <= p.jaccard < hi and (name == "exact") == (p.kind == "exact")]
        out[name] = sum(r in dropped for r in rows) / len(rows) if rows else None
    above = [p.row for p in planted if p.jaccard >= threshold]
    below = [p.row for p in planted if p.jaccard < threshold]
    out["all"] = sum(r in dropped for r in above) / len(above) if above else None
    out["belowDropped"] = sum(r in dropped for r in below) / len(below) if below else None
    return out


def fit_quadratic(points: Sequence[tuple[int, float]]) -> float:
    """c in t = c * n^2, least squares through the origin."""
    return sum(t * n * n for n, t in points) / sum(float(n) ** 4 for n, _ in points)


# --- the two sides, each in a child process --------------------------------------------------------


def _read(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").split("\n")[:-1]


def _stream(path: Path, skip: set[int] | None = None) -> Iterator[str]:
    """The rows of the file, one at a time, less those in `skip`."""
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f):
            if not skip or i not in skip:
                yield line[:-1]



def _rss_now() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def _pack_dedupe(data: Path, threshold: float) -> tuple[dict[int, int], Any, int]:
    import numpy as np

    from jobs.pack.dedupe import exact_duplicates, near_duplicates

    exact = exact_duplicates(_stream(data))
    near = near_duplicates(_stream(data, set(exact)), threshold)
    rows = near.rows + len(exact)
    survivors = np.setdiff1d(np.arange(rows), np.fromiter(exact, dtype=np.int64, count=len(exact)))
    dropped = dict(exact)
    dropped.update({int(survivors[j]): int(survivors[i]) for j, (i, _) in near.duplicate_of.items()})
    return dropped, near, rows


def _naive_dedupe(texts: list[str], threshold: float) -> tuple[dict[int, int], int]:
    from jobs.pack.dedupe import exact_duplicates

    exact = exact_duplicates(texts)
    survivors = [i for i in range(len(texts)) if i not in exact]
    pairs = all_pairs([texts[i] for i in survivors], threshold)
    dropped = dict(exact)
    near = greedy_drops(len(survivors), pairs)
    dropped.update({survivors[j]: survivors[i] for j, i in near.items()})
    return dropped, len(pairs)


def _profile_lines(profile: cProfile.Profile, top: int = 14) -> list[str]:
    buf = io.StringIO()
    pstats.Stats(profile, stream=buf).sort_stats("tottime").print_stats(top)
    lines = [ln.rstrip() for ln in buf.getvalue().splitlines()]
    start = next(i for i, ln in enumerate(lines) if ln.lstrip().startswith("ncalls"))
    return [ln for ln in lines[start:] if ln.strip()]


def child(argv: Sequence[str]) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("side", choices=["pack", "naive"])
    p.add_argument("data", type=Path)
    p.add_argument("--threshold", type=float, default=THRESHOLD)
    p.add_argument("--rows-out", action="store_true", help="include the dropped rows")
    p.add_argument("--profile", action="store_true")
    args = p.parse_args(argv)
    texts = _read(args.data) if args.side == "naive" else None
    planted = [Planted(**row) for row in json.loads(args.data.with_suffix(".planted.json").read_text())]
    if args.side == "pack":
        import datasketch  # noqa: F401  # imported once per process by the step; not what is measured

    loaded = _rss_now()
    profile = cProfile.Profile() if args.profile else None
    started, cpu = time.perf_counter(), report.cpu_seconds()
    if profile:
        profile.enable()
    if args.side == "pack":
        dropped, near, rows = _pack_dedupe(args.data, args.threshold)
        extra = {"candidatePairs": near.candidate_pairs, "similarPairs": near.similar_pairs}
    else:
        dropped, similar = _naive_dedupe(texts, args.threshold)
        rows = len(texts)
        extra = {"similarPairs": similar}
    seconds = time.perf_counter() - started
    extra["cpuSeconds"] = report.cpu_seconds() - cpu
    if profile:
        profile.disable()
        extra["profile"] = _profile_lines(profile)
    report.emit_result({
        "seconds": seconds,
        "rows": rows,
        "dropped": len(dropped),
        "loadedRss": loaded,
        "peakRss": report.self_peak_rss(),
        "planted": planted_recall(planted, set(dropped), args.threshold),
        "droppedRows": sorted(dropped) if args.rows_out else None,
        **extra,
    })


def write_dataset(ds: Dataset, path: Path, copies: int = 1) -> Path:
    """The rows, or `copies` copies of them, copy c with every letter rotated by c places: copies
    share no words, and each keeps its planted duplicates and their Jaccard (a rotation keeps word
    boundaries and case), so a large set costs one generation of a smaller one."""
    n = len(ds.texts)
    planted = []
    with open(path, "w", encoding="utf-8") as f:
        for c in range(copies):
            rotate = str.maketrans(LOWER + UPPER, LOWER[c:] + LOWER[:c] + UPPER[c:] + UPPER[:c])
            f.write("".join(t.translate(rotate) + "\n" for t in ds.texts))
            planted += [{**asdict(p), "row": p.row + c * n, "source": p.source + c * n} for p in ds.planted]
    path.with_suffix(".planted.json").write_text(json.dumps(planted))
    return path


def run_side(side: str, data: Path, *flags: str) -> dict[str, Any]:
    """One side in a child process of its own; what it reports about itself."""
    return report.run_python("bench.dedupe", "--child", side, str(data), *flags).result()


# --- the benchmark ------------------------------------------------------------------------------


def measure(sizes: Sequence[int], naive_sizes: Sequence[int], work: Path, profile: bool) -> dict[str, Any]:
    pack: dict[int, dict[str, Any]] = {}
    naive: dict[int, dict[str, Any]] = {}
    truth_n = max(naive_sizes)
    generated: dict[int, Dataset] = {}  # the last set generated, reused by the sizes copying it
    for n in sorted(set(sizes) | set(naive_sizes)):
        t0 = time.perf_counter()
        copies = -(-n // GENERATED_MAX)  # above GENERATED_MAX rows: rotated copies of a generated set
        base = n // copies
        if base not in generated:
            generated = {base: generate(base, seed=SEED)}
        data = write_dataset(generated[base], work / f"rows-{n}.txt", copies)
        print(f"dedupe: {n} rows generated in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
        flags = ["--rows-out"] if n == truth_n else []
        pack[n] = run_side("pack", data, *flags)
        print(f"dedupe: pack {n} rows {pack[n]['seconds']:.2f}s", file=sys.stderr)
        if n in naive_sizes:
            naive[n] = run_side("naive", data, *flags)
            print(f"dedupe: naive {n} rows {naive[n]['seconds']:.2f}s", file=sys.stderr)
    largest = max(sizes)
    profile_lines = None
    if profile:
        profile_lines = run_side("pack", work / f"rows-{largest}.txt", "--profile")["profile"]
    truth = set(naive[truth_n]["droppedRows"])
    scores = precision_recall(set(pack[truth_n]["droppedRows"]), truth)
    true_pairs = naive[truth_n]["similarPairs"]
    pair_recall = pack[truth_n]["similarPairs"] / true_pairs if true_pairs else 1.0
    return {"pack": pack, "naive": naive, "truthRows": truth_n, "scores": scores, "pairRecall": pair_recall,
            "profile": profile_lines}


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def build_section(m: dict[str, Any]) -> report.Section:
    pack, naive = m["pack"], m["naive"]
    c = fit_quadratic([(n, r["seconds"]) for n, r in naive.items()])
    rows = []
    for n in sorted(pack):
        r = pack[n]
        if n in naive:
            naive_s, naive_t, naive_rss = naive[n]["seconds"], report.fmt_s(naive[n]["seconds"]), report.fmt_mib(naive[n]["peakRss"])
        else:
            naive_s, naive_rss = c * n * n, "-"
            naive_t = f"~{report.fmt_s(naive_s)} (extrapolated n²)"
        speedup = naive_s / r["seconds"]
        rows.append([
            f"{n:,}", report.fmt_s(r["seconds"]), report.fmt_s(r["cpuSeconds"]), report.fmt_mib(r["peakRss"]),
            report.fmt_mib(r["loadedRss"]),
            naive_t, naive_rss, report.fmt_x(speedup), f"{r['dropped']:,}", f"{r['candidatePairs']:,}",
            _pct(r["planted"]["all"]),
        ])
    largest = max(pack)
    s: Scores = m["scores"]
    big = pack[largest]
    goals = []
    if 1_000_000 in pack:
        one_m = pack[1_000_000]
        goals.append(report.Goal("1M rows", f"<= {GOAL_SECONDS_1M:.0f} s", report.fmt_s(one_m["seconds"]),
                                 one_m["seconds"] <= GOAL_SECONDS_1M))
    if largest >= 10_000_000:
        goals += [
            report.Goal(f"{largest:,} rows, wall time", f"<= {GOAL_SECONDS_10M:.0f} s",
                        f"{report.fmt_s(big['seconds'])} ({report.fmt_s(big['cpuSeconds'])} CPU)",
                        big["seconds"] <= GOAL_SECONDS_10M),
            report.Goal(f"{largest:,} rows, peak RSS", f"<= {report.fmt_mib(GOAL_RSS_10M)}",
                        report.fmt_mib(big["peakRss"]), big["peakRss"] <= GOAL_RSS_10M),
        ]
    goals += [
        report.Goal(f"recall on {m['truthRows']:,} rows vs exact all-pairs", f">= {GOAL_RECALL}", f"{s.recall:.4f}", s.recall >= GOAL_RECALL),
        report.Goal(f"precision on {m['truthRows']:,} rows vs exact all-pairs", f">= {GOAL_PRECISION}", f"{s.precision:.4f}", s.precision >= GOAL_PRECISION),
    ]
    bands = big["planted"]
    notes = [
        f"Against exact all-pairs token Jaccard >= {THRESHOLD} on {m['truthRows']:,} rows: {s.true_positives:,} of "
        f"{s.actual:,} rows to drop were dropped ({s.predicted:,} dropped in all); LSH proposed "
        f"{m['pairRecall']:.4f} of all similar pairs.",
        f"Planted duplicates at {largest:,} rows, share dropped by true Jaccard: exact copies {_pct(bands['exact'])}, "
        f"0.9-1.0 {_pct(bands['0.9-1.0'])}, 0.8-0.9 {_pct(bands['0.8-0.9'])}; planted rows below {THRESHOLD} "
        f"dropped anyway: {_pct(bands['belowDropped'])}.",
        f"Naive all-pairs time fits t = {c:.3g} * n² s.",
    ]
    if m["profile"]:
        notes.append(f"Profile of the pack dedupe at {largest:,} rows (cProfile, by own time):\n\n"
                     + "\n".join("    " + ln for ln in m["profile"]))
    meaning = (
        f"The pack step's MinHash/LSH dedupe grows about linearly with rows while all-pairs grows with n², so "
        f"the gap widens from {report.fmt_x(naive[min(naive)]['seconds'] / pack[min(naive)]['seconds'])} at "
        f"{min(naive):,} rows to {'' if largest in naive else 'about '}"
        f"{report.fmt_x(c * largest**2 / big['seconds'])} at {largest:,}"
        f"{'' if largest in naive else ' (all-pairs extrapolated)'}; every pair it drops is verified with the exact Jaccard, so what it can lose is recall, "
        f"and here it finds {s.recall:.1%} of the rows exact all-pairs drops."
    )
    return report.Section(
        title="Near-duplicate dedupe (pack)",
        columns=["rows", "pack dedupe", "its CPU time", "peak RSS", "of which at start", "naive all-pairs", "naive peak RSS",
                 "speed-up", "dropped", "LSH candidate pairs", "planted recall"],
        rows=rows, meaning=meaning, goals=goals, notes=notes,
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--child"]:
        child(argv[1:])
        return 0
    p = argparse.ArgumentParser(prog="python -m bench.dedupe", description=__doc__.split("\n")[0])
    report.add_common_args(p)
    p.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], help="rows, comma-separated")
    p.add_argument("--naive-sizes", type=lambda s: [int(x) for x in s.split(",")])
    p.add_argument("--profile", action=argparse.BooleanOptionalAction, default=None,
                   help="run the largest size once more under cProfile (default: on without --quick)")
    args = p.parse_args(argv)
    sizes = args.sizes or ([10_000, 100_000] if args.quick else [10_000, 100_000, 1_000_000, 10_000_000])
    naive_sizes = args.naive_sizes or ([2_000, 4_000] if args.quick else [10_000, 20_000])
    where = report.machine()
    with tempfile.TemporaryDirectory(prefix="bench-dedupe-") as work:
        m = measure(sizes, naive_sizes, Path(work), not args.quick if args.profile is None else args.profile)
    report.publish(build_section(m), report.command_line("bench.dedupe", argv), report.doc_path(args), where)
    return 0


if __name__ == "__main__":
    sys.exit(main())
