"""The shared tie rule and keypoint-disagreement metric (vitpose_trt.agreement).

The rule is checked against a loop-by-loop transcription of its definition on synthetic maps, on
the fixture model's real heatmaps (118 real detector boxes) and on random weights; the metric and
its tolerance are shown to pass an FP16 model and to fail a one-pixel shift and a 1% weight change.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from tests.conftest import synthetic_heatmaps
from vitpose_trt import agreement
from vitpose_trt.agreement import (
    TIE_FRACTION,
    Tolerance,
    clear_peaks,
    compare_heatmaps,
    compare_keypoints,
    compare_to_reference,
    peak_stats,
)


def _rule_by_loops(hm: np.ndarray, fraction: float = TIE_FRACTION) -> np.ndarray:
    """The module docstring's definition, one map at a time."""
    n, k, h, w = hm.shape
    out = np.zeros((n, k), bool)
    for i in range(n):
        for j in range(k):
            m = hm[i, j].astype(np.float64)
            py, px = np.unravel_index(np.argmax(m), m.shape)
            peak, background = m[py, px], np.median(m)
            ys, xs = np.mgrid[0:h, 0:w]
            far = m[(ys - py) ** 2 + (xs - px) ** 2 > 1.5**2]
            rival = far.max() if far.size else -np.inf
            out[i, j] = peak - background > 0 and peak - rival >= fraction * (peak - background)
    return out


def _run(model, crops: np.ndarray, chunk: int = 16) -> np.ndarray:
    with torch.inference_mode():
        return np.concatenate([model(torch.from_numpy(crops[i:i + chunk])).numpy()
                               for i in range(0, len(crops), chunk)])


@pytest.fixture(scope="module")
def detector_crops(coco_sample) -> np.ndarray:
    """The UDP crops of all 118 real detector boxes of the four sample photos."""
    from vitpose_trt import preprocess

    return np.concatenate([preprocess(frame, boxes[:, :4], "udp")[0] for _, frame, boxes in coco_sample])


@pytest.fixture(scope="module")
def fixture_heatmaps(sample_model, detector_crops) -> np.ndarray:
    return _run(sample_model, detector_crops)  # ~10 s on 2 cores


# --------------------------------------------------------------------------------------------
# the tie rule


def test_rule_keeps_clear_peaks_and_drops_ties_by_hand():
    hm = np.zeros((1, 4, 8, 8), np.float32)
    hm[0, :, 2, 2] = 1.0
    hm[0, 0, 6, 6] = 0.99  # a far rival within 5%: a tie
    hm[0, 1, 6, 6] = 0.90  # a far rival 10% below: clear
    hm[0, 2, 3, 3] = 0.999  # the peak's own diagonal neighbour (1.41 px) is not a rival
    hm[0, 3, 2, 4] = 0.999  # 2 px away is a rival
    assert clear_peaks(hm).tolist() == [[False, True, True, False]]
    assert clear_peaks(hm, fraction=0.2).tolist() == [[False, False, True, False]]
    flat = np.full((1, 1, 8, 8), 0.3, np.float32)
    nan = hm[:, :1].copy()
    nan[0, 0, 0, 0] = np.nan
    assert not clear_peaks(flat).any() and not clear_peaks(nan).any()  # no prominence; not finite
    with pytest.raises(ValueError, match="fraction"):
        clear_peaks(hm, fraction=1.5)
    with pytest.raises(ValueError, match=r"\(N, K, h, w\)"):
        clear_peaks(hm[0])


def test_rule_on_synthetic_heatmaps_matches_its_definition():
    hm = synthetic_heatmaps(6, seed=3)
    # plant exact ties on some keypoints: a copy of each peak 10 px away
    tied = hm.copy()
    for j in range(0, 17, 3):
        for i in range(6):
            y, x = np.unravel_index(np.argmax(hm[i, j]), hm.shape[2:])
            tied[i, j, y, (x + 10) % 48] = hm[i, j, y, x]
    for maps in (hm, tied):
        np.testing.assert_array_equal(clear_peaks(maps), _rule_by_loops(maps))
    assert clear_peaks(hm).mean() > 0.8  # one dominant Gaussian per map: nearly all clear
    assert not clear_peaks(tied)[:, ::3].any()  # every planted tie is dropped
    np.testing.assert_array_equal(clear_peaks(tied)[:, 1::3], clear_peaks(hm)[:, 1::3])


