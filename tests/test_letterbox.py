"""A detector's letterbox through the C++ warp kernel, against each family's reference.

`letterbox(..., impl="numpy")` is the reference: what each family's own pre-processing computes
(cv2.resize INTER_LINEAR onto a 114 canvas, then the family's normalization in numpy).
`impl="cpp"` is the warp kernel in one pass (a letterbox is an affine warp; csrc/warp.h). The two
sample the frame with different sub-pixel arithmetic (the warp: 1/32 px coordinates; cv2.resize:
11-bit weights), so they differ by a few levels at sharp edges. The bound, per family and input
size, on the 4 sample photos and a 1280x720 copy of each (measured on OpenCV 4.14: largest 6
levels, mean 0.24 level, 2.6% of values more than one level apart, on the 500x333 photo upscaled
into 640x640; frames that need no resizing, or an exact 2x, agree bit for bit):
    largest difference <= 8 levels, mean <= 0.5 level, <= 5% of values more than one level apart.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from vitpose_trt.detect import FAMILIES, PAD_VALUE, letterbox, letterbox_geometry

_C = pytest.importorskip("vitpose_trt._C", reason="vitpose_trt._C is not built (pip install -e .)")

SIZES = [(640, 640), (384, 640), (800, 800)]
LEVEL = {"yolo": 255.0, "yolox": 1.0, "rtmdet": 57.12}  # output units per level (rtmdet: its smallest std)
MAX_LEVELS, MEAN_LEVELS, FAR_FRACTION = 8.0, 0.5, 0.05


def levels_apart(got: np.ndarray, want: np.ndarray, family: str) -> np.ndarray:
    return np.abs(got.astype(np.float64) - want) * LEVEL[family]


def within_bound(got: np.ndarray, want: np.ndarray, family: str) -> bool:
    d = levels_apart(got, want, family)
    return bool(d.max() <= MAX_LEVELS and d.mean() <= MEAN_LEVELS and (d > 1.01).mean() <= FAR_FRACTION)


@pytest.fixture(scope="module")
def frames(coco_sample) -> list[np.ndarray]:
    photos = [frame for _, frame, _ in coco_sample]
    return photos + [cv2.resize(f, (1280, 720), interpolation=cv2.INTER_AREA) for f in photos]


@pytest.mark.parametrize("family", FAMILIES)
def test_the_kernel_letterbox_is_within_the_stated_bound_of_each_familys_reference(frames, family):
    print("cv2", cv2.__version__)
    worst = 0.0
    for frame in frames:
        for size in SIZES:
            got, g1 = letterbox(frame, size, family, impl="cpp")
            want, g2 = letterbox(frame, size, family, impl="numpy")
            assert g1 == g2 and got.shape == want.shape == (1, 3, *size) and got.dtype == np.float32
            assert within_bound(got, want, family), (frame.shape, size, levels_apart(got, want, family).max())
            worst = max(worst, float(levels_apart(got, want, family).max()))
    assert worst > 0  # the photos do need resizing somewhere: the comparison saw the resampling


@pytest.mark.parametrize("family", FAMILIES)
def test_the_pad_the_placement_and_the_normalization_are_exact(family):
    """Without resizing (the frame fits at scale 1) the kernel equals the reference bit for bit: the
    padding, where the image sits, the colour order and each family's float32 normalization."""
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    got, geometry = letterbox(frame, (64, 64), family, impl="cpp")
    want, _ = letterbox(frame, (64, 64), family, impl="numpy")
    assert geometry.ratio == 1.0
    np.testing.assert_array_equal(got, want)
    if family == "yolo":
        assert geometry.top == 8 and got[0, 0, 0, 0] == np.float32(PAD_VALUE / 255)  # centred
    else:
        assert geometry.top == 0 and (got[0, :, 48:] == got[0, :, 63:, :1]).all()  # padded below, one level
        assert (got[0, 0, 63, 0] == PAD_VALUE) == (family == "yolox")


