"""The GPU path against the CPU path, on a real GPU (requires_cuda; the same orchestration runs in CI
on the CUDA stand-in: tests/test_gpu_path.py).

The reference is the CPU path with the C++ kernels (`impl="cpp"`): its crops are the CUDA kernel's
bit for bit whichever OpenCV is installed (both follow `_C.opencv_warp_coords()`; OpenCV 4.x's integer
arithmetic is the contract, tied to cv2.warpAffine in tests/test_kernels_cpu.py), so the FP32
comparison measures the engine and the decode alone, not an OpenCV version.

Accuracy runs on the fixture ViTPose-S (heatmap peaks ~1.0 on the sample photos' people), so the
tolerances below mean something; locations are compared where the reference peak is clear (it beats
every value more than 1.5 heatmap px away by >= 20% of the peak: about half of all keypoints of the
118 detector boxes, per the fixture's README). TF32 is off for the FP32 comparisons: with it,
cuBLAS/cuDNN round FP32 matmul inputs to 10 mantissa bits and the "FP32" path is not FP32.
"""

import copy

import numpy as np
import pytest
import torch

from vitpose_trt import VitPoseTRT, postprocess, preprocess
from vitpose_trt.engines.pytorch import PyTorchEngine, exact_fp32

pytestmark = pytest.mark.requires_cuda

# (heatmap px, score) tolerances. FP32: GPU vs CPU differ by summation order only (~1e-6 of the heatmap),
# which moves a DARK-refined peak by ~1e-4 px. FP16: heatmaps carry ~2^-11 relative rounding per op,
# measured by PyTorch's own FP16 vs FP32 drift at ~1e-3 of the peak; a quarter heatmap px bounds the
# resulting sub-pixel shift of a clear peak with ample room, 2e-2 its score.
TOLERANCES = {"fp32": (0.01, 1e-4), "fp16": (0.25, 2e-2)}
CLEAR = 0.2  # a peak is clear when it beats everything > 1.5 px away by 20% of its height


@pytest.fixture(autouse=True)
def no_tf32():
    with exact_fp32():
        yield


def gpu_engine(model, precision, **kw):
    """A CUDA engine on a copy: PyTorchEngine moves and casts the module it is given."""
    return PyTorchEngine(copy.deepcopy(model), "cuda", precision, **kw)


def reference(model, frame, boxes, mode="udp", flip=False):
    """Keypoints, heatmaps and transforms of the CPU path (C++ kernels) with the FP32 CPU model."""
    crops, transforms = preprocess(frame, boxes, mode, flip=flip, impl="cpp")
    with torch.inference_mode():
        hm = model(torch.from_numpy(crops)).numpy()
    n = len(transforms)
    return (postprocess(hm[:n], transforms, mode, flipped=hm[n:] if flip else None, impl="cpp"), hm[:n],
            transforms)


