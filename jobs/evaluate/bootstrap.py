"""Paired bootstrap confidence intervals for the test split's metrics and the gate's margins.

The test examples are resampled with replacement (the same resample for base and tuned, so the
intervals are of paired differences); each resample's metrics are recomputed from the
per-example rows as evaluate computes them: rates are means, loss is summed NLL over summed
reference tokens (one per example for a classifier), perplexity is exp(loss). F1 (macro) is not
a per-example statistic and gets no interval. The seed is fixed, so a report is reproducible.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from jobs.common.gate import Comparison, margin
from jobs.evaluate.metrics import GATE_NAMES

SEED = 0
RATE_COLUMNS = {"passRate": "passed", "exactMatch": "exactMatch", "tokenF1": "tokenF1", "accuracy": "correct"}


def resample_indices(n: int, samples: int, seed: int = SEED) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(samples, n))


def _resampled(rows: list[dict[str, Any]], idx: np.ndarray, measured: tuple[str, ...]) -> dict[str, np.ndarray]:
    """metrics.json key -> one value per resample."""
    out: dict[str, np.ndarray] = {}
    for key, column in RATE_COLUMNS.items():
        if key in measured:
            out[key] = np.array([float(r[column]) for r in rows])[idx].mean(axis=1)
    if "loss" in measured:
        scored = [r.get("nll") is not None for r in rows]
        nll = np.array([r["nll"] if ok else 0.0 for r, ok in zip(rows, scored)])
        tokens = np.array([r.get("tokens", 1) if ok else 0 for r, ok in zip(rows, scored)], dtype=float)
        if tokens.sum() > 0:
            with np.errstate(invalid="ignore", divide="ignore"):
                loss = nll[idx].sum(axis=1) / tokens[idx].sum(axis=1)  # nan where a resample drew no tokens
            out["loss"] = loss
            if "perplexity" in measured:
                out["perplexity"] = np.exp(np.minimum(loss, 700))
    return out


def resampled_gate_metrics(
    base_rows: list[dict[str, Any]], tuned_rows: list[dict[str, Any]], measured: tuple[str, ...], samples: int
) -> dict[str, np.ndarray]:
    """The gate's flat names (basePassRate, tunedLoss, ...) -> one value per paired resample."""
    idx = resample_indices(len(base_rows), samples)
    flat = {}
    for who, rows in (("base", base_rows), ("tuned", tuned_rows)):
        for key, values in _resampled(rows, idx, measured).items():
            flat[f"{who}{GATE_NAMES[key]}"] = values
    return flat


def interval(values: np.ndarray, level: float) -> tuple[float, float]:
    tail = (1 - level) / 2 * 100
    low, high = np.nanpercentile(values, [tail, 100 - tail])
    return round(float(low), 4), round(float(high), 4)


def delta_intervals(flat: dict[str, float], resampled: dict[str, np.ndarray], level: float) -> dict[str, dict[str, float]]:
    """metrics.json key -> tuned - base, with its interval at `level`."""
    out = {}
    for key, suffix in GATE_NAMES.items():
        b, t = f"base{suffix}", f"tuned{suffix}"
        if {b, t} <= resampled.keys() and {b, t} <= flat.keys():
            low, high = interval(resampled[t] - resampled[b], level)
            out[key] = {"delta": round(flat[t] - flat[b], 4), "low": low, "high": high}
    return out


def clause_bounds(comparison: Comparison, resampled: dict[str, np.ndarray], level: float) -> tuple[float, float]:
    """The interval of a gate clause's margin (left - right) over the resamples."""
    return interval(np.asarray(margin(comparison, resampled)), level)
