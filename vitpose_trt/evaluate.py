"""Keypoint AP by the official top-down protocol: boxes -> `VitPoseTRT` -> rescoring -> OKS-NMS -> COCOeval.

The steps reproduce mmpose 0.x, the code the ViTPose numbers were made with
(`TopDownCocoDataset`: `_load_coco_person_detection_results`, `_load_coco_keypoint_annotation_kernel`,
`evaluate`, `_do_python_keypoint_eval`; `mmpose/core/post_processing/nms.py`: `oks_iou`, `oks_nms`),
with the settings of the official configs (`ViTPose_base_coco_256x192.py`: `det_bbox_thr=0.0`,
`vis_thr=0.2`, `oks_thr=0.9`, `soft_nms=False`). pycocotools does the scoring; no AP is computed here
(mmpose called xtcocotools' COCOeval, an extension of pycocotools' whose keypoint scoring with its
defaults and the COCO sigmas is pycocotools' own but for one rule, applied here too: a result with no
positive keypoint score is dropped).

    boxes      the detection file (person class, score >= det_bbox_thr) or the ground-truth boxes
    infer      all boxes of an image in one `VitPoseTRT.infer` call, images read ahead in a thread
    rescore    box score x mean of the keypoint scores above vis_thr                 (`rescore`)
    OKS-NMS    per image, greedy, OKS > oks_thr suppressed, padded-box areas       (`oks_nms`)
    COCOeval   pycocotools, iouType="keypoints", the dataset's sigmas             (`coco_keypoint_eval`)

Any dataset with OKS sigmas (`vitpose_trt.datasets`) whose annotations are COCO-style is scored the same
way with its own sigmas. COCO-WholeBody follows its own protocol (mmpose 0.x
`TopDownCocoWholeBodyDataset`): rescoring and OKS-NMS over all 133 keypoints and sigmas, then one
COCOeval per part, body / foot / face / left hand / right hand with that part's sigmas and the whole
body with all 133; the headline is the whole body's. mmpose ran xtcocotools' part-aware COCOeval
(`iouType="keypoints_wholebody"` etc.), whose wheels (1.14.3) do not import with numpy 2;
pycocotools reproduces it here (`part_keypoint_eval`) on per-part copies of the annotations and
results, with xtcocotools' three differences from pycocotools written out: a person with no labelled
keypoint in the part is ignored, a result whose part scores are all <= 0 is dropped, and a result's
area is that of its body keypoints.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools.coco import COCO as CocoIndex  # not datasets.COCO, the dataset
from pycocotools.cocoeval import COCOeval
from tqdm import tqdm

from vitpose_trt.agreement import keypoint_distance
from vitpose_trt.atomic import write_json
from vitpose_trt.coco import VIS_THR, keypoint_results, load_detections, rescore, result_keypoints
from vitpose_trt.datasets import COCO, Dataset, Part, get
from vitpose_trt.geometry import boxes_to_transforms, check_boxes
from vitpose_trt.options import with_options
from vitpose_trt.pipeline import VitPoseTRT
from vitpose_trt.sources import read_images_ahead
from vitpose_trt.stats import summary

log = logging.getLogger(__name__)

METRIC_NAMES = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")  # COCOeval.stats order
# The COCO keypoint sigmas, as pycocotools' Params.kpt_oks_sigmas and mmpose's TopDownCocoDataset.sigmas.
COCO_SIGMAS = COCO.oks_sigmas()
OKS_THR = 0.9  # OKS-NMS suppresses a person whose OKS with a better one exceeds this (official `oks_thr`)
DET_BBOX_THR = 0.0  # detections scoring below this are dropped (official `det_bbox_thr`: keep all)
COMPARE_SCORE_THR = VIS_THR  # --compare measures distances on keypoints the rescore counts
_REQUIRED_ANN_KEYS = ("image_id", "category_id", "keypoints", "num_keypoints", "bbox", "area", "iscrowd")


# --- inputs: annotations, boxes ---------------------------------------------------------------------

def load_keypoint_annotations(path, dataset: Dataset | str = COCO):
    """A COCO-style keypoint annotation file (e.g. person_keypoints_val2017.json,
    coco_wholebody_val_v1.0.json), checked against the dataset's layout.

    Returns:
        a `pycocotools.coco.COCO` index of it.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not JSON, or not the dataset's keypoint annotations (a detection list, an instances
            file, another number of keypoints, a part missing).
    """
    dataset = get(dataset)
    path = Path(path)
    data = _read_json(path, "annotation file")
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list) \
            or not isinstance(data.get("images"), list):
        kind = "a list (a detection or results file?)" if isinstance(data, list) else "no 'images'/'annotations' lists"
        raise ValueError(f"{path}: not a COCO annotation file: {kind}; expected person_keypoints_*.json")
    if not data["images"]:
        raise ValueError(f"{path}: the annotation file lists no images")
    for i, ann in enumerate(data["annotations"]):
        missing = [k for k in _REQUIRED_ANN_KEYS if not isinstance(ann, dict) or k not in ann]
        if missing:
            hint = " (an instances/detection file? pass person_keypoints_*.json)" if "keypoints" in missing else ""
            raise ValueError(f"{path}: not COCO keypoint annotations: annotation {i} lacks {missing}{hint}")
        for part in dataset.parts:
            values = ann.get(part.annotation_key)
            if not isinstance(values, list) or len(values) != 3 * part.size:
                got = f"{len(values)} values" if isinstance(values, list) else "none"
                raise ValueError(f"{path}: annotation {i} has {got} in {part.annotation_key!r}, expected "
                                 f"{3 * part.size} (the {part.size} {dataset.title} {part.name} keypoints as x, y, v)")
    for i, img in enumerate(data["images"]):
        if not isinstance(img, dict) or "id" not in img or "file_name" not in img:
            raise ValueError(f"{path}: image entry {i} lacks 'id' or 'file_name'")
    coco = CocoIndex()
    coco.dataset = data
    _quiet(coco.createIndex)
    return coco


def ground_truth_boxes(coco, image_id: int) -> np.ndarray:
    """The official "GT box" setting: (M, 5) x1, y1, x2, y2, score=1 of one image.

    As mmpose's `_load_coco_keypoint_annotation_kernel`: non-crowd annotations, the box clipped to the
    image with its -1 convention (x2 = min(width - 1, x + max(0, w - 1))), kept where area > 0 and the
    clipped box is not empty, and only people with labelled keypoints (num_keypoints > 0).
    """
    img = coco.imgs[image_id]
    width, height = img["width"], img["height"]
    boxes = []
    for ann in coco.loadAnns(coco.getAnnIds(imgIds=image_id, iscrowd=False)):
        x, y, w, h = ann["bbox"]
        x1, y1 = max(0, x), max(0, y)
        x2, y2 = min(width - 1, x1 + max(0, w - 1)), min(height - 1, y1 + max(0, h - 1))
        if ann.get("area", 1) <= 0 or not (x2 > x1 and y2 > y1):
            continue
        if max(ann["keypoints"]) == 0 or ann.get("num_keypoints", 1) == 0:
            continue
        boxes.append([x1, y1, x2, y2, 1.0])
    return np.array(boxes, dtype=np.float64).reshape(-1, 5)


def load_person_detections(path, coco, score_thr: float = DET_BBOX_THR) -> tuple[dict, dict]:
    """Person boxes from a COCO detection results file (as COCO_val2017_detections_AP_H_56_person.json).

    As mmpose's `_load_coco_person_detection_results`: category 1 only, boxes scoring below
    `score_thr` dropped, [x, y, w, h] -> x1, y1, x2, y2 = x, y, x + w, y + h (the official center and
    scale follow from these in `geometry.boxes_to_transforms`). mmpose stops with a KeyError on an
    image id the annotations lack; here such detections are counted, reported and skipped.

    Returns:
        ({image id: (M, 5) x1, y1, x2, y2, score in file order}, counts) where counts holds
        "person", "below_thr", "unknown_image" (detections) and "unknown_image_ids" (distinct ids).

    Raises:
        ValueError: no person detection in the file, or none left on the annotated images.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"detection file not found: {path}")
    try:
        by_id = load_detections(path)["by_id"]
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not a JSON file ({e})") from None
    person = sum(len(b) for b in by_id.values())
    if person == 0:
        raise ValueError(f"{path}: no person detections (category_id 1): the detection set is empty")
    unknown = {i: len(b) for i, b in by_id.items() if i not in coco.imgs}
    counts = {"person": person, "unknown_image": sum(unknown.values()), "unknown_image_ids": len(unknown)}
    if unknown:
        log.warning("%d of %d detections (%d image ids, e.g. %s) name images that are not in the annotations: "
                    "skipped", counts["unknown_image"], person, len(unknown), sorted(unknown)[:5])
    kept, below = {}, 0
    for image_id, boxes in by_id.items():
        if image_id in unknown:
            continue
        boxes = np.asarray(boxes, dtype=np.float64)
        if boxes.ndim == 2 and boxes.shape[1] == 5:  # below the threshold: dropped unchecked, as the protocol
            low = boxes[:, 4] < score_thr  # drops them (a NaN score is kept, to be refused by name)
            below += int(low.sum())
            boxes = boxes[~low]
        try:
            kept[image_id] = check_boxes(boxes, scores=True)
        except ValueError as e:
            raise ValueError(f"{path}: image {image_id}: {e}") from None
    counts["below_thr"] = below
    if not any(len(b) for b in kept.values()):
        raise ValueError(f"{path}: no person detection is left on the annotated images ({person} in the file, "
                         f"{counts['unknown_image']} on unknown image ids, {below} below the score threshold "
                         f"{score_thr})")
    return kept, counts


