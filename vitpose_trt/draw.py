"""Draw keypoints and the COCO skeleton on a BGR frame (for `vitpose-trt infer` overlays)."""

from __future__ import annotations

import cv2
import numpy as np

from vitpose_trt.coco import SKELETON


def draw_poses(frame: np.ndarray, keypoints: np.ndarray, boxes=None, score_thr: float = 0.3) -> np.ndarray:
    """A copy of `frame` with boxes, limbs and joints; keypoints below `score_thr` are left out.

    Args:
        frame: HxWx3 uint8 BGR.
        keypoints: (N, K, 3) x, y, score.
        boxes: optional (N, >=4) x1, y1, x2, y2.
    """
    img = frame.copy()
    thickness = max(1, round(min(img.shape[:2]) / 300))
    for i, kpts in enumerate(keypoints):
        if boxes is not None:
            x1, y1, x2, y2 = (int(round(v)) for v in boxes[i][:4])
            cv2.rectangle(img, (x1, y1), (x2, y2), (0, 200, 0), thickness)
        visible = np.isfinite(kpts).all(axis=1) & (kpts[:, 2] > score_thr)
        if kpts.shape[0] == 17:
            for a, b in SKELETON:
                if visible[a] and visible[b]:
                    pa = tuple(int(round(v)) for v in kpts[a, :2])
                    pb = tuple(int(round(v)) for v in kpts[b, :2])
                    cv2.line(img, pa, pb, (255, 128, 0), thickness, cv2.LINE_AA)
        for k in np.flatnonzero(visible):
            p = tuple(int(round(v)) for v in kpts[k, :2])
            cv2.circle(img, p, thickness + 2, (0, 0, 255), -1, cv2.LINE_AA)
    return img
