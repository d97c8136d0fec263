"""The TensorRT build tools without TensorRT: profile, verification metric and verdict, error paths.

TensorRT itself cannot run here (no GPU, no library): what is tested is everything around it. The FP16
graph the builder makes is tested in test_fp16.py, the engine sidecar in test_sidecar.py.
"""

from __future__ import annotations

import copy
import hashlib
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from build_engine import build
from build_engine.tensorrt_build import (
    EngineVerificationError,
    judge_verification,
    onnx_sha256,
    profile_shapes,
    verification_crops,
)
from vitpose_trt.agreement import compare_heatmaps
from vitpose_trt.coco import sample_dir
from vitpose_trt.engines import ModelInfo
from vitpose_trt.engines.sidecar import sidecar_path, write_sidecar
from vitpose_trt.engines.tensorrt import INSTALL_HINT, TensorRTEngine, TensorRTUnavailableError, tensorrt_available

REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------------------------
# model files


def test_onnx_sha256_is_the_file_hash(tiny_net_onnx):
    _, path = tiny_net_onnx
    assert onnx_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------------------------
# optimization profile


def test_profile_shapes():
    p = profile_shapes((256, 192))
    assert (p.min, p.opt, p.max) == ((1, 3, 256, 192), (8, 3, 256, 192), (64, 3, 256, 192))
    assert p.batch_range == {"min": 1, "opt": 8, "max": 64}


def test_profile_shapes_flip_test_doubles_opt_and_max():
    p = profile_shapes((256, 192), min_batch=1, opt_batch=8, max_batch=64, flip_test=True)
    assert p.batch_range == {"min": 1, "opt": 16, "max": 128}


def test_profile_shapes_clamps_opt_and_rejects_bad_ranges():
    assert profile_shapes((256, 192), opt_batch=8, max_batch=4).batch_range == {"min": 1, "opt": 4, "max": 4}
    assert profile_shapes((256, 192), min_batch=4, opt_batch=2, max_batch=8).batch_range["opt"] == 4
    with pytest.raises(ValueError, match="larger than max_batch"):
        profile_shapes((256, 192), min_batch=9, max_batch=8)
    with pytest.raises(ValueError, match=">= 1"):
        profile_shapes((256, 192), max_batch=0)


# --------------------------------------------------------------------------------------------
# the verification metric


def gaussian_heatmaps(centers: np.ndarray, size=(64, 48), sigma=2.0, peak=0.9) -> np.ndarray:
    """(N, K, 2) x, y centers -> (N, K, h, w) Gaussian heatmaps, as the training targets look."""
    h, w = size
    ys, xs = np.mgrid[0:h, 0:w]
    d2 = (xs - centers[..., 0, None, None]) ** 2 + (ys - centers[..., 1, None, None]) ** 2
    return (peak * np.exp(-d2 / (2 * sigma**2))).astype(np.float32)


def test_keypoint_disagreement_identical_is_zero():
    hm = gaussian_heatmaps(np.array([[[10.0, 20.0], [30.0, 40.0]]]))
    d = compare_heatmaps(hm, hm.copy())
    assert (d.heatmap_px.max, d.heatmap_px.mean, d.keypoints, d.max_abs) == (0.0, 0.0, 2, 0.0)


@pytest.mark.parametrize("mode", ["udp", "classic"])
def test_keypoint_disagreement_measures_shifts_in_heatmap_pixels(mode):
    centers = np.array([[[10.0, 20.0], [30.0, 40.0], [24.0, 12.0]]])
    shift = np.array([[[1.0, 0.0], [0.0, 2.0], [0.0, 0.0]]])
    d = compare_heatmaps(gaussian_heatmaps(centers), gaussian_heatmaps(centers + shift), mode)
    # integer shifts of a Gaussian: argmax moves exactly; DARK (udp) refines both to the center
    assert d.heatmap_px.max == pytest.approx(2.0, abs=0.02)
    assert d.heatmap_px.mean == pytest.approx(1.0, abs=0.02)