# --- the official post-processing -------------------------------------------------------------------

def oks_iou(person: np.ndarray, others: np.ndarray, area: float, other_areas: np.ndarray,
            sigmas: np.ndarray = COCO_SIGMAS) -> np.ndarray:
    """Object keypoint similarity of one person with each of `others` (mmpose's `oks_iou`, no
    visibility threshold: every keypoint counts).

    OKS = mean_k exp(-d_k^2 / (2 * mean_area * (2 sigma_k)^2)), with mean_area the mean of the two
    people's areas.

    Args:
        person: (K, 3) x, y, score.
        others: (M, K, 3).
        area, other_areas: the padded box areas (`padded_box_areas`).

    Returns:
        (M,) float32 (mmpose stores them in float32 before comparing with the threshold).
    """
    variances = (np.asarray(sigmas, dtype=np.float64) * 2) ** 2
    person = np.asarray(person, dtype=np.float32)
    others = np.asarray(others, dtype=np.float32).reshape(-1, *person.shape)
    d2 = (others[..., 0] - person[:, 0]) ** 2 + (others[..., 1] - person[:, 1]) ** 2  # (M, K)
    # the areas are float32 (mmpose's boxes array); their sum is, the rest is float64
    mean_area = (np.float32(area) + np.asarray(other_areas, dtype=np.float32)).astype(np.float64) / 2 + np.spacing(1)
    e = d2 / variances / mean_area[:, None] / 2
    return (np.exp(-e).sum(axis=1) / person.shape[0]).astype(np.float32)


