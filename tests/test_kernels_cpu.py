"""The C++ CPU kernels of vitpose_trt._C against the numpy/OpenCV reference (impl="cpp" vs "numpy").

Crops: with OpenCV 4.x (the pinned cv2) the kernel reproduces cv2.warpAffine's integer bilinear
interpolation (15-bit weights from its 1/32-px table, rounded to uint8) and numpy's float32
normalization, so the crops must equal preprocess(impl="numpy") bit for bit: on every real
detector box, on odd inputs, on every strided view of a frame and at every thread count. The
OpenCV 5 model (coords="float") is compared in intensity levels (its float32 coordinates cannot be
matched exactly here; see csrc/warp.h).

Keypoints: x, y within 1e-3 frame px and the score exactly (NaN == NaN). The blur is bit-exact with
cv2's and every rounding follows numpy; what remains is numpy's float32 log, which is off by an ulp
for ~10% of inputs. That is invisible on real (peaked) heatmaps but not where the DARK Newton step
is ill-conditioned (pure noise: the "peak" is no local maximum of the blurred map), which
test_noise_heatmaps handles explicitly.
"""

from __future__ import annotations

import os
import threading
import warnings

import cv2
import numpy as np
import pytest

from tests.conftest import synthetic_heatmaps
from vitpose_trt.datasets import flip_index
from vitpose_trt.crop import MEAN_RGB, STD_RGB, preprocess, warp_crop
from vitpose_trt.decode import postprocess
from vitpose_trt.geometry import boxes_to_transforms, check_boxes, inverse_warp_matrices

_C = pytest.importorskip("vitpose_trt._C", reason="vitpose_trt._C is not built (pip install -e .)")

INPUT = (256, 192)
OPENCV_4 = int(cv2.__version__.split(".")[0]) < 5
# Intensity levels (of 255) allowed where exactness is not claimed: the OpenCV 5 model (float32
# coordinates in cv2 vs float64 here move a rounded level by at most 1) and, for the CUDA tests'
# reference checks, nothing else. A wrong sub-pixel model gives several levels on sharp edges.
TOL_LEVELS = 1.0
TOL_PX = 1e-3      # frame pixels
# float16 crops: normalized values reach |2.64|, where float16 spacing is 2^-9, so rounding adds up
# to 2^-10 * std * 255 < 0.06 level.
TOL_LEVELS_FP16 = TOL_LEVELS + 0.06


# ---- helpers (also used by test_kernels_cuda.py) -----------------------------------------------

def to_levels(crops) -> np.ndarray:
    """(M, 3, h, w) normalized RGB -> (M, h, w, 3) BGR intensity levels (float64)."""
    c = np.asarray(crops, dtype=np.float64)
    rgb = (c * STD_RGB.astype(np.float64)[:, None, None] + MEAN_RGB.astype(np.float64)[:, None, None]) * 255.0
    return rgb.transpose(0, 2, 3, 1)[..., ::-1]


def cv2_crops(frame, boxes, mode) -> np.ndarray:
    """(N, h, w, 3) uint8: the official cv2.warpAffine crop of every box."""
    transforms = boxes_to_transforms(check_boxes(boxes), INPUT)
    out = np.zeros((len(transforms), *INPUT, 3), np.uint8)
    for i, t in enumerate(transforms):
        out[i] = warp_crop(np.ascontiguousarray(frame), t, mode, INPUT)
    return out


def crop_error(crops, frame, boxes, mode, flip) -> float:
    """Max |kernel - cv2| in intensity levels over all crops (and their flipped copies)."""
    ref = cv2_crops(frame, boxes, mode).astype(np.float64)
    got = to_levels(crops)
    n = len(ref)
    assert got.shape[0] == (2 * n if flip else n)
    err = np.abs(got[:n] - ref).max(initial=0.0)
    if flip:
        err = max(err, np.abs(got[n:] - ref[:, :, ::-1]).max(initial=0.0))
    return float(err)


def assert_crops_exact(got, ref, what: str = "crops"):
    """The accuracy guard of the crop kernels: bit-identical crops, or a message saying how far off."""
    got, ref = np.asarray(got), np.asarray(ref)
    assert got.shape == ref.shape and got.dtype == ref.dtype, (got.shape, got.dtype, ref.shape, ref.dtype)
    differ = got.view(np.uint32) != ref.view(np.uint32) if got.dtype == np.float32 else got != ref
    if differ.any():
        worst = float(np.abs(got.astype(np.float64) - ref.astype(np.float64)).max() * 0.229 * 255)
        raise AssertionError(f"{what}: {int(differ.sum())} of {differ.size} crop values differ from the numpy/OpenCV "
                             f"reference (up to ~{worst:.2f} intensity levels)")


def cpp_crops(frame, boxes, mode, flip=False, **kwargs) -> np.ndarray:
    """warp_cpu on any frame (views included), returning the crops."""
    transforms = boxes_to_transforms(check_boxes(boxes), INPUT)
    inv = inverse_warp_matrices(transforms, mode, INPUT)
    out = np.empty((2 * len(inv) if flip else len(inv), 3, *INPUT), np.float32)
    _C.warp_cpu(frame, inv, out, flip, **kwargs)
    return out


def misaligned(arr: np.ndarray) -> np.ndarray:
    """A copy of `arr` whose data starts one byte past an aligned address (np.frombuffer at an odd offset)."""
    buf = np.zeros(arr.nbytes + 16, np.uint8)
    start = (-buf.ctypes.data) % 16 + 1
    out = buf[start:start + arr.nbytes].view(arr.dtype).reshape(arr.shape)
    out[...] = arr
    assert not out.flags.aligned
    return out


