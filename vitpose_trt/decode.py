"""Postprocess: heatmaps -> keypoints (x, y, score) in frame pixels (the numpy reference, and the kernels).

The numpy path is the readable reference, a transcription of mmpose 0.x `keypoints_from_heatmaps`:
    udp:     argmax, score = max; DARK-UDP: 11x11 Gaussian blur (cv2, reflect-101 border), clip to
             [0.001, 50], log, edge-pad, gradient + Hessian at the peak, one Newton step; map back
             with size / (W - 1).
    classic: argmax, score = max; +/-0.25 px toward the larger neighbour (only where 1 < x < W-1 and
             1 < y < H-1); map back with size / W.
Keypoints whose heatmap maximum is <= 0 (or NaN) sit at heatmap location (-1, -1) as in mmpose;
their DARK step is skipped (mmpose evaluates it on out-of-range padding, a meaningless number).
"""

from __future__ import annotations

import cv2
import numpy as np

from vitpose_trt import kernels
from vitpose_trt.cuda_runtime import runtime
from vitpose_trt.datasets import flip_index
from vitpose_trt.geometry import check_mode, heatmap_to_frame

DARK_KERNEL = 11  # the official test_cfg modulate_kernel; sigma = 0.3 * ((11 - 1) * 0.5 - 1) + 0.8 = 2


def merge_flip(heatmaps: np.ndarray, flipped: np.ndarray, mode: str, flip_pairs=None) -> np.ndarray:
    """Average the heatmaps with those of the flipped crops, flipped back (official flip test).

    classic also shifts the flipped-back heatmaps one pixel right (mmpose's shift_heatmap=True for
    non-UDP configs); udp needs no shift because its crop flip is exactly symmetric.
    """
    perm = flip_index(heatmaps.shape[1], flip_pairs)
    back = flipped[:, perm, :, ::-1]
    if mode == "classic":
        back = np.concatenate([back[..., :1], back[..., :-1]], axis=-1)
    return (heatmaps + back) * np.float32(0.5)