def oks_nms(keypoints: np.ndarray, scores: np.ndarray, areas: np.ndarray, thr: float = OKS_THR,
            sigmas: np.ndarray = COCO_SIGMAS) -> np.ndarray:
    """Greedy OKS non-maximum suppression of one image's people (mmpose's `oks_nms`).

    The best-scoring person is kept and everyone whose OKS with it exceeds `thr` is dropped; repeat.
    mmpose orders with numpy's default (unstable) argsort; here equal scores keep detection order,
    so the result is the same on every machine.

    Args:
        keypoints: (N, K, 3).
        scores: (N,) the rescored person scores.
        areas: (N,) padded box areas.
        thr: the OKS threshold (0.9 officially).

    Returns:
        indices of the kept people, best score first.
    """
    scores = np.asarray(scores)
    if len(scores) == 0:
        return np.zeros(0, dtype=np.int64)
    keypoints = np.asarray(keypoints, dtype=np.float32)
    areas = np.asarray(areas, dtype=np.float32)
    order = np.argsort(-scores.astype(np.float64), kind="stable")
    keep = []
    while len(order):
        best, rest = order[0], order[1:]
        keep.append(best)
        oks = oks_iou(keypoints[best], keypoints[rest], areas[best], areas[rest], sigmas)
        order = rest[oks <= np.float32(thr)]  # float32 against float32, as mmpose's comparison
    return np.array(keep, dtype=np.int64)


def padded_box_areas(boxes: np.ndarray, input_size: tuple[int, int] = (256, 192)) -> np.ndarray:
    """The "area" mmpose's OKS-NMS uses: (scale * 200)[0] * (scale * 200)[1] of the box after it was
    widened to the crop's aspect ratio and padded by 1.25 (its keypoint head's `np.prod(s * 200.0)`),
    in float32.

    Args:
        boxes: (N, 4) x1, y1, x2, y2 or (N, 5) with a score (checked by `geometry.check_boxes`).
        input_size: (H, W) of the model's crop.
    """
    transforms = boxes_to_transforms(check_boxes(boxes), input_size)  # [cx, cy, w, h] = center, scale * 200
    return np.prod(transforms[:, 2:4], axis=1, dtype=np.float32)


