"""Boxes -> center/scale -> affine warp matrices, for the two pipelines ("udp" and "classic").

A *transform* is one row [cx, cy, w, h] (float32, frame pixels): the center of the padded box and
its size after it was widened to the model's aspect ratio and padded by 1.25 (mmpose's
`center` and `scale * 200`). Crops are warped from it, and keypoints are mapped back through it.
"""

from __future__ import annotations

import cv2
import numpy as np

MODES = ("udp", "classic")
PADDING = 1.25  # context around the person, as the official top-down configs
# Box coordinates are refused beyond MAX_COORD px: far beyond any frame OpenCV can warp (32767 px),
# and low enough that every crop coordinate of such a box stays inside the range where OpenCV 4's
# int32 fixed-point warpAffine (the reference crop) is defined and the kernels equal it
# (csrc/warp.h's kFixedLimit, 1e6 px: for crops of aspect 3:4 to 1:1, a box's padded, aspect-widened
# extent is below 3.4x its largest coordinate). Beyond, cv2 wraps around and the two impls disagree
# (found by tests/test_bindings_fuzz.py).
MAX_COORD = 1e5
# Boxes whose width and height are both below this are refused: smaller ones underflow the float32
# transforms to zero (a division by zero in the warp matrix).
MIN_SIZE = 1e-3
PIXEL_STD = 200.0  # mmpose expresses scale in units of 200 px; kept to reproduce its float32 rounding


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}: expected one of {MODES}")
    return mode


def check_frame(frame, *, on_device: bool = False):
    """A frame must be an HxWx3 uint8 BGR numpy array (OpenCV's convention); any strides.

    The one frame check of the package: host frames here, device frames too (`on_device=True`: a
    CUDA tensor, as `cuda_memory.device_array` wraps one, checked by its shape and dtype only; its
    memory is never read on the host). Returns `frame` itself.
    """
    if frame is None:
        raise ValueError("frame is None (did cv2.imread or a video read fail?)")
    if not on_device and not isinstance(frame, np.ndarray):
        raise TypeError(f"frame must be a numpy array (HxWx3 uint8 BGR), got {type(frame).__name__}")
    shape, dtype = tuple(frame.shape), frame.dtype
    if len(shape) != 3 or shape[2] != 3:
        raise ValueError(f"frame: expected (H, W, 3) uint8, got shape {shape}")
    if str(dtype).removeprefix("torch.") != "uint8":  # numpy's or torch's dtype, without importing torch
        cast = "frame.to(torch.uint8)" if on_device else "frame.astype(np.uint8)"
        raise ValueError(f"frame: expected (H, W, 3) uint8, got {dtype} (convert explicitly, e.g. {cast})")
    if shape[0] < 1 or shape[1] < 1:
        raise ValueError(f"frame is empty: shape {shape}")
    return frame


def check_boxes(boxes, *, scores: bool = False) -> np.ndarray:
    """Boxes as an (N, 4) float64 array of x1, y1, x2, y2; an (N, 5) array's score column is dropped.

    The one box check of the package (the pipeline's input, detections read from files, a
    detector's output). With `scores=True` the result is (N, 5) x1, y1, x2, y2, score instead: the
    given scores (which must be finite too), or 1.0 for (N, 4) boxes.
    """
    if boxes is None:
        raise ValueError("boxes is None: give an (N, 4) array (np.zeros((0, 4)) for no people)")
    try:
        arr = np.asarray(boxes, dtype=np.float64)
    except (ValueError, TypeError) as e:
        raise ValueError(f"boxes must be numbers in an (N, 4) x1,y1,x2,y2 or (N, 5) array with rows of equal "
                         f"length; got {type(boxes).__name__} that numpy cannot read as one ({e})") from None
    if arr.size == 0:
        return np.zeros((0, 5 if scores else 4), dtype=np.float64)
    if arr.ndim == 1 and arr.shape[0] in (4, 5):
        raise ValueError(f"boxes must be 2-D (N, 4) or (N, 5); got a single box of shape {arr.shape}: use [box]")
    if arr.ndim != 2 or arr.shape[1] not in (4, 5):
        raise ValueError(f"boxes must have shape (N, 4) x1,y1,x2,y2 or (N, 5) with a score, got {arr.shape}")
    score = arr[:, 4].copy() if arr.shape[1] == 5 else np.ones(len(arr))
    arr = arr[:, :4]
    bad = ~np.isfinite(arr).all(axis=1) | (scores & ~np.isfinite(score))
    if bad.any():
        raise ValueError(f"boxes {np.flatnonzero(bad).tolist()} contain NaN or inf")
    huge = (np.abs(arr) > MAX_COORD).any(axis=1)
    if huge.any():
        raise ValueError(f"boxes {np.flatnonzero(huge).tolist()} have coordinates beyond +-{MAX_COORD:g} px: no frame "
                         "is that large (OpenCV's fixed-point crop arithmetic would overflow); check the detector's "
                         "output")
    inverted = (arr[:, 2] < arr[:, 0]) | (arr[:, 3] < arr[:, 1])
    if inverted.any():
        raise ValueError(f"boxes {np.flatnonzero(inverted).tolist()} have x2 < x1 or y2 < y1 (expected x1,y1,x2,y2)")
    empty = (arr[:, 2] - arr[:, 0] < MIN_SIZE) & (arr[:, 3] - arr[:, 1] < MIN_SIZE)
    if empty.any():
        raise ValueError(f"boxes {np.flatnonzero(empty).tolist()} have zero width and height (both below "
                         f"{MIN_SIZE:g} px)")
    return np.concatenate([arr, score[:, None]], axis=1) if scores else arr