def test_rule_on_the_fixture_models_real_heatmaps(fixture_heatmaps):
    """Real peaks: most keypoints of the 118 detector boxes count. The fixture README counts
    1,020 of 2,006 clear by >= 20% of the peak; this rule gives 1,019 there (prominence = peak -
    median, the median being ~1e-4) and 1,770 at its 5%."""
    n, k = fixture_heatmaps.shape[:2]
    assert n * k == 2006
    counted = clear_peaks(fixture_heatmaps)
    assert 1700 <= counted.sum() <= 1850, counted.sum()
    assert abs(int(clear_peaks(fixture_heatmaps, fraction=0.2).sum()) - 1020) <= 20
    stats = peak_stats(fixture_heatmaps)
    assert 0.3 < np.median(stats["prominence"][counted]) < 1.5  # peaks of realistic height


def test_rule_on_random_weights_keeps_only_stable_keypoints(tiny_model, detector_crops):
    """Random weights: far fewer keypoints count than on real peaks, and the ones that count are
    the ones that survive half a grey level of input noise (the C++ crop's rounding difference)."""
    clean = _run(tiny_model, detector_crops)
    noise = np.random.default_rng(0).uniform(-0.5, 0.5, detector_crops.shape) / 255 / 0.226
    noisy = _run(tiny_model, (detector_crops + noise).astype(np.float32))
    counted = clear_peaks(clean)
    assert counted.mean() < 0.6  # measured 45% (the fixture model: 88%)
    assert clear_peaks(clean, fraction=0.2).mean() < 0.1  # measured 3.7% (the fixture: 51%)
    d = compare_heatmaps(clean, noisy)
    assert d.flipped_ties > 10  # the noise moves uncounted argmaxes across the map ...
    assert d.heatmap_px.max < 1.0 and d.counted == counted.sum()  # ... and no counted one


# --------------------------------------------------------------------------------------------
# the metric


def test_metric_statistics_by_hand():
    ref = np.zeros((1, 4, 3))
    ref[..., 2] = 1.0
    cand = ref.copy()
    cand[0, :, 0] = [0.0, 1.0, 2.0, 40.0]  # keypoint 3 is a tie that flipped far away
    cand[0, 1, 2] = 0.9
    counted = np.array([[True, True, True, False]])
    d = compare_keypoints(ref, cand, counted, np.full((1, 4), 2.0))
    assert (d.keypoints, d.counted, d.flipped_ties) == (4, 3, 1)
    assert (d.heatmap_px.mean, d.heatmap_px.median, d.heatmap_px.max) == (1.0, 1.0, 2.0)
    assert d.heatmap_px.p99 == pytest.approx(1.98)
    assert d.max_heatmap_px_all == 40.0 and d.frame_px is None
    assert d.score.max == pytest.approx(0.05)  # 0.1 / prominence 2
    cand[0, 0, 1] = np.nan
    assert compare_keypoints(ref, cand, counted, np.ones((1, 4))).heatmap_px.max == np.inf
    with pytest.raises(ValueError, match="N, K, 3"):
        compare_keypoints(ref, cand[:, :2], counted, np.ones((1, 4)))