def image_results(image_id: int, keypoints: np.ndarray, boxes: np.ndarray, input_size=(256, 192),
                  vis_thr: float = VIS_THR, oks_thr: float = OKS_THR, dataset: Dataset = COCO) -> list[dict]:
    """One image's COCO keypoint results after the official rescoring and OKS-NMS (all K keypoints,
    the dataset's sigmas).

    Args:
        image_id: the COCO image id.
        keypoints: (N, K, 3) x, y, score from `VitPoseTRT.infer`.
        boxes: (N, 5) x1, y1, x2, y2, score: the boxes they came from.
        input_size: (H, W) of the model's crop (sets the padded box area).
        dataset: the keypoints' dataset (sigmas, and the result layout: see `keypoint_results`).

    Returns:
        [{image_id, category_id: 1, keypoints: [x, y, score] * K (or per part), score}], kept people
        best first.
    """
    if len(keypoints) == 0:
        return []
    box_scores = np.asarray(boxes)[:, 4]
    scores = rescore(keypoints, box_scores, vis_thr)
    keep = oks_nms(keypoints, scores, padded_box_areas(boxes, input_size), oks_thr, dataset.oks_sigmas())
    return keypoint_results(image_id, keypoints[keep], box_scores[keep], vis_thr, dataset=dataset)


def coco_keypoint_eval(coco, results: list[dict], image_ids=None, dataset: Dataset = COCO) -> dict:
    """COCOeval(iouType="keypoints") on results, as mmpose's `_do_python_keypoint_eval`, with the
    dataset's sigmas; for a dataset of several parts (COCO-WholeBody) one COCOeval per part and one
    for the whole, as its official evaluation (see the module docstring).

    Args:
        coco: the ground truth (`load_keypoint_annotations`).
        results: COCO keypoint results (not modified), in the dataset's layout (`keypoint_results`).
        image_ids: the images to score (default: every image of the annotations, as the official run).
        dataset: the keypoints' dataset.

    Returns:
        {"AP": ..., "ARl": ...}: COCOeval's ten summary numbers, named as METRIC_NAMES (the whole
        body's for several parts, whose own numbers are under "parts": {"body": {...}, ...,
        "wholebody": {...}}).
    """
    if not results:
        raise ValueError("no keypoint results to score")
    known = set(coco.imgs)
    unknown = {r["image_id"] for r in results} - known
    if unknown:
        raise ValueError(f"{len(unknown)} image ids of the results are not in the annotations "
                         f"(e.g. {sorted(unknown)[:5]})")
    sigmas = dataset.oks_sigmas()
    if len(dataset.parts) == 1:
        return part_keypoint_eval(coco, results, dataset.parts, sigmas, image_ids)
    whole = Part("wholebody", 0, dataset.num_keypoints)
    parts = {p.name: part_keypoint_eval(coco, results, (p,), sigmas[p.start:p.stop], image_ids, dataset.parts)
             for p in dataset.parts}
    parts[whole.name] = part_keypoint_eval(coco, results, dataset.parts, sigmas, image_ids, dataset.parts)
    return {**parts[whole.name], "parts": parts}


def part_keypoint_eval(coco, results: list[dict], parts: tuple[Part, ...], sigmas: np.ndarray, image_ids=None,
                       layout: tuple[Part, ...] | None = None) -> dict[str, float]:
    """pycocotools' keypoint COCOeval of some parts of the keypoints, scored as xtcocotools scores
    its `iouType="keypoints_<part>"` (mmpose's evaluator).

    The annotations and results are copied with "keypoints" holding the parts' keypoints (joined
    in order) and each annotation's num_keypoints recounted over them, so pycocotools ignores a
    person with no labelled keypoint in the parts, as xtcocotools does. Results whose scores in the
    parts are all <= 0 are dropped (xtcocotools skips them), and each result's area is that of its
    first part's keypoints (xtcocotools' loadRes reads the area from "keypoints", the body).

    Args:
        coco: the ground truth.
        results: keypoint results in `layout` (the dataset's parts; None: one "keypoints" part).
        parts: the parts to score, each under its annotation key.
        sigmas: one sigma per scored keypoint.
        image_ids: the images to score.

    Returns:
        the ten numbers, named as METRIC_NAMES.
    """
    layout = layout or parts
    gt = dict(coco.dataset)
    gt["annotations"] = []
    for ann in coco.dataset["annotations"]:
        kpts = [v for p in parts for v in ann[p.annotation_key]]
        gt["annotations"].append({**ann, "keypoints": kpts, "num_keypoints": int(np.count_nonzero(
            np.asarray(kpts[2::3]) > 0))})
    truth = CocoIndex()
    truth.dataset = gt
    _quiet(truth.createIndex)
    dets, areas = [], []
    for r in results:
        kpts = [v for p in parts for v in r[p.annotation_key]]
        if not np.any(np.asarray(kpts[2::3]) > 0):
            continue
        body = np.asarray(r[layout[0].annotation_key], np.float64).reshape(-1, 3)
        areas.append(float(np.ptp(body[:, 0]) * np.ptp(body[:, 1])))
        dets.append({"image_id": r["image_id"], "category_id": r.get("category_id", 1), "keypoints": kpts,
                     "score": r["score"]})
    if not dets:
        return dict.fromkeys(METRIC_NAMES, 0.0)
    det = _quiet(truth.loadRes, dets)  # loadRes numbers the results 1..n in order
    for i, area in enumerate(areas):
        det.anns[i + 1]["area"] = area
    ev = COCOeval(truth, det, "keypoints")
    ev.params.kpt_oks_sigmas = np.asarray(sigmas, dtype=np.float64)
    if image_ids is not None:
        ev.params.imgIds = sorted(int(i) for i in image_ids)
    _quiet(ev.evaluate)
    _quiet(ev.accumulate)
    _quiet(ev.summarize)
    return {name: float(v) for name, v in zip(METRIC_NAMES, ev.stats)}


