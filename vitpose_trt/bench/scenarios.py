"""Benchmark scenarios: one 1920x1080 frame in host memory and N person boxes per people count,
from the real coco-sample photos and detector boxes where present, synthetic elsewhere."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from vitpose_trt.coco import load_sample, sample_dir

log = logging.getLogger(__name__)

FRAME_SIZE = (1080, 1920)  # (H, W) of the benchmark frame
COCO_MIN_SCORE = 0.3  # detector boxes below this are not used


@dataclass
class Scenario:
    """One benchmark frame: a (H, W, 3) uint8 BGR frame in host memory and (N, 4) x1,y1,x2,y2 boxes."""

    people: int
    frame: np.ndarray
    boxes: np.ndarray
    source: str  # "coco-sample" or "synthetic"

    @property
    def name(self) -> str:
        return f"{self.people} people"


def compose_coco_frame(root: Path, frame_size: tuple[int, int] = FRAME_SIZE,
                       min_score: float = COCO_MIN_SCORE) -> tuple[np.ndarray, np.ndarray]:
    """The coco-sample photos on a grid over one frame, and their detector boxes moved with them.

    Each photo is resized to fit its grid cell (aspect ratio kept, placed at the cell's centre) and
    its person boxes (score >= min_score) are scaled and shifted the same way.

    Returns:
        frame (H, W, 3) uint8 BGR, boxes (M, 5) float64 x1, y1, x2, y2, score, sorted by score.
    """
    photos = load_sample(root)
    if not photos:
        raise ValueError(f"{root}: no photo has detections in person_detections.json")
    fh, fw = frame_size
    cols = math.ceil(math.sqrt(len(photos)))
    rows = math.ceil(len(photos) / cols)
    ch, cw = fh // rows, fw // cols
    frame = np.zeros((fh, fw, 3), dtype=np.uint8)
    boxes = []
    for i, (_, img, dets) in enumerate(photos):
        h, w = img.shape[:2]
        s = min(cw / w, ch / h)
        nw, nh = max(1, int(round(w * s))), max(1, int(round(h * s)))
        ox = (i % cols) * cw + (cw - nw) // 2
        oy = (i // cols) * ch + (ch - nh) // 2
        frame[oy:oy + nh, ox:ox + nw] = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR)
        for x1, y1, x2, y2, score in dets:
            if score >= min_score:
                boxes.append([x1 * s + ox, y1 * s + oy, x2 * s + ox, y2 * s + oy, score])
    if not boxes:
        raise ValueError(f"{root}: no detection scores >= {min_score}")
    arr = np.array(boxes, dtype=np.float64)
    return frame, arr[np.argsort(-arr[:, 4], kind="stable")]


def synthetic_frame(frame_size: tuple[int, int] = FRAME_SIZE, seed: int = 0) -> np.ndarray:
    """A deterministic smooth-noise BGR frame (not all zeros, so every crop has texture)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(frame_size[0] // 8, frame_size[1] // 8, 3), dtype=np.uint8)
    return cv2.resize(small, (frame_size[1], frame_size[0]), interpolation=cv2.INTER_LINEAR)


def synthetic_boxes(n: int, frame_size: tuple[int, int] = FRAME_SIZE, seed: int = 0) -> np.ndarray:
    """n person-shaped boxes (height 150-700 px, width 0.35-0.6 x height) inside the frame."""
    rng = np.random.default_rng(seed + 1)
    fh, fw = frame_size
    h = rng.uniform(150, min(700, fh - 1), n)
    w = h * rng.uniform(0.35, 0.6, n)
    x1 = rng.uniform(0, fw - w)
    y1 = rng.uniform(0, fh - h)
    return np.stack([x1, y1, x1 + w, y1 + h], axis=1)


def build_scenarios(people: Sequence[int], coco_sample: str | os.PathLike | bool | None = None,
                    frame_size: tuple[int, int] = FRAME_SIZE, seed: int = 0) -> list[Scenario]:
    """One frame per people count.

    Args:
        people: people per frame, e.g. (1, 4, 16).
        coco_sample: the coco-sample folder; None: found as `vitpose_trt.coco.sample_dir` does; False: synthetic.
            Real detector boxes are used where the folder exists; they repeat (in score order) to
            reach the count.
    """
    if coco_sample is False:
        sample = None
    else:
        sample = sample_dir(None if coco_sample is None or coco_sample is True else coco_sample)
    if sample is not None:
        frame, boxes = compose_coco_frame(sample, frame_size)
        source = "coco-sample"
        log.info("frames: %d coco-sample photos on %dx%d, %d detector boxes (score >= %.1f)",
                 len(list(sample.glob("*.jpg"))), frame_size[1], frame_size[0], len(boxes), COCO_MIN_SCORE)
    else:
        if coco_sample is not False:
            log.info("coco-sample not found (set VITPOSE_TRT_COCO_SAMPLE): synthetic frame and boxes")
        frame, boxes, source = synthetic_frame(frame_size, seed), None, "synthetic"
    out = []
    for n in people:
        if n < 1:
            raise ValueError(f"people per frame must be >= 1, got {n}")
        b = boxes[np.arange(n) % len(boxes), :4].copy() if boxes is not None else synthetic_boxes(n, frame_size, seed)
        out.append(Scenario(people=int(n), frame=frame, boxes=b, source=source))
    return out