def test_with_opencv_4_the_image_region_is_warpaffine_with_a_replicated_border(frames):
    """The kernel's arithmetic is OpenCV 4.x's warpAffine (the package's contract, csrc/warp.h); inside
    the image region a neighbour outside the frame repeats its edge, as cv2.resize reads it."""
    if not cv2.__version__.startswith("4."):
        pytest.skip(f"the bit-exact contract is OpenCV 4.x's arithmetic; installed cv2 {cv2.__version__}")
    for frame in frames[:3]:
        got, geometry = letterbox(frame, (384, 640), "yolox", impl="cpp")
        m = cv2.invertAffineTransform(geometry.inverse_matrix()[0])
        want = cv2.warpAffine(frame, m, (640, 384), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        x0, y0, x1, y1, pad = geometry.region()
        canvas = np.full_like(want, pad)
        canvas[y0:y1, x0:x1] = want[y0:y1, x0:x1]
        np.testing.assert_array_equal(got[0].transpose(1, 2, 0), canvas)


def test_the_bound_catches_a_misplaced_or_misnormalized_letterbox(frames):
    """The check can fail: half a pixel of shift, or another family's normalization, is far outside it."""
    frame, size = frames[0], (640, 640)
    want, geometry = letterbox(frame, size, "yolo", impl="numpy")
    shifted = geometry.inverse_matrix()
    shifted[0, 0, 2] += 0.5
    got = np.empty_like(want)
    _C.warp_cpu(frame, shifted, got, normalize="yolo", letterbox=geometry.region())
    assert not within_bound(got, want, "yolo")
    bgr, _ = letterbox(frame, size, "yolox", impl="cpp")
    assert not within_bound(bgr / 255, want, "yolo")  # colour order (and scale) of another family


@pytest.mark.parametrize("shape", [(1, 1, 3), (1, 900, 3), (700, 2, 3), (333, 500, 3)])
def test_odd_frames_and_views(shape):
    """A one-pixel frame, extreme aspect ratios and a mirrored, non-contiguous view: the kernel reads
    any strides and lands within the bound. (Smooth content, as photos are: on per-pixel noise any two
    resamplers differ by tens of levels.)"""
    rng = np.random.default_rng(1)
    coarse = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    frame = cv2.resize(coarse, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
    for view in (frame, frame[:, ::-1]):
        for family in FAMILIES:
            got, g = letterbox(view, (320, 320), family, impl="cpp")
            want, _ = letterbox(np.ascontiguousarray(view), (320, 320), family, impl="numpy")
            assert g.width >= 1 and g.height >= 1
            assert np.isfinite(got).all() and within_bound(got, want, family), (shape, family)


def test_geometry_maps_boxes_back_to_the_frame():
    g = letterbox_geometry((360, 640), (640, 640), "yolo")
    assert (g.ratio, g.left, g.top, g.width, g.height) == (1.0, 0, 140, 640, 360)
    boxes = g.to_frame(np.array([[10.0, 150.0, 100.0, 600.0]]))
    np.testing.assert_array_equal(boxes, [[10.0, 10.0, 100.0, 360.0]])  # y2 clipped to the frame


@pytest.mark.parametrize("letterbox_arg, message", [
    ((0, 0, 65, 64, 114), "x1 <= out width"),
    ((0, 0, 64, 64, 256), "pad <= 255"),
    ((0, 0, 64), "expected None or"),
    ((0.0, 0, 64, 64, 114), "expected None or"),
    ((10, 0, 5, 64, 114), "x0 <= x1"),
])
def test_bad_letterbox_arguments_are_refused_by_name(letterbox_arg, message):
    frame = np.zeros((10, 10, 3), np.uint8)
    out = np.empty((1, 3, 64, 64), np.float32)
    inv = np.array([[[1.0, 0, 0], [0, 1.0, 0]]])
    with pytest.raises(ValueError, match="letterbox") as e:
        _C.warp_cpu(frame, inv, out, letterbox=letterbox_arg)
    assert message in str(e.value)
    with pytest.raises(ValueError, match="flip must be False"):
        _C.warp_cpu(frame, inv, np.empty((2, 3, 64, 64), np.float32), True, letterbox=(0, 0, 64, 64, 114))
    with pytest.raises(ValueError, match="normalize: expected"):
        _C.warp_cpu(frame, inv, out, normalize="coco")
    with pytest.raises(ValueError, match="letterbox impl"):
        letterbox(frame, (64, 64), "yolo", impl="cuda")