def keypoint_distances(reference: np.ndarray, other: np.ndarray, score_thr: float = COMPARE_SCORE_THR) -> dict:
    """How far another engine's keypoints are from the reference's, in frame pixels.

    Only keypoints whose reference score is above `score_thr` are measured (those the rescore counts;
    where the heatmap has no clear peak, the argmax of two engines may land anywhere).

    Args:
        reference, other: (N, K, 3) keypoints of the same boxes.

    Returns:
        {"n", "score_thr", "median", "p90", "p99", "max"} (px; `stats.summary`'s rules: None where n
        is 0, a NaN distance counted as +inf).
    """
    reference, other = np.asarray(reference, np.float64), np.asarray(other, np.float64)
    if reference.shape != other.shape:
        raise ValueError(f"keypoint arrays differ in shape: {reference.shape} vs {other.shape}")
    mask = reference[..., 2] > score_thr
    d = keypoint_distance(reference, other)[mask]
    s = summary(d)
    return {"n": s["n"], "score_thr": float(score_thr), **{key: s[key] for key in ("median", "p90", "p99", "max")}}


# --- the runs ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class EvalConfig:
    """What `evaluate` runs: the model, the images and annotations, the boxes, and where the report goes.

    Attributes:
        images: the image folder (val2017/); files are found by the annotations' file_name.
        ann: the keypoint annotations (person_keypoints_val2017.json).
        engine: a checkpoint, .onnx, .engine, an `Engine`, or a `VitPoseTRT` (used as is).
        dets: a COCO detection results file; None: the ground-truth boxes (the "GT box" number).
        mode, flip_test, backend, device, precision: as `VitPoseTRT` (for `compare` engines too,
            except backend/device/precision, which are chosen from each file).
        limit: only the first `limit` images (by image id) of the annotations, for a quick run.
        out: folder for keypoints.json (the scored results) and metrics.json; None: nothing written.
        compare: other engines run on the same boxes: AP side by side and keypoint distances.
        det_bbox_thr: detections scoring below this are dropped (0.0 officially).
        progress: show a tqdm bar with boxes/s.
        prefetch: images read ahead by the reader thread.
        dataset / expert: as `VitPoseTRT`'s (default: the model's own dataset); the annotations must
            be in its layout, and it must have OKS sigmas.
    """

    images: str | os.PathLike
    ann: str | os.PathLike
    engine: Any = None
    dets: str | os.PathLike | None = None
    mode: str = "udp"
    flip_test: bool = False
    backend: str = "auto"
    device: str | None = None
    precision: str | None = None
    limit: int | None = None
    out: str | os.PathLike | None = None
    compare: Sequence[Any] = ()
    det_bbox_thr: float = DET_BBOX_THR
    progress: bool = True
    prefetch: int = 4
    dataset: Dataset | str | None = None
    expert: int | None = None


def evaluate(images=None, ann=None, engine=None, *, config: EvalConfig | None = None, **options: Any) -> dict:
    """Keypoint AP of an engine by the official top-down protocol of its dataset.

    load (models, annotations, boxes, files) -> run (every image through every engine) -> score
    (COCOeval, the report) -> write (keypoints.json, metrics.json).

    Args:
        config: an `EvalConfig`; `images`, `ann`, `engine` and `options` (its other fields by name:
            dets, mode, ..., expert) replace its values, or make one without it.

    Returns:
        {"AP", ..., "ARl", "settings": {...}, "timing": {...}, "compare": [...]} (what metrics.json holds).

    Raises:
        FileNotFoundError: the folder, annotation or detection file is missing, or no image is found.
        ValueError: bad annotations or detections, `limit` < 1, nothing to score, a model of no
            known dataset or of one without sigmas.
        TypeError: an option that is no `EvalConfig` field, or neither a config nor images and ann.
    """
    given = {k: v for k, v in (("images", images), ("ann", ann), ("engine", engine)) if v is not None}
    if config is None and ("images" not in given or "ann" not in given):
        raise TypeError("evaluate() needs images and ann (or config=EvalConfig(...))")
    config = with_options(EvalConfig, config, {**given, **options})
    inputs = _load(config)
    run = _run(config, inputs)
    report = _score(config, inputs, run)
    if config.out is not None:
        out = Path(config.out)
        write_json(out / "keypoints.json", run.results[0])
        write_json(out / "metrics.json", report)
    return report


