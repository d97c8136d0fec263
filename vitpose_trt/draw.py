"""Draw keypoints and their dataset's skeleton on a BGR frame (for `vitpose-trt infer` overlays)."""

from __future__ import annotations

import cv2
import numpy as np

from vitpose_trt.datasets import Dataset

BOX_COLOUR = (0, 200, 0)
POINT_COLOUR = (0, 0, 255)  # keypoints of a model without a known dataset


def draw_poses(frame: np.ndarray, keypoints: np.ndarray, boxes=None, score_thr: float = 0.3,
               dataset: Dataset | None = None) -> np.ndarray:
    """A copy of `frame` with boxes, limbs and joints; keypoints below `score_thr` are left out.

    Limbs and joints take the dataset's colours; the parts a dataset marks small (COCO-WholeBody's
    face and hands) get one-pixel lines and dots, so a face's 68 points stay readable next to the body.
    Without a dataset (a model of unknown K) only the joints are drawn.

    Args:
        frame: HxWx3 uint8 BGR.
        keypoints: (N, K, 3) x, y, score.
        boxes: optional (N, >=4) x1, y1, x2, y2.
        dataset: the keypoints' dataset (`VitPoseTRT.dataset`); must have K keypoints.
    """
    keypoints = np.asarray(keypoints)
    if dataset is not None and keypoints.ndim == 3 and keypoints.shape[1] != dataset.num_keypoints:
        raise ValueError(f"draw_poses: {keypoints.shape[1]} keypoints, but dataset {dataset.name!r} has "
                         f"{dataset.num_keypoints}")
    img = frame.copy()
    thickness = max(1, round(min(img.shape[:2]) / 300))
    k = keypoints.shape[1] if keypoints.ndim == 3 else 0
    small = np.zeros(k, bool) if dataset is None else np.array([dataset.part_of(i).small for i in range(k)])
    point_colours = [POINT_COLOUR] * k if dataset is None else dataset.keypoint_colors
    for i, kpts in enumerate(keypoints):
        if boxes is not None:
            x1, y1, x2, y2 = (int(round(v)) for v in boxes[i][:4])
            cv2.rectangle(img, (x1, y1), (x2, y2), BOX_COLOUR, thickness)
        visible = np.isfinite(kpts).all(axis=1) & (kpts[:, 2] > score_thr)
        if dataset is not None:
            for (a, b), colour in zip(dataset.skeleton, dataset.link_colors):
                if visible[a] and visible[b]:
                    width = 1 if small[a] or small[b] else thickness
                    cv2.line(img, _point(kpts[a]), _point(kpts[b]), colour, width, cv2.LINE_AA)
        for j in np.flatnonzero(visible):
            radius = 1 if small[j] else thickness + 2
            cv2.circle(img, _point(kpts[j]), radius, point_colours[j], -1, cv2.LINE_AA)
    return img


def _point(kpt: np.ndarray) -> tuple[int, int]:
    return int(round(float(kpt[0]))), int(round(float(kpt[1])))


def draw_people(image: np.ndarray, people, kpt_thr: float = 0.3, dataset: Dataset | None = None) -> np.ndarray:
    """`draw_poses` for tracked people (`pose_tracker.Person`: `id`, `box`, `keypoints`), each labelled with
    their id above the box."""
    if not people:
        return image.copy()
    out = draw_poses(image, np.stack([p.keypoints for p in people]), np.stack([p.box for p in people]), kpt_thr,
                     dataset)
    scale = max(0.4, min(out.shape[:2]) / 900)
    for p in people:
        x, y = int(p.box[0]), max(int(p.box[1]) - 4, 12)
        cv2.putText(out, str(p.id), (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, BOX_COLOUR, max(1, round(2 * scale)),
                    cv2.LINE_AA)
    return out
