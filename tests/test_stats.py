"""The one summary of a sample (`stats.summary`) and the three reports built on it."""

import numpy as np
import pytest

from vitpose_trt.agreement import Stats
from vitpose_trt.bench.measure import summarize
from vitpose_trt.evaluate import keypoint_distances
from vitpose_trt.stats import KEYS, summary


def test_summary_of_known_values_equals_numpy():
    x = np.random.default_rng(0).gamma(2.0, 3.0, size=1001)
    s = summary(x)
    assert tuple(s) == KEYS and s["n"] == 1001
    assert s["median"] == np.percentile(x, 50) and s["p90"] == np.percentile(x, 90)
    assert s["p99"] == np.percentile(x, 99) and s["mean"] == x.mean()
    assert s["min"] == x.min() and s["max"] == x.max()
    assert summary(iter([2.0, 4.0])) == summary(np.array([[2.0], [4.0]]))  # any iterable, any shape


def test_summary_of_nothing_is_none_and_nan_counts_as_inf():
    assert summary([]) == {key: (0 if key == "n" else None) for key in KEYS}
    s = summary([1.0, 2.0, np.nan])
    assert s["n"] == 3 and s["median"] == 2.0 and s["max"] == np.inf and s["mean"] == np.inf
    assert s["p90"] == s["p99"] == np.inf  # numpy's own interpolation would give NaN here
    assert summary([1.0, 2.0, 3.0, np.inf])["median"] == 2.5
    assert summary([np.nan, np.nan])["median"] == np.inf


def test_the_three_reports_keep_their_keys_and_share_the_rules():
    assert summarize([]) == summary([]) and summarize([1.0, 3.0])["median"] == 2.0
    assert Stats.of(np.zeros(0)) == Stats(0, 0.0, 0.0, 0.0, 0.0)  # agreement's documented "all 0"
    st = Stats.of(np.array([1.0, np.nan, 2.0]))
    assert st.count == 3 and st.median == 2.0 and st.max == st.p99 == np.inf
    ref = np.zeros((1, 3, 3))
    ref[..., 2] = [0.9, 0.9, 0.1]
    other = ref.copy()
    other[0, 0, 0], other[0, 1, 0] = 3.0, np.nan
    d = keypoint_distances(ref, other, score_thr=0.3)
    assert list(d) == ["n", "score_thr", "median", "p90", "p99", "max"]
    assert d["n"] == 2 and d["score_thr"] == 0.3 and d["median"] == np.inf and d["max"] == np.inf
    assert keypoint_distances(ref, ref, score_thr=0.95)["median"] is None  # nothing measured
    with pytest.raises(ValueError, match="differ in shape"):
        keypoint_distances(ref, ref[:, :2])


def test_the_benchmark_disagreement_summarizes_the_same_way():
    from vitpose_trt.bench.reference import keypoint_disagreement

    ref = np.zeros((1, 3, 3))
    other = ref.copy()
    other[0, 0, 0], other[0, 1, 0] = 3.0, np.nan
    d = keypoint_disagreement(other, ref)
    assert d["median_px"] == 3.0 and d["max_px"] == np.inf  # distances 3, NaN (= inf), 0
    assert keypoint_disagreement(np.zeros((0, 17, 3)), np.zeros((0, 17, 3)))["median_px"] == 0.0