@dataclass
class _Inputs:
    """What an evaluation runs on (`_load`)."""

    poses: list  # the VitPoseTRTs: the evaluated one, then the `compare` ones
    dataset: Dataset
    coco: Any  # the annotations (`load_keypoint_annotations`)
    image_ids: list[int]  # the images asked for (`limit` applied), by id
    boxes: dict[int, np.ndarray]  # image id -> (M, 5) person boxes
    paths: dict[int, Path]  # image id -> its file
    present: list[int]  # the image ids whose file exists
    missing: list[int]  # the others
    counts: dict  # the detections' counts (`load_person_detections`); {} for ground-truth boxes


@dataclass
class _Run:
    """What the images gave (`_run`)."""

    results: list[list[dict]]  # per engine, its COCO results after rescoring and OKS-NMS
    distances: list[list[np.ndarray]]  # per compare engine, per image: (2, N, K, 3) main and its keypoints
    evaluated: list[int] = field(default_factory=list)  # image ids read (with or without boxes)
    unreadable: list[int] = field(default_factory=list)
    boxes: int = 0
    inference_seconds: float = 0.0
    wall_seconds: float = 0.0
    cpu_seconds: float = 0.0


def _load(cfg: EvalConfig) -> _Inputs:
    """The models, the annotations in their dataset's layout, and each image's boxes and file; every
    check that can fail is made here, before the minutes of inference."""
    images = Path(cfg.images)
    if not images.is_dir():
        raise FileNotFoundError(f"image folder not found: {images}")
    _check_limit(cfg.limit)
    poses = _open_poses(cfg)
    ds = poses[0].dataset
    coco = load_keypoint_annotations(cfg.ann, ds)
    image_ids = sorted(coco.getImgIds())[:cfg.limit]
    counts: dict = {}
    if cfg.dets is not None:
        by_id, counts = load_person_detections(cfg.dets, coco, cfg.det_bbox_thr)
        boxes = {i: by_id.get(i, np.zeros((0, 5))) for i in image_ids}
    else:
        boxes = {i: ground_truth_boxes(coco, i) for i in image_ids}
    paths = {i: images / coco.imgs[i]["file_name"] for i in image_ids}
    missing = [i for i in image_ids if not paths[i].is_file()]
    present = [i for i in image_ids if paths[i].is_file()]
    if not present:
        raise FileNotFoundError(f"none of the {len(image_ids)} annotated images is in {images} "
                                f"(e.g. {paths[image_ids[0]].name})")
    for p in poses:
        if p.dataset is not ds:
            raise ValueError(f"{ds.title} AP needs {ds.title} models; {p.engine.describe()} is "
                             f"{p.dataset.title if p.dataset else 'of no known dataset'}")
    return _Inputs(poses, ds, coco, image_ids, boxes, paths, present, missing, counts)


def _open_poses(cfg: EvalConfig) -> list:
    """The evaluated model, then the `compare` ones in its dataset; the dataset must be known and
    have OKS sigmas (said before any work)."""
    main = _open_pose(cfg.engine, cfg.dataset, mode=cfg.mode, flip_test=cfg.flip_test, backend=cfg.backend,
                      device=cfg.device, precision=cfg.precision, expert=cfg.expert)
    ds = main.dataset
    if ds is None:
        raise ValueError(f"cannot tell the dataset of a {main.num_keypoints}-keypoint model: name it "
                         "(dataset=..., the CLI's --dataset)")
    ds.oks_sigmas()  # a dataset without sigmas cannot be scored: say so before any work
    return [main] + [_open_pose(e, ds, mode=cfg.mode, flip_test=cfg.flip_test, backend="auto", device=None,
                                precision=None, expert=None) for e in cfg.compare]


