"""Boxes -> transforms -> warp matrices, and input validation (the crops themselves: test_crop.py)."""

import numpy as np
import pytest

from vitpose_trt.geometry import (MAX_COORD, boxes_to_transforms, check_boxes, check_frame, heatmap_to_frame,
                                  inverse_warp_matrices, warp_matrix)


def test_transform_pads_to_aspect_ratio():
    # tall box: width grows to h * 192/256; wide box: height grows to w * 256/192; both x1.25
    t = boxes_to_transforms(np.array([[10, 20, 40, 220], [0, 0, 300, 100]], dtype=np.float64))
    np.testing.assert_allclose(t[0], [25, 120, 200 * 0.75 * 1.25, 200 * 1.25], rtol=1e-6)
    np.testing.assert_allclose(t[1], [150, 50, 300 * 1.25, 400 * 1.25], rtol=1e-6)
    assert t.dtype == np.float32


@pytest.mark.parametrize("mode", ["udp", "classic"])
def test_warp_matrix_maps_box_as_documented(mode):
    t = boxes_to_transforms(np.array([[100.5, 40.25, 260.0, 300.0]]))[0]
    m = warp_matrix(t, mode).astype(np.float64)
    cx, cy, w, h = t.astype(np.float64)
    corners = np.array([[cx - w / 2, cy - h / 2, 1], [cx + w / 2, cy + h / 2, 1], [cx, cy, 1]])
    mapped = corners @ m.T
    if mode == "udp":  # box edges on the centers of the first and last crop pixels
        np.testing.assert_allclose(mapped[:2], [[0, 0], [191, 255]], atol=1e-3)
        np.testing.assert_allclose(mapped[2], [95.5, 127.5], atol=1e-3)
    else:  # box center on the crop center, box width onto the crop width
        np.testing.assert_allclose(mapped[2], [96, 128], atol=1e-3)
        np.testing.assert_allclose(mapped[1] - mapped[0], [192, 256], atol=1e-3)


def test_heatmap_to_frame_inverts_the_crop_mapping():
    t = boxes_to_transforms(np.array([[30.0, 40.0, 130.0, 240.0]]))
    corners = np.array([[[0, 0], [47, 63]]], dtype=np.float64)
    udp = heatmap_to_frame(corners, t, (64, 48), "udp")[0]
    cx, cy, w, h = t[0].astype(np.float64)
    np.testing.assert_allclose(udp, [[cx - w / 2, cy - h / 2], [cx + w / 2, cy + h / 2]], atol=1e-4)
    classic = heatmap_to_frame(np.array([[[24.0, 32.0]]]), t, (64, 48), "classic")[0, 0]
    np.testing.assert_allclose(classic, [cx, cy], atol=1e-4)


def test_box_validation():
    assert check_boxes([]).shape == (0, 4)
    assert check_boxes(np.zeros((0, 5))).shape == (0, 4)
    np.testing.assert_array_equal(check_boxes([[1, 2, 3, 4, 0.9]]), [[1, 2, 3, 4]])
    with pytest.raises(ValueError, match="NaN or inf"):
        check_boxes([[0, 0, np.nan, 1]])
    with pytest.raises(ValueError, match="NaN or inf"):
        check_boxes([[0, 0, np.inf, 1]])
    with pytest.raises(ValueError, match="x2 < x1"):
        check_boxes([[10, 0, 5, 10]])
    with pytest.raises(ValueError, match="zero width and height"):
        check_boxes([[3, 3, 3, 3]])
    with pytest.raises(ValueError, match=r"shape \(N, 4\)"):
        check_boxes([[1, 2, 3]])
    with pytest.raises(ValueError, match="single box"):
        check_boxes([1, 2, 3, 4])
    assert check_boxes([[3, 3, 3, 9]]).shape == (1, 4)  # zero width alone is fine: the aspect ratio widens it