def test_keypoint_disagreement_subpixel_with_dark():
    centers = np.array([[[20.3, 30.0]]])
    d = compare_heatmaps(gaussian_heatmaps(centers), gaussian_heatmaps(centers + [[[0.25, 0.0]]]), "udp")
    assert d.heatmap_px.mean == pytest.approx(0.25, abs=0.03)  # DARK resolves what argmax cannot


def test_keypoint_disagreement_counts_only_clear_peaks():
    """The shared tie rule: a keypoint whose reference heatmap has two near-equal maxima (an
    occluded or left/right-confused joint) is not counted, however far its argmax jumps."""
    centers = np.array([[[10.0, 20.0], [20.0, 40.0]]])
    rival = gaussian_heatmaps(np.array([[[40.0, 40.0]]]))[0, 0]  # 20 px to the right
    ref = gaussian_heatmaps(centers)
    ref[0, 1] = np.maximum(ref[0, 1], 0.99 * rival)  # a tie
    cand = ref.copy()
    cand[0, 1] = np.maximum(0.99 * gaussian_heatmaps(centers)[0, 1], rival)  # it flips
    every = compare_heatmaps(ref, cand)
    assert every.max_heatmap_px_all == pytest.approx(20.0, abs=0.05) and every.flipped_ties == 1
    assert (every.counted, every.heatmap_px.max) == (1, 0.0)
    flat = np.full_like(ref, 0.5)
    assert compare_heatmaps(flat, flat + 0.1).counted == 0


def test_keypoint_disagreement_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="same"):
        compare_heatmaps(np.zeros((1, 2, 64, 48), np.float32), np.zeros((1, 3, 64, 48), np.float32))


# --------------------------------------------------------------------------------------------
# the verification verdict, fed right and deliberately wrong engines


@pytest.fixture(scope="module")
def fixture_verification(sample_model):
    """(real crops, the fixture model's FP32 heatmaps of them): a model with real peaks."""
    crops, _ = verification_crops((256, 192), "udp", max_crops=16, coco_dir=sample_dir())
    with torch.inference_mode():
        return crops, sample_model(torch.from_numpy(crops)).numpy()


def test_verification_passes_the_model_itself(fixture_verification):
    crops, reference = fixture_verification
    result = judge_verification(reference, reference.copy(), crops="16 real crops")
    assert result["enforced"] is True and result["metric"]["counted"] > 200  # of 272
    assert result["metric"]["heatmap_px"]["max"] == 0.0


def test_verification_fails_a_model_with_one_weight_off_by_one_percent(sample_model, fixture_verification):
    crops, reference = fixture_verification
    wrong = copy.deepcopy(sample_model)
    with torch.no_grad():
        wrong.keypoint_head.final_layer.weight.mul_(1.01)
        candidate = wrong(torch.from_numpy(crops)).numpy()
    with pytest.raises(EngineVerificationError, match="mean score difference") as err:
        judge_verification(reference, candidate, engine_name="wrong.engine")
    assert str(err.value).startswith("wrong.engine disagrees with the FP32 model over")
    assert "--no-verify" in str(err.value)


def test_verification_fails_a_one_pixel_shift(fixture_verification):
    _, reference = fixture_verification
    with pytest.raises(EngineVerificationError, match=r"mean distance 0\.9\d+ heatmap px > 0\.1"):
        judge_verification(reference, np.roll(reference, 1, axis=-1))


def test_verification_of_random_weights_judges_clear_peaks_only(tiny_model, fixture_verification):
    """Random weights: the tie rule picks the keypoints to judge (a quarter to a half of them), and
    on those a wrong engine fails as it would with real peaks."""
    crops, _ = fixture_verification
    with torch.inference_mode():
        reference = tiny_model(torch.from_numpy(crops)).numpy()
    result = judge_verification(reference, reference.copy(), random_weights=True)
    assert result["enforced"] is True and 0 < result["metric"]["counted"] < reference.shape[0] * 17
    assert result["random_weights"] is True
    with pytest.raises(EngineVerificationError, match="mean score difference"):
        judge_verification(reference, reference * 1.01, random_weights=True)
    with pytest.raises(EngineVerificationError, match="mean distance"):
        judge_verification(reference, np.roll(reference, 2, axis=-2), random_weights=True)


