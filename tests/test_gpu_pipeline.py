"""The zero-copy GPU pipeline against the CPU reference pipeline (needs an NVIDIA GPU).

Random weights give flat, noisy heatmaps where two near-equal maxima can swap under FP16 rounding
(a real model's peaks are sharp). So locations are compared where the reference peak is unambiguous:
it beats every heatmap value more than 2 px away by more than `margin`. Scores are compared everywhere.
"""

import numpy as np
import pytest
import torch

from vitpose_trt import VitPoseTRT, postprocess, preprocess
from vitpose_trt.engines.torch_engine import TorchEngine

pytestmark = pytest.mark.requires_cuda


@pytest.fixture(scope="module")
def model_b():
    from vitpose_trt.checkpoint import build_random_model

    return build_random_model("b")


def gpu_engine(model, precision):
    """A CUDA engine on a copy: TorchEngine moves and casts the module it is given."""
    import copy

    return TorchEngine(copy.deepcopy(model), "cuda", precision)


def reference_with_heatmaps(model, frame, boxes, mode="udp"):
    crops, transforms = preprocess(frame, boxes, mode)
    with torch.inference_mode():
        hm = model(torch.from_numpy(crops)).numpy()
    return postprocess(hm, transforms, mode), hm


def unambiguous(hm: np.ndarray, margin: float) -> np.ndarray:
    n, k, h, w = hm.shape
    flat = hm.reshape(n, k, -1)
    best = flat.argmax(-1)
    ys, xs = np.divmod(np.arange(h * w), w)
    far = (np.abs(xs[None, None] - (best % w)[..., None]) > 2) | (np.abs(ys[None, None] - (best // w)[..., None]) > 2)
    runner_up = np.where(far, flat, -np.inf).max(-1)
    return flat.max(-1) - runner_up > margin


@pytest.mark.parametrize("precision,tol_px,margin", [("fp32", 0.01, 1e-3), ("fp16", 0.5, 5e-2)])
def test_gpu_pipeline_equals_cpu_reference_on_real_photos(model_b, coco_sample, precision, tol_px, margin):
    pose = VitPoseTRT(gpu_engine(model_b, precision))
    assert pose._gpu is not None, "the GPU path was not taken"
    checked = total = 0
    for _, frame, boxes in coco_sample:
        got = pose.infer(frame, boxes)
        ref, hm = reference_with_heatmaps(model_b, frame, boxes)
        np.testing.assert_allclose(got[..., 2], ref[..., 2], atol=1e-2)
        sure = unambiguous(hm, margin)
        np.testing.assert_allclose(got[sure][:, :2], ref[sure][:, :2], atol=tol_px)
        checked, total = checked + sure.sum(), total + sure.size
    assert checked > 0.3 * total, f"only {checked}/{total} keypoints had an unambiguous peak"


def test_only_results_come_back_to_the_host(model_b, coco_sample):
    from torch.profiler import ProfilerActivity, profile

    pose = VitPoseTRT(gpu_engine(model_b, "fp16"))
    _, frame, boxes = coco_sample[0]
    pose.infer(frame, boxes)  # warm-up: allocations happen here
    with profile(activities=[ProfilerActivity.CUDA, ProfilerActivity.CPU]) as prof:
        for _ in range(3):
            pose.infer(frame, boxes)
    dtoh = [e for e in prof.events() if "DtoH" in e.name or "Device -> Pinned" in e.name
            or "Device -> Pageable" in e.name]
    # exactly one device-to-host copy per frame: the (N, K, 3) keypoints; crops and heatmaps stay put
    assert len(dtoh) == 3, [e.name for e in dtoh]


def test_async_cuda_frames_and_chunking_agree(model_b, coco_sample):
    pose = VitPoseTRT(gpu_engine(model_b, "fp32"))
    (_, f0, b0), (_, f1, b1) = coco_sample[:2]
    want0, want1 = pose.infer(f0, b0), pose.infer(f1, b1)
    h0, h1 = pose.infer_async(f0, b0), pose.infer_async(f1, b1)  # two frames in flight
    np.testing.assert_array_equal(h1.result(), want1)
    np.testing.assert_array_equal(h0.result(), want0)
    on_gpu = torch.from_numpy(f0).cuda()
    np.testing.assert_allclose(pose.infer(on_gpu, b0), want0, atol=1e-4)
    pose.engine.max_batch = 5
    np.testing.assert_allclose(pose.infer(f0, b0), want0, atol=1e-3)


@pytest.mark.parametrize("mode", ["udp", "classic"])
def test_gpu_flip_test_equals_cpu_flip_test(model_b, coco_sample, mode):
    _, frame, boxes = coco_sample[2]
    gpu = VitPoseTRT(gpu_engine(model_b, "fp32"), mode=mode, flip_test=True).infer(frame, boxes)
    cpu = VitPoseTRT(TorchEngine(model_b, "cpu", "fp32"), mode=mode, flip_test=True, impl="numpy").infer(frame, boxes)
    np.testing.assert_allclose(gpu[..., 2], cpu[..., 2], atol=1e-3)
    close = np.abs(gpu[..., :2] - cpu[..., :2]).max(-1) < 0.05
    assert close.mean() > 0.9  # random weights: rare near-ties may pick another peak


def test_empty_boxes_on_gpu(model_b):
    pose = VitPoseTRT(gpu_engine(model_b, "fp16"))
    assert pose.infer(np.zeros((10, 10, 3), np.uint8), []).shape == (0, 17, 3)
