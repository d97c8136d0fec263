"""The crop stage (vitpose_trt/crop.py): `preprocess`, its numpy/OpenCV reference (`warp_crop`, `normalize`)
and the ImageNet constants. The C++ and CUDA kernels are compared with this reference in
test_kernels_cpu.py / test_kernels_cuda.py; here impl="cuda" runs on the CPU stand-in for CUDA."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from tests.standins.cuda import DEVICE
from vitpose_trt.crop import IMAGENET_MEAN, IMAGENET_STD, MEAN_RGB, STD_RGB, normalize, preprocess, warp_crop
from vitpose_trt.geometry import boxes_to_transforms, warp_matrix

# --------------------------------------------------------------------------------------------
# the numpy/OpenCV reference


@pytest.mark.parametrize("mode", ["udp", "classic"])
def test_preprocess_is_cv2_warp_with_documented_matrix(mode):
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 256, (120, 90, 3), dtype=np.uint8)
    boxes = np.array([[10, 5, 60, 100], [-20, -30, 40, 50], [80, 100, 200, 300]], dtype=np.float64)
    crops, transforms = preprocess(frame, boxes, mode)
    for i, t in enumerate(transforms):
        ref = cv2.warpAffine(frame, warp_matrix(t, mode), (192, 256), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        np.testing.assert_array_equal(crops[i], normalize(ref))
    # a box wholly outside the frame gives the normalized value of black everywhere
    black = normalize(np.zeros((256, 192, 3), np.uint8))
    np.testing.assert_array_equal(crops[2][:, -10:, -10:], black[:, -10:, -10:])


def test_flip_crops_are_mirrors():
    frame = np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    crops, _ = preprocess(frame, [[5, 5, 50, 60], [0, 0, 64, 64]], flip=True)
    assert crops.shape == (4, 3, 256, 192)
    np.testing.assert_array_equal(crops[2:], crops[:2, :, :, ::-1])


def test_bgr_to_rgb_and_imagenet_normalization():
    pixel = np.array([[[255, 0, 0]]], dtype=np.uint8)  # pure blue in BGR
    out = normalize(pixel)[:, 0, 0]
    np.testing.assert_allclose(out, [(0 - 0.485) / 0.229, (0 - 0.456) / 0.224, (1 - 0.406) / 0.225], rtol=1e-6)


def test_unknown_mode_is_an_error():
    with pytest.raises(ValueError, match="unknown mode"):
        preprocess(np.zeros((8, 8, 3), np.uint8), [[0, 0, 4, 4]], mode="dark")


def test_one_pixel_frame_and_huge_box():
    frame = np.full((1, 1, 3), 200, np.uint8)
    crops, _ = preprocess(frame, [[-1000, -1000, 1000, 1000], [0, 0, 1, 1]])
    assert np.isfinite(crops).all()


def test_the_imagenet_mean_colour_normalizes_to_zero_and_one_std_above_to_one():
    """normalize reads BGR and uses the ImageNet statistics in RGB order: a pixel of the mean colour
    (rounded to levels) is ~0 in every channel, one standard deviation brighter is ~1. Swapped
    channels would be off by up to 0.34."""
    np.testing.assert_array_equal(MEAN_RGB, np.array(IMAGENET_MEAN, np.float32))
    np.testing.assert_array_equal(STD_RGB, np.array(IMAGENET_STD, np.float32))
    rgb_mean, rgb_std = np.array(IMAGENET_MEAN) * 255, np.array(IMAGENET_STD) * 255
    levels = np.stack([np.round(rgb_mean), np.round(rgb_mean + rgb_std)])[:, None, ::-1]  # (2, 1, 3) BGR
    out = normalize(levels.astype(np.uint8))  # (3, 2, 1)
    assert out.shape == (3, 2, 1) and out.dtype == np.float32
    half_level = 0.5 / rgb_std  # the rounding to whole levels, in normalized units
    assert (np.abs(out[:, 0, 0]) <= half_level).all(), out[:, 0, 0]
    assert (np.abs(out[:, 1, 0] - 1.0) <= half_level).all(), out[:, 1, 0]


@pytest.mark.parametrize("mode", ["udp", "classic"])
@pytest.mark.parametrize("input_size", [(256, 192), (384, 288), (256, 256)])
def test_warp_crop_puts_the_box_in_the_middle_of_the_crop(mode, input_size):
    """A white box of the crop's aspect ratio on black: boxes_to_transforms pads it by 1.25, so its
    edges land 10 % of the crop inside each border, whatever the input size."""
    frame = np.zeros((400, 500, 3), np.uint8)
    h, w = input_size
    bh = 192
    bw = bh * w // h  # the crop's aspect ratio, in whole pixels
    frame[60:60 + bh, 100:100 + bw] = 255
    box = np.array([[100.0, 60.0, 100.0 + bw, 60.0 + bh]])
    crop = warp_crop(frame, boxes_to_transforms(box, input_size)[0], mode, input_size)
    assert crop.shape == (h, w, 3) and crop.dtype == np.uint8
    rows, cols = np.nonzero(crop[..., 0] > 127)
    # within half a frame pixel (a pixel's area vs its center) plus one crop pixel (rounding)
    tol = 0.5 * 0.8 * h / bh + 1.0
    assert abs(rows.min() - 0.1 * h) <= tol and abs(rows.max() + 1 - 0.9 * h) <= tol
    assert abs(cols.min() - 0.1 * w) <= tol and abs(cols.max() + 1 - 0.9 * w) <= tol


# --------------------------------------------------------------------------------------------
# preprocess


def test_preprocess_other_input_sizes_and_score_columns():
    rng = np.random.default_rng(5)
    frame = rng.integers(0, 256, (90, 120, 3), dtype=np.uint8)
    boxes = np.array([[10, 5, 60, 80, 0.9], [30, 20, 110, 70, 0.1]])
    crops, transforms = preprocess(frame, boxes, "udp", input_size=(384, 288))
    assert crops.shape == (2, 3, 384, 288) and crops.dtype == np.float32
    np.testing.assert_array_equal(transforms, boxes_to_transforms(boxes[:, :4], (384, 288)))
    for i, t in enumerate(transforms):
        np.testing.assert_array_equal(crops[i], normalize(warp_crop(frame, t, "udp", (384, 288))))
    same, _ = preprocess(frame, boxes[:, :4], "udp", input_size=(384, 288))  # the score column is ignored
    np.testing.assert_array_equal(crops, same)


@pytest.mark.parametrize("flip", [False, True])
def test_preprocess_without_boxes(flip):
    crops, transforms = preprocess(np.zeros((20, 30, 3), np.uint8), np.zeros((0, 5)), flip=flip)
    assert crops.shape == (0, 3, 256, 192) and crops.dtype == np.float32
    assert transforms.shape == (0, 4)


@pytest.mark.parametrize("view", ["mirrored", "every_other_row", "channel_last_slice"])
def test_preprocess_of_frame_views_equals_their_contiguous_copy(view):
    """Views OpenCV may refuse (negative or overlapping strides) are cropped as their copies are."""
    big = np.random.default_rng(6).integers(0, 256, (80, 100, 4), dtype=np.uint8)
    frame = {"mirrored": big[:, ::-1, :3], "every_other_row": big[::2, :, :3],
             "channel_last_slice": big[:, :, 1:]}[view]
    assert not frame.flags.c_contiguous
    boxes = [[5, 5, 60, 35], [-10, 0, 30, 40]]
    got, _ = preprocess(frame, boxes, "classic", flip=True)
    want, _ = preprocess(np.ascontiguousarray(frame), boxes, "classic", flip=True)
    np.testing.assert_array_equal(got, want)


def test_preprocess_checks_its_inputs():
    frame = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match="unknown impl 'opencv'"):
        preprocess(frame, [[0, 0, 4, 4]], impl="opencv")
    with pytest.raises(ValueError, match="uint8"):
        preprocess(frame.astype(np.float32), [[0, 0, 4, 4]])
    with pytest.raises(ValueError, match="x2 < x1"):
        preprocess(frame, [[4, 0, 0, 4]])


@pytest.mark.parametrize("mode", ["udp", "classic"])
def test_preprocess_cpp_is_the_reference(mode):
    pytest.importorskip("vitpose_trt._C", reason="vitpose_trt._C is not built (pip install -e .)")
    frame = np.random.default_rng(7).integers(0, 256, (70, 50, 3), dtype=np.uint8)
    boxes = [[3, 4, 40, 60], [10, -5, 30, 20]]
    got, transforms = preprocess(frame, boxes, mode, impl="cpp", flip=True, threads=1)
    want, want_transforms = preprocess(frame, boxes, mode, flip=True)
    np.testing.assert_array_equal(transforms, want_transforms)
    if int(cv2.__version__.split(".")[0]) < 5:  # OpenCV 5 rounds differently (test_kernels_cpu.py)
        np.testing.assert_array_equal(got, want)
    else:
        np.testing.assert_allclose(got, want, atol=1.1 / 255 / 0.225)


# --------------------------------------------------------------------------------------------
# impl="cuda", on the CPU stand-in for CUDA


def test_preprocess_cuda_uploads_a_host_frame_and_returns_device_crops(standin):
    pytest.importorskip("vitpose_trt._C", reason="vitpose_trt._C is not built (pip install -e .)")
    frame = np.random.default_rng(8).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    boxes = [[3, 4, 40, 50], [20, 10, 70, 55]]
    crops, transforms = preprocess(frame, boxes, "udp", impl="cuda", flip=True)
    assert isinstance(crops, torch.Tensor) and standin.owns(crops) and crops.shape == (4, 3, 256, 192)
    want, want_transforms = preprocess(frame, boxes, "udp", impl="cpp", flip=True)
    np.testing.assert_array_equal(crops.numpy(), want)
    np.testing.assert_array_equal(transforms, want_transforms)
    (warp,) = standin.ops_named("warp")
    upload = standin.ops_named("copy")[0]
    assert upload.writes and warp.reads[0] == upload.writes[0]  # the kernel reads the uploaded frame


def test_preprocess_cuda_without_boxes_runs_no_kernel(standin):
    crops, transforms = preprocess(standin.to_device(np.zeros((20, 30, 3), np.uint8)), [], impl="cuda", flip=True)
    assert tuple(crops.shape) == (0, 3, 256, 192) and crops.dtype == torch.float32 and crops.device == DEVICE
    assert transforms.shape == (0, 4)
    assert not standin.ops_named("warp")
