"""Summary statistics of a sample: the one place they are computed.

`summary(values)` is what the benchmark's latencies (`bench.measure.summarize`), the evaluation's
keypoint distances (`evaluate.keypoint_distances`) and the drift of a fast path from its
reference (`agreement.Stats`) report, each with the keys or fields it always had.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

# The keys of `summary`, in the order it gives them.
KEYS = ("median", "p90", "p99", "mean", "min", "max", "n")


def summary(values: Iterable[float] | np.ndarray) -> dict[str, float | int | None]:
    """Median, p90, p99, mean, min, max and n (the count) of `values` (any shape: flattened).

    Percentiles interpolate linearly between the two nearest values (numpy's default method).
    The two rules, the same for every caller:
        empty: n = 0 and None for every statistic (nothing has a typical value);
        NaN: counted as +inf: a NaN latency or distance is infinitely bad, never "no error" (it
            shows in the max, the mean and the percentiles it reaches instead of vanishing).
    Percentiles that reach +inf are +inf (numpy's interpolation would give NaN there).
    """
    v = np.asarray(values if isinstance(values, np.ndarray) else list(values), dtype=np.float64).ravel()
    if v.size == 0:
        return {key: (0 if key == "n" else None) for key in KEYS}
    v = np.where(np.isnan(v), np.inf, v)
    p50, p90, p99 = _percentiles(v, (50.0, 90.0, 99.0))
    return {"median": p50, "p90": p90, "p99": p99, "mean": float(v.mean()), "min": float(v.min()),
            "max": float(v.max()), "n": int(v.size)}


def _percentiles(v: np.ndarray, qs: tuple[float, ...]) -> list[float]:
    """numpy's linear percentiles of NaN-free `v`; exact numpy where every value is finite."""
    if np.isfinite(v).all():
        return [float(p) for p in np.percentile(v, qs)]
    s = np.sort(v)
    out = []
    for q in qs:
        pos = q / 100.0 * (len(s) - 1)
        lo, hi = int(np.floor(pos)), int(np.ceil(pos))
        a, b, t = s[lo], s[hi], pos - lo
        out.append(float(a if t == 0 or a == b else a + (b - a) * t))  # inf - inf and inf * 0 never arise
    return out
