"""The benchmark's correctness column: the FP32 reference of a scenario, and how far an
alternative's keypoints lie from it, by `vitpose_trt.agreement`'s tie rule and metric."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from vitpose_trt.agreement import TIE_FRACTION, Stats, compare_to_reference, keypoint_distance
from vitpose_trt.batching import chunks
from vitpose_trt.crop import preprocess
from vitpose_trt.decode import merge_flip, postprocess


@dataclass
class Reference:
    """The FP32 reference of one scenario: keypoints (N, K, 3), the heatmaps they were decoded from
    (N, K, h, w; flip-merged with flip test) and the transforms (N, 4)."""

    keypoints: np.ndarray
    heatmaps: np.ndarray
    transforms: np.ndarray
    mode: str = "udp"


def reference_keypoints(model, frame: np.ndarray, boxes: np.ndarray, mode: str = "udp", flip: bool = False,
                        flip_pairs=None, chunk: int = 16) -> Reference:
    """The FP32 reference: PyTorch FP32 on the CPU + the numpy/OpenCV pre/post."""
    input_size = tuple(model.config.input_size)
    crops, transforms = preprocess(frame, boxes, mode, input_size=input_size, impl="numpy", flip=flip)
    n = len(boxes)
    with torch.inference_mode():
        heat = np.concatenate([model(torch.from_numpy(crops[lo:hi])).numpy() for lo, hi in chunks(len(crops), chunk)])
    if flip:
        # the tie rule reads the heatmaps the keypoints were decoded from: the flip-merged ones
        merged = merge_flip(heat[:n], heat[n:], mode, flip_pairs)
    else:
        merged = heat
    keypoints = postprocess(merged, transforms, mode, impl="numpy")
    return Reference(keypoints=keypoints, heatmaps=merged, transforms=transforms, mode=mode)


def keypoint_disagreement(keypoints: np.ndarray, reference: Reference | np.ndarray,
                          tie_fraction: float = TIE_FRACTION) -> dict[str, Any]:
    """How far an alternative's keypoints are from the reference, in frame pixels.

    Args:
        keypoints: (N, K, 3) from the alternative.
        reference: a `Reference`, or a bare (N, K, 3) keypoint array (then no tie rule).
        tie_fraction: the tie rule's margin (`vitpose_trt.agreement`).

    Returns:
        max_px, median_px: over all keypoints (x, y distance; NaN or a shape mismatch is inf).
        ties: keypoints the tie rule does not count (the reference's peak has a near-equal rival)
            whose argmax went more than 1.5 heatmap px away: flipped ties, which any rounding
            difference causes on flat (random-weight) heatmaps.
        max_px_excl_ties: max_px over the keypoints the tie rule counts (None without heatmaps).
        accuracy: the full `vitpose_trt.agreement.Disagreement` as a dict (None without heatmaps).
    """
    ref_kp = reference.keypoints if isinstance(reference, Reference) else reference
    kp = np.asarray(keypoints, dtype=np.float64)
    ref = np.asarray(ref_kp, dtype=np.float64)
    if kp.shape != ref.shape:
        return {"max_px": math.inf, "median_px": math.inf, "ties": 0, "max_px_excl_ties": math.inf,
                "accuracy": None}
    if kp.size == 0:
        return {"max_px": 0.0, "median_px": 0.0, "ties": 0, "max_px_excl_ties": 0.0, "accuracy": None}
    d = Stats.of(keypoint_distance(kp, ref))
    out: dict[str, Any] = {"max_px": d.max, "median_px": d.median, "ties": 0, "max_px_excl_ties": None,
                           "accuracy": None}
    if not isinstance(reference, Reference):
        return out
    acc = compare_to_reference(kp, ref, reference.heatmaps, reference.transforms, reference.mode,
                               fraction=tie_fraction)
    out["ties"] = acc.flipped_ties
    out["max_px_excl_ties"] = acc.frame_px.max if acc.frame_px is not None else None
    out["accuracy"] = acc.as_dict()
    return out