def test_frame_validation():
    with pytest.raises(ValueError, match="uint8"):
        check_frame(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        check_frame(np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        check_frame(np.zeros((4, 4, 4), np.uint8))
    with pytest.raises(TypeError, match="numpy array"):
        check_frame([[0, 0, 0]])
    with pytest.raises(ValueError, match="empty"):
        check_frame(np.zeros((0, 4, 3), np.uint8))


def test_boxes_with_scores():
    """`scores=True`: (N, 5) with the given scores, 1.0 for (N, 4) boxes; a NaN score is refused then only."""
    np.testing.assert_array_equal(check_boxes([[1, 2, 3, 4]], scores=True), [[1, 2, 3, 4, 1]])
    np.testing.assert_array_equal(check_boxes([[1, 2, 3, 4, 0.5]], scores=True), [[1, 2, 3, 4, 0.5]])
    assert check_boxes([], scores=True).shape == (0, 5)
    with pytest.raises(ValueError, match=r"boxes \[1\] contain NaN or inf"):
        check_boxes([[1, 2, 3, 4, 0.5], [1, 2, 3, 4, np.nan]], scores=True)
    np.testing.assert_array_equal(check_boxes([[1, 2, 3, 4, np.nan]]), [[1, 2, 3, 4]])  # the score is dropped
    with pytest.raises(ValueError, match="x2 < x1"):
        check_boxes([[10, 0, 5, 10, 0.9]], scores=True)


def test_device_frames_are_checked_by_shape_and_dtype():
    """`on_device=True`: any array with .shape and .dtype (a CUDA tensor), numpy's or torch's uint8."""
    torch = pytest.importorskip("torch")
    frame = torch.zeros(4, 5, 3, dtype=torch.uint8)
    assert check_frame(frame, on_device=True) is frame
    with pytest.raises(TypeError, match="numpy array"):
        check_frame(frame)  # a host frame must be numpy
    with pytest.raises(ValueError, match=r"frame: expected \(H, W, 3\) uint8, got torch.float32 .*frame.to"):
        check_frame(frame.float(), on_device=True)
    with pytest.raises(ValueError, match=r"frame: expected \(H, W, 3\) uint8, got shape \(4, 5\)"):
        check_frame(frame[..., 0], on_device=True)
    with pytest.raises(ValueError, match="frame is empty"):
        check_frame(frame[:0], on_device=True)
    with pytest.raises(ValueError, match="frame is None"):
        check_frame(None, on_device=True)


@pytest.mark.parametrize("mode", ["udp", "classic"])
def test_frame_to_heatmap_inverts_heatmap_to_frame(mode):
    from vitpose_trt.geometry import frame_to_heatmap

    t = boxes_to_transforms(np.array([[30.0, 40.0, 130.0, 240.0], [-5.0, 7.5, 300.0, 90.0]]))
    coords = np.random.default_rng(3).uniform(-2, 66, (2, 5, 2))
    frame = heatmap_to_frame(coords, t, (64, 48), mode)
    np.testing.assert_allclose(frame_to_heatmap(frame, t, (64, 48), mode), coords, atol=1e-9)
    with pytest.raises(ValueError, match="mode"):
        frame_to_heatmap(frame, t, (64, 48), "dark")


@pytest.mark.parametrize("mode", ["udp", "classic"])
def test_identity_transform_maps_heatmap_pixels_onto_themselves(mode):
    from vitpose_trt.geometry import identity_transform

    t = identity_transform((64, 48), mode)[None]
    coords = np.random.default_rng(4).uniform(-1, 64, (1, 7, 2))
    np.testing.assert_allclose(heatmap_to_frame(coords, t, (64, 48), mode), coords, atol=1e-9)


def test_box_limits_found_by_fuzzing():
    """Two findings of tests/test_bindings_fuzz.py at the public boundary. A box smaller than float32 can
    hold ([0, 0, 0, 1e-40]) made the warp matrix divide by zero (ZeroDivisionError); boxes between ~2e6
    and the old 1e8 px limit gave crops in which OpenCV's int32 fixed point wrapped around, so the C++
    kernel and the cv2 reference disagreed. Both are refused now, and every box inside the limit keeps
    each crop coordinate part below the kernels' kFixedLimit (1e6 px), where they equal cv2 bit for bit."""
    with pytest.raises(ValueError, match="zero width and height"):
        check_boxes([[0, 0, 0, 1e-40]])
    with pytest.raises(ValueError, match=r"beyond \+-100000 px"):
        check_boxes([[-9e5, -9e5, 9e5, 9e5]])
    m = MAX_COORD
    extremes = [[-m, -m, m, m], [m - 1, -m, m, m], [-m, m - 1, m, m], [-m, -m, -m + 1, m], [m - 1e-3, m - 1, m, m]]
    for size in [(256, 192), (384, 288), (256, 256), (2, 2), (1024, 768)]:  # ViTPose crops: 3:4 to 1:1
        transforms = boxes_to_transforms(check_boxes(extremes), size)
        for mode in ("udp", "classic"):
            inv = inverse_warp_matrices(transforms, mode, size)
            ys, xs = np.mgrid[0:size[0], 0:size[1]].astype(np.float64)
            parts = [inv[:, 0, 1, None, None] * ys + inv[:, 0, 2, None, None], inv[:, 0, 0, None, None] * xs,
                     inv[:, 1, 1, None, None] * ys + inv[:, 1, 2, None, None], inv[:, 1, 0, None, None] * xs]
            assert max(np.abs(p).max() for p in parts) < 1e6, (size, mode)
