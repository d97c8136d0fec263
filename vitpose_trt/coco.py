"""COCO files: detection files in, keypoint result files out, the sample photos and the fixture model.

What the keypoints of a model are (names, flip pairs, skeleton, sigmas) lives in `vitpose_trt.datasets`.
"""

import json
import os
from pathlib import Path

import cv2
import numpy as np

from vitpose_trt.datasets import Dataset
from vitpose_trt.datasets import flip_index as flip_index  # noqa: F401  (its home is datasets; old import path)


# --- COCO files: detections in, keypoint results out --------------------------------------------

def sample_dir(path=None):
    """The folder of real COCO photos + person_detections.json used by tests, benchmarks and the
    engine build's accuracy check, or None when absent.

    Order: `path`, $VITPOSE_TRT_COCO_SAMPLE, then `../shared/data/coco-sample` beside a development
    checkout. Nothing is downloaded.
    """
    if path is None:
        env = os.environ.get("VITPOSE_TRT_COCO_SAMPLE")
        path = env if env else Path(__file__).resolve().parents[2] / "shared" / "data" / "coco-sample"
    p = Path(path)
    return p if (p / "person_detections.json").is_file() and any(p.glob("*.jpg")) else None


def sample_checkpoint(path=None):
    """The fixture ViTPose-S fitted to the people of the sample photos (heatmaps with real peaks, for
    accuracy checks; not a pose model), or None when absent.

    Order: `path`, $VITPOSE_TRT_SAMPLE_CHECKPOINT, then
    `../shared/fixtures/vitpose-s-coco-sample.pth` beside a development checkout.
    """
    if path is None:
        env = os.environ.get("VITPOSE_TRT_SAMPLE_CHECKPOINT")
        path = env if env else (Path(__file__).resolve().parents[2] / "shared" / "fixtures"
                                / "vitpose-s-coco-sample.pth")
    p = Path(path)
    return p if p.is_file() else None


def load_detections(path) -> dict:
    """Person boxes from a COCO-format JSON, keyed by image id and by file name.

    Accepts a detection results list ([{image_id, bbox: [x, y, w, h], score, category_id?}]) or a
    COCO annotation file ({images, annotations}). Returns {"by_id": {id: boxes}, "by_name": {name: boxes}}
    where boxes is an (M, 5) float64 array of x1, y1, x2, y2, score.
    """
    with open(path) as f:
        data = json.load(f)
    names: dict[int, str] = {}
    if isinstance(data, dict):
        if "annotations" not in data:
            raise ValueError(f"{path}: expected a COCO detection list or a COCO file with 'annotations'")
        names = {int(im["id"]): im["file_name"] for im in data.get("images", [])}
        data = data["annotations"]
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a list of detections")
    by_id: dict[int, list] = {}
    for i, det in enumerate(data):
        if det.get("category_id", 1) != 1:
            continue  # COCO category 1 is "person"
        try:
            x, y, w, h = (float(v) for v in det["bbox"])
            image_id = int(det["image_id"])
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{path}: detection {i} lacks a valid image_id / bbox [x, y, w, h]: {e}") from None
        if not (w >= 0 and h >= 0):  # also NaN
            raise ValueError(f"{path}: detection {i} (image_id {image_id}) has bbox [x, y, w, h] = "
                             f"{[x, y, w, h]}: COCO boxes are x, y, width, height, and its "
                             f"{'width' if not w >= 0 else 'height'} is {w if not w >= 0 else h}")
        by_id.setdefault(image_id, []).append([x, y, x + w, y + h, float(det.get("score", 1.0))])
    arrays = {k: np.array(v, dtype=np.float64) for k, v in by_id.items()}
    return {"by_id": arrays, "by_name": {names[k]: v for k, v in arrays.items() if k in names}}