def boxes_to_transforms(boxes: np.ndarray, input_size: tuple[int, int] = (256, 192)) -> np.ndarray:
    """(N, 4) x1,y1,x2,y2 -> (N, 4) float32 [cx, cy, w, h], exactly as mmpose's `_xywh2cs` (test mode).

    The box grows along one side to the crop's aspect ratio (W/H = 192/256), then by 1.25.
    """
    transforms = np.zeros((len(boxes), 4), dtype=np.float32)
    aspect = input_size[1] / input_size[0]
    for i, (x1, y1, x2, y2) in enumerate(boxes):
        x, y, w, h = x1, y1, x2 - x1, y2 - y1
        center = np.array([x + w * 0.5, y + h * 0.5], dtype=np.float32)
        if w > aspect * h:
            h = w * 1.0 / aspect
        elif w < aspect * h:
            w = h * aspect
        scale = np.array([w / PIXEL_STD, h / PIXEL_STD], dtype=np.float32) * np.float32(PADDING)
        transforms[i, :2] = center
        transforms[i, 2:] = scale * np.float32(PIXEL_STD)
    return transforms


def warp_matrix(transform: np.ndarray, mode: str, input_size: tuple[int, int] = (256, 192)) -> np.ndarray:
    """The (2, 3) float32 matrix mapping frame pixels to crop pixels, as cv2.warpAffine takes it.

    udp: mmpose's `get_warp_matrix(0, 2*center, input_size - 1, size)`: the box's edges land on the
        centers of the crop's first and last pixels (the unbiased data processing of UDP).
    classic: mmpose's `get_affine_transform(center, scale, 0, input_size)`: one uniform scale
        W_crop / w, the box center on the crop center.
    """
    cx, cy, w, h = (float(v) for v in transform)
    out_h, out_w = input_size
    if mode == "udp":
        sx, sy = (out_w - 1.0) / w, (out_h - 1.0) / h
        m = [[sx, 0.0, sx * (-cx + 0.5 * w)], [0.0, sy, sy * (-cy + 0.5 * h)]]
    elif mode == "classic":
        s = out_w / w
        m = [[s, 0.0, out_w * 0.5 - s * cx], [0.0, s, out_h * 0.5 - s * cy]]
    else:
        check_mode(mode)
    return np.array(m, dtype=np.float32)  # float32 like mmpose, so cv2 sees the same numbers


def inverse_warp_matrices(transforms: np.ndarray, mode: str, input_size: tuple[int, int] = (256, 192)) -> np.ndarray:
    """(N, 2, 3) float64 crop -> frame matrices: what cv2.warpAffine computes internally, for the kernels."""
    inv = np.zeros((len(transforms), 2, 3), dtype=np.float64)
    for i, t in enumerate(transforms):
        inv[i] = cv2.invertAffineTransform(warp_matrix(t, mode, input_size).astype(np.float64))
    return inv


def _heatmap_steps(transforms: np.ndarray, heatmap_size: tuple[int, int], mode: str):
    """(transforms as (N, 1, 4) float64, frame px per heatmap px along x, along y) for `mode`.

    udp divides the box by (W - 1, H - 1) (pixel centers at both ends); classic by (W, H).
    """
    check_mode(mode)
    hm_h, hm_w = heatmap_size
    t = np.asarray(transforms, dtype=np.float64)[:, None, :]  # (N, 1, 4)
    if mode == "udp":
        return t, t[..., 2] / (hm_w - 1.0), t[..., 3] / (hm_h - 1.0)
    return t, t[..., 2] / hm_w, t[..., 3] / hm_h


def heatmap_to_frame(coords: np.ndarray, transforms: np.ndarray, heatmap_size: tuple[int, int], mode: str) -> np.ndarray:
    """Map (N, K, 2) heatmap coordinates to frame pixels (mmpose's `transform_preds`).

    udp divides the box by (W - 1, H - 1) (pixel centers at both ends); classic by (W, H).
    """
    t, step_x, step_y = _heatmap_steps(transforms, heatmap_size, mode)
    out = np.empty(coords.shape, dtype=np.float64)
    out[..., 0] = coords[..., 0] * step_x + t[..., 0] - t[..., 2] * 0.5
    out[..., 1] = coords[..., 1] * step_y + t[..., 1] - t[..., 3] * 0.5
    return out


def frame_to_heatmap(xy: np.ndarray, transforms: np.ndarray, heatmap_size: tuple[int, int], mode: str) -> np.ndarray:
    """The inverse of `heatmap_to_frame`: (N, K, 2) frame pixels -> heatmap coordinates (float64).

    Used to measure, in heatmap pixels, how far keypoints that arrive in frame pixels lie apart.
    """
    t, step_x, step_y = _heatmap_steps(transforms, heatmap_size, mode)
    xy = np.asarray(xy, dtype=np.float64)
    out = np.empty(xy.shape, dtype=np.float64)
    out[..., 0] = (xy[..., 0] - t[..., 0] + t[..., 2] * 0.5) / step_x
    out[..., 1] = (xy[..., 1] - t[..., 1] + t[..., 3] * 0.5) / step_y
    return out


def identity_transform(heatmap_size: tuple[int, int], mode: str) -> np.ndarray:
    """The (4,) float32 [cx, cy, w, h] for which `heatmap_to_frame` is the identity: decoding with
    it gives keypoints in heatmap pixels (to compare two heatmap batches in the model's own units).

    udp scales by box / (W - 1), classic by box / W, both offset by center - box / 2.
    """
    check_mode(mode)
    h, w = heatmap_size
    if mode == "udp":
        return np.array([(w - 1) / 2, (h - 1) / 2, w - 1, h - 1], dtype=np.float32)
    return np.array([w / 2, h / 2, w, h], dtype=np.float32)