def test_build_time_verification_removes_a_wrong_engine(sample_model, fixture_verification, tmp_path,
                                                        monkeypatch):
    """`_verify` as `build` calls it, with a stand-in engine whose heatmaps are shifted one pixel."""
    import vitpose_trt.engines.tensorrt as trt_runtime
    from build_engine import tensorrt_build

    class ShiftedEngine:
        input_size, max_batch = (256, 192), 64

        def __init__(self, path):
            pass

        def run(self, crops):
            with torch.inference_mode():
                return np.roll(sample_model(torch.from_numpy(crops)).numpy(), 1, axis=-1)

        def close(self):
            pass

    monkeypatch.setattr(trt_runtime, "TensorRTEngine", ShiftedEngine)
    plan = tmp_path / "model.engine"
    plan.write_bytes(b"plan")
    write_sidecar(plan, {"variant": "vitpose-s"})
    src = tensorrt_build._Source(tmp_path / "model.onnx", ModelInfo(), tensorrt_build._torch_reference(sample_model),
                                 "PyTorch FP32", None)
    monkeypatch.setattr(tensorrt_build, "VERIFY_MAX_CROPS", 8)
    with pytest.raises(EngineVerificationError, match=r"mean distance .* were removed"):
        tensorrt_build._verify(plan, src, mode="udp", flip_test=False)
    assert not plan.exists() and not sidecar_path(plan).exists()


def test_verification_crops_real_and_synthetic(coco_sample, tmp_path):
    crops, where = verification_crops((256, 192), "udp", max_crops=8, coco_dir=sample_dir())
    assert crops.shape == (8, 3, 256, 192) and crops.dtype == np.float32 and "COCO sample" in where
    flipped, _ = verification_crops((256, 192), "udp", flip_test=True, max_crops=8, coco_dir=sample_dir())
    assert flipped.shape == (8, 3, 256, 192)
    np.testing.assert_array_equal(flipped[4:], flipped[:4, :, :, ::-1])
    synthetic, where = verification_crops((256, 192), max_crops=3, coco_dir=tmp_path)
    assert synthetic.shape == (3, 3, 256, 192) and "synthetic" in where


# --------------------------------------------------------------------------------------------
# without TensorRT


@pytest.fixture
def stub_only_tensorrt(monkeypatch):
    """What `tensorrt-stubs` without TensorRT looks like at run time: an importable, empty module."""
    monkeypatch.setitem(sys.modules, "tensorrt", types.ModuleType("tensorrt"))


def test_stubs_are_not_tensorrt(stub_only_tensorrt):
    assert tensorrt_available() is False


def test_build_without_tensorrt_says_how_to_install(stub_only_tensorrt, tmp_path, tiny_net_onnx):
    _, path = tiny_net_onnx
    with pytest.raises(TensorRTUnavailableError) as err:
        build(path, tmp_path / "model.engine")
    message = str(err.value)
    assert message == INSTALL_HINT
    assert "\n" not in message and "pip install tensorrt" in message
    assert not (tmp_path / "model.engine").exists()
    assert isinstance(err.value, ImportError)  # the CLI's generic handler catches it too


def test_engine_without_tensorrt_says_how_to_install(stub_only_tensorrt, tmp_path):
    plan = tmp_path / "model.engine"
    plan.write_bytes(b"not a plan")
    with pytest.raises(TensorRTUnavailableError, match="pip install tensorrt"):
        TensorRTEngine(plan)


def test_importing_the_package_does_not_import_tensorrt():
    code = ("import sys, vitpose_trt, vitpose_trt.engines, vitpose_trt.engines.tensorrt, build_engine.tensorrt_build; "
            "assert 'tensorrt' not in sys.modules, 'tensorrt was imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