def load_sample(root) -> list:
    """The photos of a sample folder (see `sample_dir`) that have detections.

    Returns:
        [(file name, HxWx3 uint8 BGR frame, (M, 5) x1, y1, x2, y2, score boxes, best score first)],
        in file-name order.
    """
    root = Path(root)
    detections = load_detections(root / "person_detections.json")["by_id"]
    out = []
    for path in sorted(root.glob("*.jpg")):
        boxes = detections.get(image_id_from_name(path.name))
        if boxes is None or not len(boxes):
            continue
        frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if frame is None:
            raise ValueError(f"cannot read {path}")
        out.append((path.name, frame, boxes[np.argsort(-boxes[:, 4], kind="stable")]))
    return out


def image_id_from_name(name: str) -> int | None:
    """COCO file names are the zero-padded image id: 000000000785.jpg -> 785."""
    stem = os.path.splitext(os.path.basename(name))[0]
    digits = stem.rsplit("_", 1)[-1]
    return int(digits) if digits.isdigit() else None


VIS_THR = 0.2  # keypoints scoring above this count in the rescore (official `vis_thr`)


def rescore(keypoints: np.ndarray, box_scores: np.ndarray, vis_thr: float = VIS_THR) -> np.ndarray:
    """Person scores as mmpose's top-down evaluation rescores them.

    score = box score x mean of the keypoint scores above `vis_thr` (0 when none is above). mmpose
    holds the scores in float32 arrays but its per-keypoint loop ran on numpy 1.x scalars, which
    promoted to float64 (the comparison with 0.2 and the sum too); that is reproduced here.

    Args:
        keypoints: (N, K, 3) x, y, score.
        box_scores: (N,) detector scores (1 for ground-truth boxes).

    Returns:
        (N,) float64.
    """
    scores = np.asarray(keypoints, dtype=np.float32)[..., 2].astype(np.float64)
    box_scores = np.asarray(box_scores, dtype=np.float32).astype(np.float64)  # mmpose's boxes array is float32
    if scores.ndim != 2 or box_scores.shape != (scores.shape[0],):
        raise ValueError(f"rescore: keypoints (N, K, 3) and box_scores (N,) expected, got {np.shape(keypoints)} "
                         f"and {box_scores.shape}")
    total = np.zeros(len(scores))
    count = np.zeros(len(scores), dtype=np.int64)
    for k in range(scores.shape[1]):  # summed in keypoint order, as mmpose's loop
        above = scores[:, k] > vis_thr
        total += np.where(above, scores[:, k], 0.0)
        count += above
    mean = np.where(count > 0, total / np.maximum(count, 1), 0.0)
    return mean * box_scores


def keypoint_results(image_id: int, keypoints, box_scores, score_thr: float = VIS_THR,
                     dataset: Dataset | None = None) -> list[dict]:
    """COCO keypoint results, scored as mmpose's top-down evaluation (`rescore`; no OKS-NMS here:
    `vitpose_trt.evaluate` adds it). Keypoints keep their float32 values.

    A dataset of several parts writes each under its annotation key, as its official result files do
    (COCO-WholeBody: "keypoints" holds the 17 body keypoints, then "foot_kpts", "face_kpts",
    "lefthand_kpts", "righthand_kpts"); otherwise all K are "keypoints".
    """
    scores = rescore(keypoints, box_scores, score_thr) if len(keypoints) else []
    parts = dataset.parts if dataset is not None else ()
    out = []
    for kpts, score in zip(keypoints, scores):
        kpts = np.asarray(kpts, dtype=np.float32)
        result: dict = {"image_id": int(image_id), "category_id": 1}
        if len(parts) > 1:
            result.update({p.annotation_key: kpts[p.start:p.stop].reshape(-1).tolist() for p in parts})
        else:
            result["keypoints"] = kpts.reshape(-1).tolist()
        result["score"] = float(score)
        out.append(result)
    return out


def result_keypoints(result: dict, dataset: Dataset | None = None) -> list:
    """The flat [x, y, score] * K list of one keypoint result, joining a part-split result's parts
    (the inverse of `keypoint_results`' layout)."""
    parts = dataset.parts if dataset is not None else ()
    if len(parts) > 1:
        return [v for p in parts for v in result[p.annotation_key]]
    return list(result["keypoints"])