def max_preds(heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, K, H, W) -> locations (N, K, 2) float32 and maxima (N, K) float32.

    The first maximum wins ties (numpy's argmax); a NaN anywhere makes the maximum NaN.
    """
    n, k, h, w = heatmaps.shape
    flat = heatmaps.reshape(n, k, h * w)
    idx = np.argmax(flat, axis=2)
    maxvals = np.max(flat, axis=2)
    preds = np.stack([idx % w, idx // w], axis=-1).astype(np.float32)
    preds[~(maxvals > 0)] = -1.0  # mmpose: no positive response -> (-1, -1)
    return preds, maxvals


def dark_udp(preds: np.ndarray, heatmaps: np.ndarray, kernel: int = DARK_KERNEL) -> np.ndarray:
    """Refine integer peaks with one Newton step on the log of the blurred heatmap (DARK, UDP form)."""
    n, k, h, w = heatmaps.shape
    blurred = np.empty_like(heatmaps)
    for i in range(n):
        for j in range(k):
            blurred[i, j] = cv2.GaussianBlur(heatmaps[i, j], (kernel, kernel), 0)  # BORDER_REFLECT_101
    np.clip(blurred, 0.001, 50, out=blurred)
    np.log(blurred, out=blurred)
    pad = np.pad(blurred, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="edge")

    out = preds.copy()
    valid = preds[..., 0] >= 0
    ni, ki = np.nonzero(valid)
    x = preds[ni, ki, 0].astype(np.int64) + 1  # +1: coordinates in the padded map
    y = preds[ni, ki, 1].astype(np.int64) + 1

    def at(dx, dy):
        return pad[ni, ki, y + dy, x + dx]

    c = at(0, 0)
    dx = 0.5 * (at(1, 0) - at(-1, 0))
    dy = 0.5 * (at(0, 1) - at(0, -1))
    dxx = at(1, 0) - 2 * c + at(-1, 0)
    dyy = at(0, 1) - 2 * c + at(0, -1)
    dxy = 0.5 * (at(1, 1) - at(1, 0) - at(0, 1) + c + c - at(-1, 0) - at(0, -1) + at(-1, -1))
    # Newton step -H^-1 g with H + eps*I as mmpose (float64, like its np.linalg.inv), written as the
    # closed-form 2x2 inverse so a singular Hessian keeps the integer peak instead of raising.
    eps = float(np.finfo(np.float32).eps)
    a, b, d = dxx.astype(np.float64) + eps, dxy.astype(np.float64), dyy.astype(np.float64) + eps
    det = a * d - b * b
    ok = det != 0
    safe = np.where(ok, det, 1.0)
    step_x = np.where(ok, (d * dx - b * dy) / safe, 0.0)
    step_y = np.where(ok, (a * dy - b * dx) / safe, 0.0)
    out[ni, ki] -= np.stack([step_x, step_y], -1).astype(np.float32)
    return out


def quarter_offset(preds: np.ndarray, heatmaps: np.ndarray) -> np.ndarray:
    """Shift each interior peak 0.25 px toward its larger neighbour along x and y."""
    n, k, h, w = heatmaps.shape
    out = preds.copy()
    for i in range(n):
        for j in range(k):
            px, py = int(preds[i, j, 0]), int(preds[i, j, 1])
            if 1 < px < w - 1 and 1 < py < h - 1:
                hm = heatmaps[i, j]
                diff = np.array([hm[py, px + 1] - hm[py, px - 1], hm[py + 1, px] - hm[py - 1, px]])
                out[i, j] += np.sign(diff) * 0.25
    return out


def _check_heatmaps(heatmaps, transforms, flipped):
    if not isinstance(heatmaps, np.ndarray):
        raise TypeError(f"heatmaps must be a numpy array (N, K, H, W), got {type(heatmaps).__name__}")
    if heatmaps.ndim != 4:
        raise ValueError(f"heatmaps must have shape (N, K, H, W), got {heatmaps.shape}")
    if heatmaps.dtype not in (np.float32, np.float16):
        raise ValueError(f"heatmaps must be float32 or float16, got {heatmaps.dtype}")
    transforms = np.asarray(transforms, dtype=np.float32)
    if transforms.shape != (heatmaps.shape[0], 4):
        raise ValueError(f"transforms must have shape ({heatmaps.shape[0]}, 4) to match heatmaps, got {transforms.shape}")
    if heatmaps.shape[2] < 2 or heatmaps.shape[3] < 2:
        raise ValueError(f"heatmaps must be at least 2x2, got {heatmaps.shape[2:]}")
    if flipped is not None and (not isinstance(flipped, np.ndarray) or flipped.shape != heatmaps.shape):
        shape = getattr(flipped, "shape", None)
        raise ValueError(f"flipped heatmaps must be a numpy array of shape {heatmaps.shape}, got {shape}")
    return transforms


def postprocess(heatmaps, transforms, mode: str = "udp", *, flipped=None, flip_pairs=None, impl: str = "numpy",
                threads: int | None = None):
    """Decode heatmaps into keypoints.

    Args:
        heatmaps: (N, K, H, W) float32 or float16. With impl="cuda", a CUDA array (torch tensor) too.
        transforms: (N, 4) from `preprocess`.
        mode: "udp" or "classic"; must match the mode the crops were made with.
        flipped: heatmaps of the horizontally flipped crops (flip test), same shape, or None.
        flip_pairs: left/right keypoint pairs for flip test (COCO's by default when K = 17).
        impl: "numpy" (reference), "cpp" or "cuda".
        threads: CPU threads for impl="cpp" (None: the extension's default).

    Returns:
        (N, K, 3) float32 numpy: x, y in frame pixels, score = heatmap maximum.
    """
    check_mode(mode)
    kernels.check_impl(impl)
    if impl == "cuda":
        return _postprocess_cuda(heatmaps, transforms, mode, flipped, flip_pairs)
    transforms = _check_heatmaps(heatmaps, transforms, flipped)
    n, k = heatmaps.shape[:2]
    if impl == "cpp":
        out = np.empty((n, k, 3), dtype=np.float32)
        fidx = None if flipped is None else np.asarray(flip_index(k, flip_pairs), dtype=np.int32)
        kernels.decode(np.ascontiguousarray(heatmaps), transforms, out, mode,
                       None if flipped is None else np.ascontiguousarray(flipped), fidx, threads=threads)
        return out

    hm = heatmaps.astype(np.float32)
    if flipped is not None:
        hm = merge_flip(hm, flipped.astype(np.float32), mode, flip_pairs)
    preds, maxvals = max_preds(hm)
    preds = dark_udp(preds, hm) if mode == "udp" else quarter_offset(preds, hm)
    out = np.empty((n, k, 3), dtype=np.float32)
    out[..., :2] = heatmap_to_frame(preds, transforms, hm.shape[2:], mode)
    out[..., 2] = maxvals
    return out


def _postprocess_cuda(heatmaps, transforms, mode, flipped, flip_pairs):
    # lazy: torch (and cuda_memory, which imports it) only for the CUDA path; the decode module stays light
    import torch

    from vitpose_trt.cuda_memory import device_array

    rt = runtime()

    def on_device(array, name):  # host arrays go up; a foreign producer's stream is waited for
        if isinstance(array, np.ndarray):
            host = torch.from_numpy(np.ascontiguousarray(array))
            tensor = rt.empty(host.shape, host.dtype, rt.device(None))
            rt.copy(tensor, host)
            return tensor
        tensor, producer = device_array(array, None, name)
        if producer is not None:
            rt.current_stream(tensor.device).wait_stream(producer)
        return tensor.contiguous()  # dense memory for the kernel

    hm = on_device(heatmaps, "heatmaps")
    if hm.ndim != 4:
        raise ValueError(f"heatmaps must have shape (N, K, H, W), got {tuple(hm.shape)}")
    n, k = hm.shape[:2]
    transforms = np.ascontiguousarray(transforms, dtype=np.float32)  # the kernel checks its (N, 4) shape
    t = rt.empty(transforms.shape, torch.float32, hm.device)
    rt.copy(t, torch.from_numpy(transforms))
    out = rt.empty((n, k, 3), torch.float32, hm.device)
    fl = fidx = None
    if flipped is not None:
        fl = on_device(flipped, "flipped")
        fidx = rt.empty((k,), torch.int32, hm.device)
        rt.copy(fidx, torch.tensor(flip_index(k, flip_pairs), dtype=torch.int32))
    if n:
        rt.decode(hm, t, out, mode, fl, fidx)
    host = torch.empty((n, k, 3), dtype=torch.float32)
    rt.copy(host, out)
    rt.current_stream(hm.device).synchronize()
    return host.numpy()