@pytest.mark.parametrize("mode", ["udp", "classic"])
def test_frame_pixels_and_heatmap_pixels(mode):
    from vitpose_trt.geometry import boxes_to_transforms, heatmap_to_frame

    hm = synthetic_heatmaps(2, k=3, seed=5)
    transforms = boxes_to_transforms(np.array([[10.0, 20.0, 110.0, 220.0], [0.0, 0.0, 400.0, 300.0]]))
    coords = np.random.default_rng(1).uniform(2, 40, (2, 3, 2))
    ref = np.concatenate([heatmap_to_frame(coords, transforms, (64, 48), mode), np.ones((2, 3, 1))], -1)
    cand = ref.copy()
    cand[..., :2] = heatmap_to_frame(coords + [1.0, 0.0], transforms, (64, 48), mode)  # one heatmap px right
    d = compare_to_reference(cand, ref, hm, transforms, mode)
    assert d.counted == clear_peaks(hm).sum() > 0
    assert d.heatmap_px.max == pytest.approx(1.0)
    assert d.heatmap_px.mean == pytest.approx(1.0)
    steps = transforms[:, 2] / (47.0 if mode == "udp" else 48.0)  # frame px per heatmap px along x
    assert d.frame_px.max == pytest.approx(steps[clear_peaks(hm).any(axis=1)].max())
    with pytest.raises(ValueError, match="do not match"):
        compare_to_reference(cand[:1], ref, hm, transforms, mode)


def test_identical_heatmaps_agree_exactly(fixture_heatmaps):
    d = compare_heatmaps(fixture_heatmaps[:16], fixture_heatmaps[:16].copy())
    assert d.heatmap_px.max == 0.0 and d.score.max == 0.0 and d.max_abs == 0.0
    assert Tolerance().violations(d) == []


def test_a_one_pixel_shift_trips_the_tolerance(fixture_heatmaps):
    hm = fixture_heatmaps[:32]
    shifted = np.roll(hm, 1, axis=-1)  # every heatmap one pixel to the right
    d = compare_heatmaps(hm, shifted)
    assert d.heatmap_px.median == pytest.approx(1.0, abs=0.01)
    problems = Tolerance().violations(d)
    assert any("mean distance" in p for p in problems) and any("p99 distance" in p for p in problems)


def test_a_one_percent_weight_change_trips_the_tolerance(sample_model, detector_crops, fixture_heatmaps):
    wrong = copy.deepcopy(sample_model)
    with torch.no_grad():
        wrong.keypoint_head.final_layer.weight.mul_(1.01)  # one weight tensor 1% off
    d = compare_heatmaps(fixture_heatmaps[:16], _run(wrong, detector_crops[:16]))
    assert d.heatmap_px.mean < Tolerance().mean_px  # positions barely move ...
    problems = Tolerance().violations(d)
    assert len(problems) == 1 and "mean score difference" in problems[0]  # ... the peak heights do


def test_no_counted_keypoint_is_not_judged():
    flat = np.full((2, 3, 8, 8), 0.5, np.float32)
    d = compare_heatmaps(flat, np.roll(flat, 1, axis=-1))
    assert d.counted == 0 and Tolerance().violations(d) == []
    assert compare_heatmaps(flat[:0], flat[:0]).keypoints == 0
    with pytest.raises(ValueError, match="same"):
        compare_heatmaps(flat, flat[:, :2])


@pytest.mark.slow  # ~20 s: ONNX export of ViTPose-S, FP16 conversion, ONNX Runtime on 32 crops
def test_fp16_model_is_within_tolerance(sample_model, detector_crops, fixture_heatmaps, tmp_path):
    """The passing side of the tolerance: the FP16 graph the TensorRT builder uses (LayerNorm in
    FP32), run by ONNX Runtime on the CPU, against FP32 PyTorch."""
    pytest.importorskip("onnxconverter_common")
    import onnxruntime as ort

    from build_engine.fp16 import convert_to_fp16
    from vitpose_trt.export import export_onnx, save_onnx

    fp32 = export_onnx(sample_model, tmp_path / "fixture.onnx", check=False).path
    fp16 = save_onnx(convert_to_fp16(fp32).model, tmp_path / "fixture.fp16.onnx")
    session = ort.InferenceSession(str(fp16), providers=["CPUExecutionProvider"])
    out = session.run(None, {session.get_inputs()[0].name: detector_crops[:32].astype(np.float16)})[0]
    d = compare_heatmaps(fixture_heatmaps[:32], out.astype(np.float32))
    assert d.counted > 400
    assert Tolerance().violations(d) == [], d


def test_public_names():
    assert set(agreement.__all__) <= set(dir(agreement))
