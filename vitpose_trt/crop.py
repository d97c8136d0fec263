"""Preprocess: frame + boxes -> normalized RGB crops (the numpy reference, and the kernels).

The numpy/OpenCV path is the readable reference the C++ and CUDA kernels are tested against:
cv2.warpAffine (bilinear, zero border) -> BGR to RGB -> /255 -> ImageNet mean/std, as the official
ViTPose test pipeline (TopDownAffine, ToTensor, NormalizeTensor).
"""

from __future__ import annotations

import cv2
import numpy as np

from vitpose_trt import kernels
from vitpose_trt.cuda_runtime import runtime
from vitpose_trt.geometry import (
    boxes_to_transforms,
    check_boxes,
    check_frame,
    check_mode,
    inverse_warp_matrices,
    warp_matrix,
)

# ImageNet statistics of levels / 255, RGB (the official NormalizeTensor): their one home. csrc/warp.h
# folds the same numbers into its kernels (tests/test_kernels_cpu.py ties them to these bit for bit), and
# RTMDet's BGR mean/std of raw levels are these x 255 (detect.py; tests/test_letterbox.py ties those).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MEAN_RGB = np.array(IMAGENET_MEAN, dtype=np.float32)
STD_RGB = np.array(IMAGENET_STD, dtype=np.float32)


def normalize(crop_bgr: np.ndarray) -> np.ndarray:
    """One HxWx3 uint8 BGR crop -> (3, H, W) float32 normalized RGB."""
    rgb = crop_bgr[:, :, ::-1].astype(np.float32) / 255.0
    return ((rgb - MEAN_RGB) / STD_RGB).transpose(2, 0, 1)


def warp_crop(frame: np.ndarray, transform: np.ndarray, mode: str, input_size: tuple[int, int]) -> np.ndarray:
    """One box's uint8 BGR crop, exactly as the official pipeline's cv2.warpAffine call."""
    m = warp_matrix(transform, mode, input_size)
    return cv2.warpAffine(frame, m, (input_size[1], input_size[0]), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def preprocess(frame, boxes, mode: str = "udp", *, input_size: tuple[int, int] = (256, 192),
               impl: str = "numpy", flip: bool = False, threads: int | None = None):
    """Crop and normalize every box of one frame.

    Args:
        frame: HxWx3 uint8 BGR image (OpenCV convention). With impl="cuda" it may also be a CUDA
            array (any object with `__cuda_array_interface__`, e.g. a torch tensor).
        boxes: (N, 4) x1, y1, x2, y2 in frame pixels; an (N, 5) array's score column is ignored.
        mode: "udp" (official ViTPose) or "classic" (get_affine_transform warp).
        input_size: (H, W) of the model input.
        impl: "numpy" (reference), "cpp" (the extension's CPU kernel) or "cuda" (GPU kernel;
            crops come back as a torch CUDA tensor).
        flip: also return the horizontally flipped crops, stacked after the N crops (2N in all),
            for flip test.
        threads: CPU threads for impl="cpp" (None: the extension's default).

    Returns:
        crops: (N, 3, H, W) float32 (or (2N, ...) with flip), normalized RGB.
        transforms: (N, 4) float32 [cx, cy, w, h] per box, for `postprocess`.
    """
    check_mode(mode)
    kernels.check_impl(impl)
    boxes = check_boxes(boxes)
    transforms = boxes_to_transforms(boxes, input_size)
    n_out = 2 * len(boxes) if flip else len(boxes)
    if impl == "cuda":
        return _preprocess_cuda(frame, transforms, mode, input_size, flip), transforms
    frame = check_frame(frame)
    if impl == "cpp":
        crops = np.empty((n_out, 3, *input_size), dtype=np.float32)
        kernels.warp(frame, inverse_warp_matrices(transforms, mode, input_size), crops, flip, threads=threads)
        return crops, transforms
    crops = np.empty((n_out, 3, *input_size), dtype=np.float32)
    frame = np.ascontiguousarray(frame)  # cv2 refuses some valid views (rows that overlap: row stride < 3W)
    for i, t in enumerate(transforms):
        crops[i] = normalize(warp_crop(frame, t, mode, input_size))
    if flip:
        crops[len(boxes):] = crops[: len(boxes), :, :, ::-1]
    return crops, transforms


def _preprocess_cuda(frame, transforms, mode, input_size, flip):
    # lazy: torch (and cuda_memory, which imports it) only for the CUDA path; the crop module stays light
    import torch

    from vitpose_trt.cuda_memory import as_cuda_frame

    rt = runtime()
    frame_dev = as_cuda_frame(frame)  # waits for a foreign producer's stream
    n = len(transforms)
    crops = rt.empty((2 * n if flip else n, 3, *input_size), torch.float32, frame_dev.device)
    if n:
        inv = rt.empty((n, 2, 3), torch.float64, frame_dev.device)
        rt.copy(inv, torch.from_numpy(inverse_warp_matrices(transforms, mode, input_size)))
        rt.warp(frame_dev, inv, crops, flip)
    return crops