def overlapping(other: np.ndarray, shape, dtype) -> tuple[np.ndarray, np.ndarray]:
    """(a copy of `other`, a writable aligned `shape`/`dtype` array whose memory starts where the copy's does)."""
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    buf = np.zeros(max(other.nbytes, nbytes) + 64, np.uint8)
    start = (-buf.ctypes.data) % 64
    copy = buf[start:start + other.nbytes].view(other.dtype).reshape(other.shape)
    copy[...] = other
    return copy, buf[start:start + nbytes].view(dtype).reshape(shape)


def assert_keypoints_match(got, ref, tol_px=TOL_PX):
    got, ref = np.asarray(got), np.asarray(ref)
    assert got.shape == ref.shape and got.dtype == np.float32
    np.testing.assert_array_equal(got[..., 2], ref[..., 2])  # scores exactly; NaN == NaN
    np.testing.assert_allclose(got[..., :2], ref[..., :2], rtol=0, atol=tol_px)


def random_transforms(n, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x1, y1 = rng.uniform(0, 1500, n), rng.uniform(0, 800, n)
    boxes = np.stack([x1, y1, x1 + rng.uniform(20, 400, n), y1 + rng.uniform(40, 600, n)], 1)
    return boxes_to_transforms(boxes, INPUT)


def odd_frames_and_boxes():
    """(id, frame, boxes): borders, tiny and huge boxes, extreme frame sizes, padded rows."""
    rng = np.random.default_rng(7)
    photo = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    photo = cv2.GaussianBlur(photo, (5, 5), 0)
    photo[100:300, 200:203] = 255  # sharp edges, where the sub-pixel model shows
    h, w = photo.shape[:2]
    cases = [
        ("partly-outside", photo,
         [[-50, -40, 120, 200], [560, 380, 700, 520], [-10, 100, 30, 500], [600, -30, 660, 20]]),
        ("wholly-outside", photo, [[-500, -400, -300, -100], [w + 10, 10, w + 200, 300], [10, h + 5, 90, h + 90]]),
        ("tiny", photo, [[100, 100, 101, 101], [320.3, 200.7, 321.3, 201.2], [0, 0, 1, 1], [w - 1, h - 1, w, h]]),
        ("huge", photo, [[-3000, -2000, 4000, 3000], [0, 0, w, h], [-1e5, -1e5, 1e5, 1e5]]),
        ("frame-1x1", np.full((1, 1, 3), (10, 200, 30), np.uint8), [[-0.5, -0.5, 0.5, 0.5], [-2, -2, 3, 3]]),
        ("frame-1x5", rng.integers(0, 256, (1, 5, 3), dtype=np.uint8), [[0, -1, 5, 1]]),
        ("frame-5x1", rng.integers(0, 256, (5, 1, 3), dtype=np.uint8), [[-1, 0, 1, 5], [-3, -3, 4, 8]]),
    ]
    big = rng.integers(0, 256, (3000, 4000, 3), dtype=np.uint8)
    cases.append(("frame-4000x3000", big, [[0, 0, 4000, 3000], [3900, 2900, 4100, 3100], [1234.5, 987.25, 1300, 1200]]))
    wide = rng.integers(0, 256, (480, 1000, 3), dtype=np.uint8)
    padded = wide[:, 123:123 + 640]  # row pitch 3000 bytes, not 1920
    assert not padded.flags.c_contiguous and padded.strides == (3000, 3, 1)
    cases.append(("padded-rows", padded, [[50, 60, 300, 400], [-20, 300, 100, 500], [500, 0, 660, 480]]))
    return [(name, frame, np.array(boxes, np.float64)) for name, frame, boxes in cases]


ODD = odd_frames_and_boxes()


def frame_views(frame):
    """(id, view): every HxWx3 uint8 layout a caller may pass; each must crop like its contiguous copy."""
    t = np.ascontiguousarray(frame.transpose(1, 0, 2))
    rgba = np.concatenate([frame, np.full(frame.shape[:2] + (1,), 255, np.uint8)], axis=2)
    return [
        ("mirrored", frame[:, ::-1]),                     # selfie cameras
        ("flipped", frame[::-1]),
        ("rotated-180", frame[::-1, ::-1]),
        ("transposed", t.transpose(1, 0, 2)),
        ("bgr-to-rgb", frame[..., ::-1]),
        ("mirrored-rgb", frame[:, ::-1, ::-1]),
        ("fortran", np.asfortranarray(frame)),
        ("broadcast-row", np.broadcast_to(frame[:1], frame.shape)),      # row stride 0
        ("broadcast-column", np.broadcast_to(frame[:, :1], frame.shape)),  # pixel stride 0
        ("every-other-pixel", np.repeat(frame, 2, axis=1)[:, ::2]),      # pixel stride 6
        ("bgra-prefix", rgba[..., :3]),                                  # pixel stride 4
    ]


# ---- module -------------------------------------------------------------------------------------

def test_module_info():
    import vitpose_trt

    assert _C.__version__ == vitpose_trt.__version__  # CMakeLists.txt's project(VERSION) follows the package
    assert isinstance(_C.built_with_cuda, bool)
    assert isinstance(_C.cuda_available(), bool)  # never raises, GPU or not
    assert _C.opencv_warp_coords() == ("fixed" if OPENCV_4 else "float")
    if hasattr(os, "sched_getaffinity"):
        assert _C.default_threads() == len(os.sched_getaffinity(0))
    assert _C.default_threads() >= 1


# ---- warp ---------------------------------------------------------------------------------------

pytestmark_opencv4 = pytest.mark.skipif(not OPENCV_4, reason="bit-exactness is claimed for OpenCV 4.x only")


@pytestmark_opencv4
@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("mode", ["udp", "classic"])
def test_crops_equal_numpy_on_all_real_boxes(coco_sample, mode, flip):
    n_boxes = 0
    for _, frame, boxes in coco_sample:
        crops, transforms = preprocess(frame, boxes, mode, impl="cpp", flip=flip)
        ref, ref_t = preprocess(frame, boxes, mode, impl="numpy", flip=flip)
        np.testing.assert_array_equal(transforms, ref_t)
        assert_crops_exact(crops, ref)
        n_boxes += len(boxes)
    assert n_boxes == 118


@pytestmark_opencv4
def test_crop_guard_catches_wrong_crops(coco_sample):
    """The exactness guard fails on a crop shifted by one 1/32-px step, on the old float interpolation
    (OpenCV 5's model, unrounded arithmetic differs by up to a level) and on a one-level change."""
    _, frame, boxes = coco_sample[1]
    transforms = boxes_to_transforms(check_boxes(boxes), INPUT)
    inv = inverse_warp_matrices(transforms, "udp", INPUT)
    ref, _ = preprocess(frame, boxes, "udp", impl="numpy")
    shifted = inv.copy()
    shifted[:, 0, 2] += 1.0 / 32.0
    out = np.empty_like(ref)
    _C.warp_cpu(frame, shifted, out)
    with pytest.raises(AssertionError, match=r"crop values differ"):
        assert_crops_exact(out, ref)
    _C.warp_cpu(frame, inv, out, coords="float")
    with pytest.raises(AssertionError, match=r"crop values differ"):
        assert_crops_exact(out, ref)
    one_level = ref.copy()
    one_level[0, 0, 100, 100] += np.float32(1.0 / (255 * 0.229))
    with pytest.raises(AssertionError, match=r": 1 of .* crop values differ"):
        assert_crops_exact(one_level, ref)
    _C.warp_cpu(frame, inv, out)
    assert_crops_exact(out, ref)  # and passes on the right one


@pytest.mark.parametrize("mode", ["udp", "classic"])
def test_float16_crops(coco_sample, mode):
    _, frame, boxes = coco_sample[3]
    transforms = boxes_to_transforms(check_boxes(boxes), INPUT)
    inv = inverse_warp_matrices(transforms, mode, INPUT)
    out32 = np.empty((2 * len(boxes), 3, *INPUT), np.float32)
    out16 = np.empty((2 * len(boxes), 3, *INPUT), np.float16)
    _C.warp_cpu(frame, inv, out32, True)
    _C.warp_cpu(frame, inv, out16, True)
    # the kernel rounds its float32 result to nearest-even float16, exactly as numpy does
    np.testing.assert_array_equal(out16.view(np.uint16), out32.astype(np.float16).view(np.uint16))
    assert crop_error(out16, frame, boxes, mode, True) <= TOL_LEVELS_FP16


def test_flipped_copies_are_exact_mirrors(coco_sample):
    _, frame, boxes = coco_sample[0]
    crops, _ = preprocess(frame, boxes, "udp", impl="cpp", flip=True)
    n = len(boxes)
    np.testing.assert_array_equal(crops[n:], crops[:n, :, :, ::-1])


@pytest.mark.parametrize("coords", ["fixed", "float"])
def test_both_opencv_subpixel_models(coco_sample, coords):
    """'auto' follows the installed cv2 (bit-exact); the other model differs by sub-pixel
    quantization (1/32 px) only: a few levels at most on sharp edges, never more."""
    _, frame, boxes = coco_sample[1]
    transforms = boxes_to_transforms(check_boxes(boxes), INPUT)
    inv = inverse_warp_matrices(transforms, "udp", INPUT)
    out = np.empty((len(boxes), 3, *INPUT), np.float32)
    _C.warp_cpu(frame, inv, out, coords=coords)
    err = crop_error(out, frame, boxes, "udp", False)
    if coords == _C.opencv_warp_coords():
        assert err <= (1e-3 if OPENCV_4 else TOL_LEVELS)  # 1e-3: float32 -> level conversion in to_levels
    else:
        assert 0.0 < err < 16  # the installed cv2 really uses the other arithmetic
    # the whole crop is a level of the model's rounding: every value is a normalized integer level
    levels = to_levels(out)
    np.testing.assert_allclose(levels, np.round(levels), rtol=0, atol=1e-3)


@pytestmark_opencv4
@pytest.mark.parametrize("case", ODD, ids=[c[0] for c in ODD])
@pytest.mark.parametrize("mode", ["udp", "classic"])
def test_crops_odd_inputs(case, mode):
    _, frame, boxes = case
    crops, _ = preprocess(frame, boxes, mode, impl="cpp", flip=True)
    ref, _ = preprocess(frame, boxes, mode, impl="numpy", flip=True)
    assert_crops_exact(crops, ref)


def test_wholly_outside_box_is_the_normalized_zero():
    frame = np.full((50, 60, 3), 200, np.uint8)
    crops, _ = preprocess(frame, [[500, 500, 600, 700]], "udp", impl="cpp")
    np.testing.assert_allclose(crops[0], np.broadcast_to((-MEAN_RGB / STD_RGB)[:, None, None], crops[0].shape),
                               rtol=0, atol=1e-6)


@pytestmark_opencv4
@pytest.mark.parametrize("n", [0, 1, 7, 64])
def test_crops_batch_sizes(coco_sample, n):
    _, frame, boxes = coco_sample[0]
    rng = np.random.default_rng(n)
    picked = boxes[rng.integers(0, len(boxes), n)] if n else np.zeros((0, 4))
    crops, transforms = preprocess(frame, picked, "udp", impl="cpp", flip=True)
    assert crops.shape == (2 * n, 3, *INPUT) and transforms.shape == (n, 4)
    ref, _ = preprocess(frame, picked, "udp", impl="numpy", flip=True)
    assert_crops_exact(crops, ref)


@pytest.mark.parametrize("coords", ["fixed", "float"])
def test_frame_views_crop_like_their_contiguous_copy(coco_sample, coords):
    """Issue 10: any HxWx3 uint8 array is read in place through its strides (negative and zero
    included), with the same bits as np.ascontiguousarray(view), in both sub-pixel models (this
    also checks the SSE2 path against the scalar one: odd layouts take the scalar path)."""
    _, frame, boxes = coco_sample[2]
    boxes = np.concatenate([boxes[:, :4], [[-30, -20, 90, 200], [frame.shape[1] - 50, 10, frame.shape[1] + 40, 300]]])
    for name, view in frame_views(frame):
        got = cpp_crops(view, boxes, "udp", flip=True, coords=coords)
        ref = cpp_crops(np.ascontiguousarray(view), boxes, "udp", flip=True, coords=coords)
        assert_crops_exact(got, ref, name)


@pytestmark_opencv4
def test_frame_views_through_preprocess(coco_sample):
    _, frame, boxes = coco_sample[0]
    for name, view in frame_views(frame)[:6]:
        got, _ = preprocess(view, boxes, "udp", impl="cpp")
        ref, _ = preprocess(np.ascontiguousarray(view), boxes, "udp", impl="numpy")
        assert_crops_exact(got, ref, name)


@pytest.mark.parametrize("threads", [1, 2, 3, 8])
def test_thread_counts_give_identical_crops(coco_sample, threads):
    _, frame, boxes = coco_sample[0]
    ref = cpp_crops(frame, boxes, "udp", flip=True, threads=1)
    assert_crops_exact(cpp_crops(frame, boxes, "udp", flip=True, threads=threads), ref)
    assert_crops_exact(cpp_crops(frame, boxes[:1], "udp", threads=threads), ref[:1])


@pytestmark_opencv4
@pytest.mark.slow
def test_end_to_end_keypoints_with_the_fixture_model(coco_sample, sample_model):
    """The default (C++) pre/post path vs the numpy path around the fixture ViTPose-S, with and
    without the flip test, on the 3 best-scored detector boxes of each photo (12 people; all 118
    take minutes on 2 cores): crops bit-identical, hence identical heatmaps; keypoints then differ
    only by the decode's float32 log. Measured over all 118 boxes without flip: median 0, p99 0,
    max 0.0018 px, scores exact (before the integer interpolation: median 0.004, p99 0.023 px).
    Bound: 1e-3 px where the peak is clear (score >= 0.5), 1e-2 px elsewhere, scores exact."""
    torch = pytest.importorskip("torch")
    for _, frame, boxes in coco_sample:
        picked = boxes[np.argsort(-boxes[:, 4])[:3]]
        n = len(picked)
        crops, t = preprocess(frame, picked, "udp", impl="cpp", flip=True)
        ref_crops, ref_t = preprocess(frame, picked, "udp", impl="numpy", flip=True)
        assert_crops_exact(crops, ref_crops)
        with torch.no_grad():
            hm = sample_model(torch.from_numpy(crops)).numpy()
        for fl in (None, hm[n:]):
            got = postprocess(hm[:n], t, "udp", flipped=fl, impl="cpp")
            ref = postprocess(hm[:n], ref_t, "udp", flipped=fl, impl="numpy")
            np.testing.assert_array_equal(got[..., 2], ref[..., 2])
            clear = ref[..., 2] >= 0.5
            assert clear.mean() > 0.3  # the fixture has real peaks: the bound below means something
            dist = np.linalg.norm(got[..., :2] - ref[..., :2], axis=-1)
            assert dist[clear].max() <= 1e-3 and dist.max() <= 1e-2


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_helper_pool_works_after_fork(coco_sample):
    """A child forked after the pool started gets a pool of its own (the parent's helper threads do
    not exist there): its multi-threaded crops finish and equal the parent's."""
    _, frame, boxes = coco_sample[0]
    ref = cpp_crops(frame, boxes[:4], "udp", threads=2)  # starts the parent's helpers
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # Python >= 3.12: fork of a threaded process
        pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        ok = np.array_equal(cpp_crops(frame, boxes[:4], "udp", threads=2), ref)
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def test_warp_releases_the_gil_and_is_thread_safe(coco_sample):
    _, frame, boxes = coco_sample[2]
    inv = inverse_warp_matrices(boxes_to_transforms(check_boxes(boxes), INPUT), "udp", INPUT)
    ref = np.empty((len(boxes), 3, *INPUT), np.float32)
    _C.warp_cpu(frame, inv, ref)
    outs = [np.empty_like(ref) for _ in range(4)]
    threads = [threading.Thread(target=_C.warp_cpu, args=(frame, inv, o), kwargs={"threads": 2}) for o in outs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for o in outs:
        np.testing.assert_array_equal(o, ref)


def test_pool_under_concurrent_callers(coco_sample):
    """The helper pool (csrc/parallel.*) under load: 6 Python threads each make 25 calls of every size
    (1 box to 8, 1 to 7 threads, crops and decodes interleaved), so jobs start while others run, take
    the pool or run alone, and helpers join late or not at all; every result equals the single-threaded
    one. CI runs this under ThreadSanitizer too (tests/sanitizers.py)."""
    _, frame, boxes = coco_sample[0]
    inv = inverse_warp_matrices(boxes_to_transforms(check_boxes(boxes[:8]), (64, 48)), "udp", (64, 48))
    hm, t = synthetic_heatmaps(8, seed=12), random_transforms(8)
    crops_ref = np.empty((len(inv), 3, 64, 48), np.float32)
    _C.warp_cpu(frame, inv, crops_ref, threads=1)
    kp_ref = np.empty((8, 17, 3), np.float32)
    _C.decode_cpu(hm, t, kp_ref, "udp", threads=1)
    failures: list[str] = []

    def work(worker: int) -> None:
        for i in range(25):
            n, threads = 1 + (worker + i) % len(inv), 1 + (worker * 3 + i) % 7
            crops = np.empty((n, 3, 64, 48), np.float32)
            _C.warp_cpu(frame, inv[:n], crops, threads=threads)
            kp = np.empty((n, 17, 3), np.float32)
            _C.decode_cpu(hm[:n], t[:n], kp, "udp", threads=threads)
            if not (np.array_equal(crops, crops_ref[:n]) and np.array_equal(kp, kp_ref[:n])):
                failures.append(f"worker {worker} call {i}: {n} boxes at {threads} threads differ")

    pool = [threading.Thread(target=work, args=(w,)) for w in range(6)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    assert not failures, failures[:3]


# ---- decode -------------------------------------------------------------------------------------

def decode_both(hm, transforms, mode, flipped=None):
    ref = postprocess(hm, transforms, mode, flipped=flipped, impl="numpy")
    got = postprocess(hm, transforms, mode, flipped=flipped, impl="cpp")
    return got, ref


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("mode", ["udp", "classic"])
def test_decode_matches_reference_on_realistic_heatmaps(mode, flip, dtype):
    n = 64
    hm = synthetic_heatmaps(n, seed=1).astype(dtype)
    flipped = synthetic_heatmaps(n, seed=2).astype(dtype) if flip else None
    if flip:  # a flipped crop's maps mirror the originals (plus their own noise), as a real model's
        flipped = (0.5 * flipped + 0.5 * hm[:, flip_index(17), :, ::-1]).astype(dtype)
    got, ref = decode_both(hm, random_transforms(n), mode, flipped)
    assert_keypoints_match(got, ref)


@pytest.mark.parametrize("mode", ["udp", "classic"])
def test_decode_peaks_at_borders_and_corners(mode):
    h, w = 64, 48
    spots = [(0, 0), (0, w - 1), (h - 1, 0), (h - 1, w - 1), (0, 20), (h - 1, 20), (30, 0), (30, w - 1),
             (1, 1), (1, w - 2), (h - 2, 1), (h - 2, w - 2), (2, 2), (h - 3, w - 3), (5, 5), (1, 30), (40, 1)]
    ys, xs = np.mgrid[0:h, 0:w]
    hm = np.zeros((2, len(spots), h, w), np.float32)
    for j, (y, x) in enumerate(spots):
        hm[0, j] = np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / 8.0)
        hm[1, j] = np.exp(-((xs - x - 0.3) ** 2 + (ys - y + 0.4) ** 2) / 8.0)  # sub-pixel, clipped by the border
    got, ref = decode_both(hm, random_transforms(2), mode)
    assert_keypoints_match(got, ref)


@pytest.mark.parametrize("mode", ["udp", "classic"])
def test_decode_flat_ties_nan_and_negative(mode):
    hm = synthetic_heatmaps(1, k=10, seed=3)
    hm[0, 0] = 0.5                                   # flat positive: first pixel, zero Newton step
    hm[0, 1] = 0.0                                   # flat zero: (-1, -1), score 0
    hm[0, 2] = -0.25                                 # flat negative
    hm[0, 3] = np.float32(-1.0) - np.abs(hm[0, 3])   # negative everywhere: (-1, -1), score < 0
    hm[0, 4] = 0.0                                   # exact ties: the lowest row-major index wins
    hm[0, 4, [20, 10, 30], [30, 40, 5]] = 0.75
    hm[0, 5, 5, 7] = np.nan                          # NaN: NaN score, (-1, -1), this keypoint only
    hm[0, 6, [3, 50], [4, 2]] = np.nan               # two NaNs: the first one counts
    hm[0, 7, 10, 10] = np.inf                        # +inf is a valid maximum
    hm[0, 8] = np.float32(1e-4)                      # tiny positive: clipped flat log map
    hm[0, 9, 33, 22] = 60.0                          # above the clip ceiling (50)
    got, ref = decode_both(hm, random_transforms(1), mode)
    assert_keypoints_match(got, ref)
    assert np.isnan(got[0, 5, 2]) and np.isnan(got[0, 6, 2])
    assert np.isfinite(got[0, [0, 1, 2, 3, 4, 8, 9], 2]).all()
    assert got[0, 4, 2] == np.float32(0.75)


def identity_transforms(n, h, w, mode) -> np.ndarray:
    """Transforms under which frame coordinates equal heatmap coordinates."""
    row = [(w - 1) / 2, (h - 1) / 2, w - 1, h - 1] if mode == "udp" else [w / 2, h / 2, w, h]
    return np.tile(np.array(row, np.float32), (n, 1))


@pytest.mark.parametrize("shape", [(2, 2), (3, 5), (7, 4), (64, 47), (96, 72)])
@pytest.mark.parametrize("mode", ["udp", "classic"])
def test_decode_map_sizes(mode, shape):
    """Maps smaller than the 11x11 blur (repeated reflect-101) and other model resolutions, in
    heatmap pixels (identity transforms: a 2x2 map would otherwise magnify errors 100x)."""
    hm = synthetic_heatmaps(3, k=5, h=shape[0], w=shape[1], seed=4, noise=0.0)
    got, ref = decode_both(hm, identity_transforms(3, *shape, mode), mode)
    # OpenCV 5 blurs the last W % 8 columns in scalar code whose float rounding we do not copy
    assert_keypoints_match(got, ref, tol_px=TOL_PX if shape[1] % 8 == 0 else 5e-3)


@pytest.mark.parametrize("mode", ["udp", "classic"])
def test_noise_heatmaps(mode):
    """Pure noise (a random-weight model): scores and classic exact; DARK wherever its Newton step is
    well-posed (the refined point stays within 2 heatmap px of the argmax). Elsewhere the step
    divides by a near-zero curvature of the blurred log-map and one ulp of numpy's float32 log
    moves it (measured here: 1.7% of such keypoints beyond 1e-3 px, at most 0.07 px)."""
    rng = np.random.default_rng(5)
    hm = (rng.random((32, 17, 64, 48)) ** 6).astype(np.float32)
    t = identity_transforms(32, 64, 48, mode)
    got, ref = decode_both(hm, t, mode)
    if mode == "classic":
        np.testing.assert_array_equal(got, ref)
        return
    np.testing.assert_array_equal(got[..., 2], ref[..., 2])
    flat = hm.reshape(32, 17, -1).argmax(-1)
    peak = np.stack([flat % 48, flat // 48], -1)
    posed = np.abs(ref[..., :2] - peak).max(-1) < 2.0
    assert posed.mean() > 0.3
    np.testing.assert_allclose(got[posed][:, :2], ref[posed][:, :2], rtol=0, atol=TOL_PX)


@pytest.mark.parametrize("n", [0, 1, 7, 64])
def test_decode_batch_sizes(n):
    hm = synthetic_heatmaps(n, seed=6)
    for mode in ("udp", "classic"):
        got, ref = decode_both(hm, random_transforms(n), mode)
        assert got.shape == (n, 17, 3)
        assert_keypoints_match(got, ref)


def test_decode_custom_flip_index():
    hm = synthetic_heatmaps(4, k=5, seed=8)
    fl = synthetic_heatmaps(4, k=5, seed=9)
    pairs = [(0, 3), (1, 2)]
    for mode in ("udp", "classic"):
        ref = postprocess(hm, random_transforms(4), mode, flipped=fl, flip_pairs=pairs, impl="numpy")
        got = postprocess(hm, random_transforms(4), mode, flipped=fl, flip_pairs=pairs, impl="cpp")
        assert_keypoints_match(got, ref)


@pytest.mark.parametrize("threads", [1, 2, 5])
def test_decode_thread_counts_give_identical_keypoints(threads):
    hm = synthetic_heatmaps(7, seed=10)
    fl = synthetic_heatmaps(7, seed=11)
    t, fidx = random_transforms(7), np.array(flip_index(17), np.int32)
    for mode in ("udp", "classic"):
        ref = np.empty((7, 17, 3), np.float32)
        got = np.empty_like(ref)
        _C.decode_cpu(hm, t, ref, mode, fl, fidx, threads=1)
        _C.decode_cpu(hm, t, got, mode, fl, fidx, threads=threads)
        np.testing.assert_array_equal(got, ref)


# ---- binding errors -----------------------------------------------------------------------------

def warp_args(n=2, flip=False, out_dtype=np.float32):
    frame = np.zeros((40, 50, 3), np.uint8)
    inv = np.tile(np.array([[1.0, 0, 0], [0, 1.0, 0]]), (n, 1, 1))
    out = np.zeros((2 * n if flip else n, 3, 16, 12), out_dtype)
    return frame, inv, out


def test_warp_argument_errors():
    frame, inv, out = warp_args()
    with pytest.raises(TypeError, match=r"frame: expected dtype uint8, got float32"):
        _C.warp_cpu(frame.astype(np.float32), inv, out)
    with pytest.raises(TypeError, match=r"frame: expected a numpy array, got list"):
        _C.warp_cpu(frame.tolist(), inv, out)
    with pytest.raises(ValueError, match=r"frame: expected 3 dimensions \(H, W, 3\), got 2 with shape \(40, 50\)"):
        _C.warp_cpu(frame[..., 0], inv, out)
    with pytest.raises(ValueError, match=r"frame: expected shape \(H, W, 3\), got \(40, 50, 4\)"):
        _C.warp_cpu(np.zeros((40, 50, 4), np.uint8), inv, out)
    with pytest.raises(ValueError, match=r"frame: is empty"):
        _C.warp_cpu(np.zeros((0, 50, 3), np.uint8), inv, out)
    with pytest.raises(TypeError, match=r"inv_matrices: expected dtype float64, got float32"):
        _C.warp_cpu(frame, inv.astype(np.float32), out)
    with pytest.raises(ValueError, match=r"inv_matrices: expected shape \(2, 2, 3\), got \(2, 3, 3\)"):
        _C.warp_cpu(frame, np.zeros((2, 3, 3)), out)
    with pytest.raises(ValueError, match=r"inv_matrices: must be C-contiguous"):
        _C.warp_cpu(frame, np.asfortranarray(inv), out)
    with pytest.raises(TypeError, match=r"out: expected dtype float32 or float16, got float64"):
        _C.warp_cpu(frame, inv, out.astype(np.float64))
    with pytest.raises(ValueError, match=r"out: expected shape \(2, 3, 16, 12\) \(N crops\), got \(3, 3, 16, 12\)"):
        _C.warp_cpu(frame, inv, np.empty((3, 3, 16, 12), np.float32))
    with pytest.raises(ValueError,
                       match=r"out: expected shape \(4, 3, 16, 12\) \(2N crops with flip=True\), got \(2, 3, 16, 12\)"):
        _C.warp_cpu(frame, inv, out, True)
    with pytest.raises(ValueError, match=r"out: expected shape \(2, 3, 16, 12\) \(N crops\), got \(2, 4, 16, 12\)"):
        _C.warp_cpu(frame, inv, np.empty((2, 4, 16, 12), np.float32))
    with pytest.raises(ValueError, match=r"out: expected 4 dimensions \(N, 3, h, w\), got 3"):
        _C.warp_cpu(frame, inv, out[0])
    with pytest.raises(ValueError, match=r"out: must be C-contiguous"):
        _C.warp_cpu(frame, inv, np.empty((2, 3, 12, 16), np.float32).transpose(0, 1, 3, 2))
    ro = out.copy()
    ro.flags.writeable = False
    with pytest.raises(ValueError, match=r"out: array is read-only"):
        _C.warp_cpu(frame, inv, ro)
    with pytest.raises(ValueError, match=r"coords: expected 'auto', 'fixed' \(OpenCV 4.x\) or 'float'"):
        _C.warp_cpu(frame, inv, out, coords="nearest")
    with pytest.raises(TypeError, match=r"inv_matrices: expected native byte order"):
        _C.warp_cpu(frame, inv.astype(">f8"), out)  # byte order is checked for every argument
    for bad in (0, -1):
        with pytest.raises(ValueError, match=r"threads: expected None or a positive int, got " + str(bad)):
            _C.warp_cpu(frame, inv, out, threads=bad)
    with pytest.raises(TypeError, match=r"threads: expected None or a positive int, got float"):
        _C.warp_cpu(frame, inv, out, threads=2.0)
    with pytest.raises(TypeError, match=r"threads: expected None or a positive int, got bool"):
        _C.warp_cpu(frame, inv, out, threads=True)
    _C.warp_cpu(frame, inv[:0], out[:0])  # N = 0 is valid
    _C.warp_cpu(frame, inv, out, threads=10**6)  # more threads than work or cores: capped, not an error


def test_warp_strided_frames_are_accepted():
    frame, inv, out = warp_args()
    wide = np.zeros((40, 80, 3), np.uint8)
    _C.warp_cpu(wide[:, 10:60], inv, out)  # padded rows
    _C.warp_cpu(np.zeros((1, 50, 3), np.uint8)[:, :], inv, out)
    _C.warp_cpu(np.zeros((40, 100, 3), np.uint8)[:, ::2], inv, out)  # pixel stride 6
    _C.warp_cpu(np.zeros((40, 50, 4), np.uint8)[..., :3], inv, out)  # pixel stride 4
    _C.warp_cpu(frame[::-1], inv, out)                                # row stride -150
    ro = frame.copy()
    ro.flags.writeable = False
    _C.warp_cpu(ro, inv, out)  # the frame is only read


def decode_args(n=2, k=3, dtype=np.float32):
    return (np.zeros((n, k, 8, 6), dtype), np.zeros((n, 4), np.float32), np.zeros((n, k, 3), np.float32))


def test_decode_argument_errors():
    hm, t, out = decode_args()
    fl, fi = hm.copy(), np.array([0, 2, 1], np.int32)
    with pytest.raises(TypeError, match=r"heatmaps: expected dtype float32 or float16, got float64"):
        _C.decode_cpu(hm.astype(np.float64), t, out, "udp")
    with pytest.raises(ValueError,
                       match=r"heatmaps: expected 4 dimensions \(N, K, H, W\), got 3 with shape \(3, 8, 6\)"):
        _C.decode_cpu(hm[0], t, out, "udp")
    with pytest.raises(ValueError, match=r"heatmaps: must be at least 2x2, got shape \(2, 3, 1, 6\)"):
        _C.decode_cpu(hm[:, :, :1], t, out, "udp")
    with pytest.raises(ValueError, match=r"heatmaps: must be C-contiguous"):
        _C.decode_cpu(np.zeros((2, 3, 8, 12), np.float32)[..., ::2], t, out, "udp")
    with pytest.raises(TypeError, match=r"transforms: expected dtype float32, got float64"):
        _C.decode_cpu(hm, t.astype(np.float64), out, "udp")
    with pytest.raises(ValueError, match=r"transforms: expected shape \(2, 4\).*got \(3, 4\)"):
        _C.decode_cpu(hm, np.zeros((3, 4), np.float32), out, "udp")
    with pytest.raises(ValueError, match=r"out: expected shape \(2, 3, 3\), got \(2, 3, 2\)"):
        _C.decode_cpu(hm, t, np.empty((2, 3, 2), np.float32), "udp")
    with pytest.raises(TypeError, match=r"out: expected dtype float32, got float16"):
        _C.decode_cpu(hm, t, np.zeros((2, 3, 3), np.float16), "udp")
    with pytest.raises(ValueError, match=r"mode: expected 'udp' or 'classic', got 'dark'"):
        _C.decode_cpu(hm, t, out, "dark")
    with pytest.raises(ValueError, match=r"flip_index: required when flipped is given"):
        _C.decode_cpu(hm, t, out, "udp", fl)
    with pytest.raises(ValueError, match=r"flip_index: given without flipped"):
        _C.decode_cpu(hm, t, out, "udp", None, fi)
    with pytest.raises(TypeError, match=r"flipped: expected dtype float32 like heatmaps, got float16"):
        _C.decode_cpu(hm, t, out, "udp", fl.astype(np.float16), fi)
    with pytest.raises(ValueError, match=r"flipped: expected shape \(2, 3, 8, 6\) like heatmaps, got \(2, 3, 8, 5\)"):
        _C.decode_cpu(hm, t, out, "udp", fl[..., :5].copy(), fi)
    with pytest.raises(TypeError, match=r"flip_index: expected dtype int32, got int64"):
        _C.decode_cpu(hm, t, out, "udp", fl, fi.astype(np.int64))
    with pytest.raises(ValueError, match=r"flip_index: expected shape \(3,\) \(one entry per keypoint\), got \(2,\)"):
        _C.decode_cpu(hm, t, out, "udp", fl, fi[:2].copy())
    with pytest.raises(ValueError, match=r"flip_index: values must be in \[0, 3\), got 3 at position 1"):
        _C.decode_cpu(hm, t, out, "udp", fl, np.array([0, 3, 1], np.int32))
    with pytest.raises(ValueError, match=r"flip_index: values must be in \[0, 3\), got -1 at position 0"):
        _C.decode_cpu(hm, t, out, "udp", fl, np.array([-1, 2, 1], np.int32))
    with pytest.raises(ValueError, match=r"threads: expected None or a positive int, got 0"):
        _C.decode_cpu(hm, t, out, "udp", threads=0)
    _C.decode_cpu(hm[:0], t[:0], out[:0], "classic")  # N = 0 is valid
    _C.decode_cpu(hm.astype(np.float16), t, out, "udp", fl.astype(np.float16), fi)


def test_argument_errors_found_by_fuzzing():
    """Regressions of tests/test_bindings_fuzz.py's findings, each refused at the boundary with one line
    naming the argument: arrays at an odd byte offset (UBSan: misaligned double/float loads in
    warp.cpp and common.h), an output sharing memory with an input (accepted, silently corrupting the
    result), a thread count beyond long long (pybind11's 'Unable to cast' RuntimeError)."""
    frame, inv, out = warp_args()
    with pytest.raises(ValueError, match=r"^inv_matrices: data is not aligned to its 8-byte elements"):
        _C.warp_cpu(frame, misaligned(inv), out)
    hm, t, kp = decode_args()
    with pytest.raises(ValueError, match=r"^out: data is not aligned to its 4-byte elements"):
        _C.decode_cpu(hm, t, misaligned(kp), "udp")
    hm, aliased = overlapping(hm, kp.shape, np.float32)  # out is the first bytes of heatmaps
    with pytest.raises(ValueError, match=r"^out: shares memory with heatmaps: the output must not overlap an input"):
        _C.decode_cpu(hm, t, aliased, "udp")
    fl, aliased = overlapping(hm, kp.shape, np.float32)
    with pytest.raises(ValueError, match=r"^out: shares memory with flipped"):
        _C.decode_cpu(hm, t, aliased, "udp", fl, np.array([0, 2, 1], np.int32))
    shared_inv, crops = overlapping(inv, out.shape, np.float32)  # crops written over the matrices they read
    with pytest.raises(ValueError, match=r"^out: shares memory with inv_matrices"):
        _C.warp_cpu(frame, shared_inv, crops)
    for huge in (2**63, 2**100):  # capped like 10**6
        _C.warp_cpu(frame, inv, out, threads=huge)
    with pytest.raises(ValueError, match=r"^threads: expected None or a positive int, got -12676506"):
        _C.warp_cpu(frame, inv, out, threads=-2**100)
    np.testing.assert_array_equal(_C.warp_cpu(frame, inv[:0], out[:0]), None)  # and empty arrays need no alignment


@pytest.mark.parametrize("normalize", ["imagenet", "yolo", "yolox", "rtmdet"])
def test_the_kernels_normalization_constants_are_the_python_ones(normalize):
    """csrc/warp.h keeps its own copy of the ImageNet statistics (and RTMDet's, x 255): every level of
    every channel, through an identity warp, equals numpy's float32 arithmetic on the Python constants
    (crop.IMAGENET_MEAN/STD, detect.RTMDET_MEAN/STD) bit for bit."""
    from vitpose_trt.detect import RTMDET_MEAN, RTMDET_STD

    levels = np.arange(256, dtype=np.uint8)
    frame = np.stack([levels, levels[::-1], np.roll(levels, 77)], axis=-1)[None]  # (1, 256, 3) BGR
    out = np.empty((1, 3, 1, 256), np.float32)
    _C.warp_cpu(frame, np.array([[[1.0, 0, 0], [0, 1.0, 0]]]), out, normalize=normalize)
    bgr = frame[0].astype(np.float32)  # (256, 3)
    want = {
        "imagenet": (bgr[:, ::-1] / np.float32(255) - MEAN_RGB) / STD_RGB,
        "yolo": bgr[:, ::-1] / np.float32(255),
        "yolox": bgr,
        "rtmdet": (bgr - RTMDET_MEAN) / RTMDET_STD,
    }[normalize]
    np.testing.assert_array_equal(out[0, :, 0].T, want)