def clear_peaks(hm: np.ndarray, fraction: float = CLEAR) -> np.ndarray:
    n, k, h, w = hm.shape
    flat = hm.reshape(n, k, -1)
    best = flat.argmax(-1)
    ys, xs = np.divmod(np.arange(h * w), w)
    dist = np.hypot(xs[None, None] - (best % w)[..., None], ys[None, None] - (best // w)[..., None])
    runner_up = np.where(dist > 1.5, flat, -np.inf).max(-1)
    peak = flat.max(-1)
    return (peak > 0) & (peak - runner_up >= fraction * peak)


def heatmap_px(frame_px: np.ndarray, transforms: np.ndarray, heatmap_w: int = 48) -> np.ndarray:
    """Frame-pixel distances as heatmap pixels of each box (udp: box width / (W - 1) per px)."""
    return frame_px / (transforms[:, 2:3] / (heatmap_w - 1.0))


def compare(got, ref, hm, transforms, precision):
    tol_px, tol_score = TOLERANCES[precision]
    np.testing.assert_allclose(got[..., 2], ref[..., 2], atol=tol_score)
    clear = clear_peaks(hm)
    dist = heatmap_px(np.linalg.norm(got[..., :2] - ref[..., :2], axis=-1), transforms)
    assert dist[clear].max() <= tol_px, f"clear peaks moved by up to {dist[clear].max():.3g} heatmap px"
    return clear.sum(), clear.size


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_gpu_path_equals_cpu_reference_on_real_photos(sample_model, coco_sample, precision):
    pose = VitPoseTRT(gpu_engine(sample_model, precision))
    assert pose.stream is not None, "the GPU path was not taken"
    checked = total = 0
    for _, frame, boxes in coco_sample:
        got = pose.infer(frame, boxes)
        ref, hm, transforms = reference(sample_model, frame, boxes)
        c, t = compare(got, ref, hm, transforms, precision)
        checked, total = checked + c, total + t
    assert checked > 0.3 * total, f"only {checked}/{total} keypoints had a clear peak"


def test_the_comparison_catches_a_shifted_crop(sample_model, coco_sample):
    """The check above can fail: boxes shifted by 2 frame px before the GPU path are caught."""
    pose = VitPoseTRT(gpu_engine(sample_model, "fp32"))
    _, frame, boxes = coco_sample[0]
    shifted = boxes.copy()
    shifted[:, [0, 2]] += 2.0
    ref, hm, transforms = reference(sample_model, frame, boxes)
    with pytest.raises(AssertionError):
        compare(pose.infer(frame, shifted), ref, hm, transforms, "fp32")


def test_only_results_come_back_to_the_host(sample_model, coco_sample):
    from torch.profiler import ProfilerActivity, profile

    pose = VitPoseTRT(gpu_engine(sample_model, "fp16"))
    (_, frame, boxes), (_, other, other_boxes) = coco_sample[:2]
    pose.infer(frame, boxes)  # warm-up: allocations happen here
    pose.infer_many([frame, other], [boxes, other_boxes])
    with profile(activities=[ProfilerActivity.CUDA, ProfilerActivity.CPU]) as prof:
        for _ in range(3):
            pose.infer(frame, boxes)
        pose.infer_many([frame, other], [boxes, other_boxes])
    names = [e.name for e in prof.events()]
    dtoh = [n for n in names if "DtoH" in n or "Device -> Pinned" in n or "Device -> Pageable" in n]
    # exactly one device-to-host copy per call: the (N, K, 3) keypoints; crops and heatmaps stay put
    assert len(dtoh) == 4, dtoh
    # frames go up from pinned staging, asynchronously, for infer_many's several frames too
    assert not [n for n in names if "Pageable -> Device" in n], [n for n in names if "-> Device" in n]


def test_async_cuda_frames_chunking_and_many(sample_model, coco_sample):
    """Same batches give the same bits; other batch sizes change cuBLAS's summation order (~1e-6 of
    the heatmap), which may move a keypoint without a clear peak: those are compared on clear peaks."""
    pose = VitPoseTRT(gpu_engine(sample_model, "fp32"))
    (_, f0, b0), (_, f1, b1) = coco_sample[:2]
    _, hm0, t0 = reference(sample_model, f0, b0)
    want0, want1 = pose.infer(f0, b0), pose.infer(f1, b1)
    h0, h1 = pose.infer_async(f0, b0), pose.infer_async(f1, b1)  # two frames in flight
    np.testing.assert_array_equal(h1.result(), want1)
    np.testing.assert_array_equal(h0.result(), want0)
    on_gpu = torch.from_numpy(f0).cuda()
    np.testing.assert_array_equal(pose.infer(on_gpu, b0), want0)
    many = pose.infer_many([f0, f1, on_gpu], [b0, np.zeros((0, 4)), b0[:3]])
    compare(many[0], want0, hm0, t0, "fp32")
    assert many[1].shape == (0, 17, 3)
    compare(many[2], want0[:3], hm0[:3], t0[:3], "fp32")
    small = VitPoseTRT(gpu_engine(sample_model, "fp32", max_batch=5))
    compare(small.infer(f0, b0), want0, hm0, t0, "fp32")


def test_caller_may_overwrite_its_cuda_frame_right_after_infer_async(sample_model, coco_sample):
    """The caller's stream waits until the crops are cut: zeroing the frame right after the call
    (on the caller's stream, no sync) does not change the result."""
    pose = VitPoseTRT(gpu_engine(sample_model, "fp32"))
    _, frame, boxes = coco_sample[0]
    want = pose.infer(frame, boxes)
    for _ in range(3):
        dev = torch.from_numpy(frame).cuda()
        pending = pose.infer_async(dev, boxes)
        dev.zero_()
        np.testing.assert_allclose(pending.result(), want, atol=1e-3)


class _ForeignFrame:
    """A CUDA frame from another library: `__cuda_array_interface__` v3 naming its producer's stream."""

    def __init__(self, tensor: torch.Tensor, stream: torch.cuda.Stream) -> None:
        self.tensor, self.stream = tensor, stream

    @property
    def __cuda_array_interface__(self):
        cai = dict(self.tensor.__cuda_array_interface__)
        cai["stream"] = self.stream.cuda_stream
        return cai


def test_frames_from_another_stream_are_waited_for(sample_model, coco_sample):
    """A producer still writing the frame on its own stream (v3 'stream' key) is waited for."""
    pose = VitPoseTRT(gpu_engine(sample_model, "fp32"))
    _, frame, boxes = coco_sample[0]
    want = pose.infer(frame, boxes)
    producer = torch.cuda.Stream()
    host = torch.from_numpy(frame).pin_memory()
    for _ in range(3):
        with torch.cuda.stream(producer):
            dev = torch.empty_like(host, device="cuda")
            torch.cuda._sleep(50_000_000)  # keep the producer busy so an unsynchronized read sees garbage
            dev.copy_(host, non_blocking=True)
        got = pose.infer(_ForeignFrame(dev, producer), boxes)
        np.testing.assert_allclose(got, want, atol=1e-3)


@pytest.mark.parametrize("mode", ["udp", "classic"])
def test_gpu_flip_test_equals_cpu_flip_test(sample_model, coco_sample, mode):
    _, frame, boxes = coco_sample[2]
    gpu = VitPoseTRT(gpu_engine(sample_model, "fp32"), mode=mode, flip_test=True).infer(frame, boxes)
    ref, hm, transforms = reference(sample_model, frame, boxes, mode, flip=True)
    np.testing.assert_allclose(gpu[..., 2], ref[..., 2], atol=1e-3)  # merged maps: scores from both runs
    dist = heatmap_px(np.linalg.norm(gpu[..., :2] - ref[..., :2], axis=-1), transforms)
    assert dist[clear_peaks(hm)].max() <= 0.05


def test_empty_boxes_on_gpu(sample_model):
    pose = VitPoseTRT(gpu_engine(sample_model, "fp16"))
    assert pose.infer(np.zeros((10, 10, 3), np.uint8), []).shape == (0, 17, 3)
    assert [m.shape for m in pose.infer_many([np.zeros((10, 10, 3), np.uint8)] * 2, [[], []])] == [(0, 17, 3)] * 2