def _run(cfg: EvalConfig, inputs: _Inputs) -> _Run:
    """Every present image through every engine (all its boxes in one call), images read ahead in a
    thread; an unreadable image is logged and left out."""
    poses, present = inputs.poses, inputs.present
    run = _Run(results=[[] for _ in poses], distances=[[] for _ in poses[1:]])
    wall, cpu = time.perf_counter(), time.process_time()
    bar = tqdm(total=sum(len(inputs.boxes[i]) for i in present), unit="box", desc="eval",
               disable=not cfg.progress, dynamic_ncols=True)
    try:
        for k, frame in read_images_ahead([inputs.paths[i] for i in present], cfg.prefetch):
            image_id = present[k]
            if frame is None:
                run.unreadable.append(image_id)
                log.warning("cannot read image %s: skipped", inputs.paths[image_id])
                continue
            boxes = inputs.boxes[image_id]
            run.evaluated.append(image_id)
            if not len(boxes):
                continue
            start = time.perf_counter()
            outputs = [p.infer(frame, boxes) for p in poses]  # all boxes of the image in one call
            run.inference_seconds += time.perf_counter() - start
            for j, (p, kpts) in enumerate(zip(poses, outputs)):
                run.results[j] += image_results(image_id, kpts, boxes, tuple(p.engine.input_size),
                                                dataset=inputs.dataset)
                if j:
                    run.distances[j - 1].append(np.stack([outputs[0], kpts]))
            run.boxes += len(boxes)
            bar.update(len(boxes))
    finally:
        bar.close()
    run.wall_seconds, run.cpu_seconds = time.perf_counter() - wall, time.process_time() - cpu
    return run


def _score(cfg: EvalConfig, inputs: _Inputs, run: _Run) -> dict:
    """COCOeval of the results, and the report: the ten numbers, the settings, the timing and, with
    `compare`, each other engine's numbers and keypoint distances."""
    missing = inputs.missing + run.unreadable
    if missing:
        names = [inputs.paths[i].name for i in missing]
        log.warning("%d of %d images are missing or unreadable and were left out of the score (the AP is "
                    "then not comparable with the official one): %s%s", len(missing), len(inputs.image_ids),
                    ", ".join(names[:10]), " ..." if len(names) > 10 else "")
    if not run.results[0]:
        raise ValueError(f"no person box on the {len(run.evaluated)} evaluated images: nothing to score")
    report: dict = dict(coco_keypoint_eval(inputs.coco, run.results[0], run.evaluated, inputs.dataset))
    report["settings"] = _settings(cfg, inputs, run, [inputs.paths[i].name for i in missing])
    report["timing"] = {  # boxes_per_s: the whole loop (reading, every engine, post-processing)
        "boxes": run.boxes, "engines_per_box": len(inputs.poses), "wall_seconds": run.wall_seconds,
        "inference_seconds": run.inference_seconds,
        "process_cpu_seconds": run.cpu_seconds,  # all threads: with other load on the machine, wall time alone misleads
        "boxes_per_s": run.boxes / run.wall_seconds if run.wall_seconds > 0 else None,
        "inference_boxes_per_s": run.boxes / run.inference_seconds if run.inference_seconds > 0 else None}
    if cfg.compare:
        report["compare"] = _compared(cfg, inputs, run)
    return report


def _settings(cfg: EvalConfig, inputs: _Inputs, run: _Run, missing: list[str]) -> dict:
    """The report's "settings": what was evaluated, how, and what was left out."""
    main, dets = inputs.poses[0], cfg.dets
    return {
        "engine": _describe(cfg.engine, main), "dataset": inputs.dataset.name, "mode": main.mode,
        "flip_test": main.flip_test,
        "boxes": "detections" if dets is not None else "ground truth",
        "detections": os.fspath(dets) if dets is not None else None,
        "det_bbox_thr": cfg.det_bbox_thr if dets is not None else None,
        "vis_thr": VIS_THR, "oks_thr": OKS_THR, "annotations": os.fspath(cfg.ann),
        "images": os.fspath(Path(cfg.images)),
        "limit": cfg.limit, "images_evaluated": len(run.evaluated), "boxes_evaluated": run.boxes,
        "results_after_nms": len(run.results[0]),
        "missing_images": missing,
        "detections_on_unknown_images": inputs.counts.get("unknown_image", 0),
        "detections_below_thr": inputs.counts.get("below_thr", 0),
        "random_weights": bool(main.random_weights),
    }


def _compared(cfg: EvalConfig, inputs: _Inputs, run: _Run) -> list[dict]:
    """Per `compare` engine: its AP on the same boxes and its keypoints' distances to the main engine's."""
    k = inputs.dataset.num_keypoints
    none = (np.zeros((0, k, 3)), np.zeros((0, k, 3)))
    return [{"engine": _describe(e, p), "metrics": coco_keypoint_eval(inputs.coco, res, run.evaluated, inputs.dataset),
             "distance_px": keypoint_distances(*(np.concatenate(d, axis=1) if d else none))}
            for e, p, res, d in zip(cfg.compare, inputs.poses[1:], run.results[1:], run.distances)]


def score_results(ann, results, *, limit: int | None = None, out=None, dataset: Dataset | str | None = None) -> dict:
    """COCOeval on an existing keypoint results file, without a model (`eval --results`).

    The results are scored as they are (no rescoring or NMS: a file `evaluate` wrote has had both).

    Args:
        ann: the keypoint annotations.
        results: a keypoint results JSON file, in the dataset's layout (COCO-WholeBody: its part keys,
            or all 133 keypoints under "keypoints").
        limit: score only the first `limit` images (by id) of the annotations, as `evaluate` does.
        out: folder for metrics.json; None: nothing written.
        dataset: the results' dataset (default COCO).
    """
    _check_limit(limit)
    ds = get(dataset) if dataset is not None else COCO
    coco = load_keypoint_annotations(ann, ds)
    path = Path(results)
    data = _read_json(path, "results file")
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a list of COCO keypoint results")
    if not data:
        raise ValueError(f"{path}: the results list is empty")
    data = [_checked_result(r, i, ds, path) for i, r in enumerate(data)]
    image_ids = sorted(coco.getImgIds())[:limit]
    report: dict = dict(coco_keypoint_eval(coco, data, image_ids, ds))
    report["settings"] = {"results": os.fspath(path), "annotations": os.fspath(ann), "dataset": ds.name,
                          "limit": limit, "images_evaluated": len(image_ids), "results_scored": len(data)}
    if out is not None:
        write_json(Path(out) / "metrics.json", report)
    return report


def _checked_result(r, i: int, ds: Dataset, path: Path) -> dict:
    """One result of a results file in the dataset's layout (all K under "keypoints" is split into parts)."""
    k = ds.num_keypoints
    if not isinstance(r, dict) or not {"image_id", "score"} <= r.keys():
        raise ValueError(f"{path}: result {i} is not a keypoint result (image_id, category_id, keypoints, score)")
    r = {**r, "category_id": r.get("category_id", 1)}
    if len(ds.parts) > 1 and len(r.get("keypoints", ())) == 3 * k:
        flat = list(r["keypoints"])
        r.update({p.annotation_key: flat[3 * p.start:3 * p.stop] for p in ds.parts})
    try:
        flat = result_keypoints(r, ds)
    except KeyError as e:
        raise ValueError(f"{path}: result {i} has no {e.args[0]!r} ({ds.title} results hold "
                         f"{', '.join(p.annotation_key for p in ds.parts)})") from None
    if len(flat) != 3 * k:
        raise ValueError(f"{path}: result {i} has {len(flat)} keypoint values, expected {3 * k} ({ds.title}'s "
                         f"{k} keypoints as x, y, score)")
    return r


def format_table(report: dict) -> str:
    """The ten numbers as a table; one column per engine when the report has `compare` entries, one per
    part (COCO-WholeBody: body, foot, face, hands, whole body) when it has parts."""
    columns = [("main", report)] + [(f"compare {k + 1}", c["metrics"]) for k, c in enumerate(report.get("compare", []))]
    if "parts" in report and not report.get("compare"):
        columns = list(report["parts"].items())
    lines = ["metric  " + "".join(f"{name:>12}" for name, _ in columns)]
    for m in METRIC_NAMES:
        lines.append(f"{m:<8}" + "".join(f"{col[m]:>12.4f}" for _, col in columns))
    for k, c in enumerate(report.get("compare", [])):
        d = c["distance_px"]
        head = f"compare {k + 1}: {c['engine']}; keypoint distance to main (main score > {d['score_thr']:g}, n={d['n']})"
        lines.append(head + (f": median {d['median']:.3g} px, p90 {d['p90']:.3g}, p99 {d['p99']:.3g}, "
                             f"max {d['max']:.3g}" if d["n"] else ""))
    return "\n".join(lines)


# --- helpers ----------------------------------------------------------------------------------------

def _read_json(path: Path, what: str):
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not a JSON file ({e})") from None


def _check_limit(limit) -> None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive number of images, got {limit!r}")


def _open_pose(engine, dataset=None, **options):
    """`engine` as a `VitPoseTRT`: one given is used as is (it must run `dataset` where one is named),
    anything else is opened with `dataset` and `options` (VitPoseTRT's keywords)."""
    if isinstance(engine, VitPoseTRT):
        if dataset is not None and engine.dataset is not get(dataset):
            raise ValueError(f"dataset={get(dataset).name!r} was asked for, but the VitPoseTRT given runs "
                             f"{engine.dataset.name if engine.dataset else 'no known dataset'}")
        return engine
    return VitPoseTRT(engine, dataset=dataset, **options)


def _describe(source, pose) -> str:
    if source is None:
        name = "random ViTPose-B"
    else:
        name = os.fspath(source) if isinstance(source, (str, os.PathLike)) else type(source).__name__
    return f"{name}: {pose.engine.describe()}"


def _quiet(fn, *args):
    """Run a pycocotools call with its prints sent to the debug log (library code does not print)."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        value = fn(*args)
    if buf.getvalue().strip():
        log.debug("%s", buf.getvalue().rstrip())
    return value
