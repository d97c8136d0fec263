"""`vitpose-trt eval`: the official post-processing (rescoring, OKS-NMS) against small independent
re-derivations, pycocotools as the AP oracle, and the whole run on the real coco-sample photos."""

from __future__ import annotations

import copy
import json
import logging
import math
import re
import shutil

import numpy as np
import pytest

from tests.conftest import coco_sample_dir
from vitpose_trt import evaluate as ev
from vitpose_trt.cli import main

ANN = "person_keypoints.json"
DETS = "person_detections.json"


@pytest.fixture(scope="module")
def sample():
    root = coco_sample_dir()
    if root is None:
        pytest.skip("real photos not found: ../shared/data/coco-sample is absent (set VITPOSE_TRT_COCO_SAMPLE)")
    return root


def _gt_results(root, score=1.0):
    """COCO results that repeat the ground truth of every labelled person."""
    data = json.loads((root / ANN).read_text())
    return [{"image_id": a["image_id"], "category_id": 1, "keypoints": [float(v) for v in a["keypoints"]],
             "score": score} for a in data["annotations"] if a["num_keypoints"] > 0]


def _pycocotools_stats(ann_path, results):
    """The oracle: pycocotools used directly, as its README shows, on its own copy of everything."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(ann_path))
        dt = gt.loadRes(copy.deepcopy(results))
        e = COCOeval(gt, dt, "keypoints")
        e.evaluate()
        e.accumulate()
        e.summarize()
    return dict(zip(ev.METRIC_NAMES, (float(v) for v in e.stats)))


# --- scoring: pycocotools is the oracle ---------------------------------------------------------------

def test_perfect_predictions_score_ap_1(sample):
    coco = ev.load_keypoint_annotations(sample / ANN)
    metrics = ev.coco_keypoint_eval(coco, _gt_results(sample))
    assert metrics == _pycocotools_stats(sample / ANN, _gt_results(sample))
    # the sample has medium and large people (no small ones: APs is not among the ten numbers)
    assert all(metrics[m] == 1.0 for m in ev.METRIC_NAMES), metrics


def test_a_known_perturbation_lowers_ap_by_what_cocoeval_gives(sample):
    results = _gt_results(sample)
    data = json.loads((sample / ANN).read_text())
    areas = [a["area"] for a in data["annotations"] if a["num_keypoints"] > 0]
    for r, area in list(zip(results, areas))[::3]:  # every third person moves by 8% of sqrt(area)
        shift = 0.08 * math.sqrt(area)
        r["keypoints"] = [v + shift if i % 3 == 0 else v for i, v in enumerate(r["keypoints"])]
    coco = ev.load_keypoint_annotations(sample / ANN)
    ours = ev.coco_keypoint_eval(coco, results)
    oracle = _pycocotools_stats(sample / ANN, results)
    assert ours == oracle
    assert ours["AP"] < 1.0 and ours["AP75"] < 1.0
    assert 1.0 - ours["AP"] == 1.0 - oracle["AP"]


def test_limit_restricts_the_scored_images(sample):
    coco = ev.load_keypoint_annotations(sample / ANN)
    first = sorted(coco.getImgIds())[:1]
    results = [r for r in _gt_results(sample) if r["image_id"] in first]
    # scored on all 4 images, the other images' people count as missed; on the first one only, AP = 1
    assert ev.coco_keypoint_eval(coco, results)["AR"] < 1.0
    assert ev.coco_keypoint_eval(coco, results, first)["AR"] == 1.0


# --- rescoring -------------------------------------------------------------------------------------

def _rescore_by_hand(keypoints, box_scores, vis_thr=0.2):
    """mmpose's rescoring loop, written again with Python floats."""
    out = []
    for person, box in zip(keypoints.tolist(), box_scores.tolist()):
        good = [s for _, _, s in person if s > vis_thr]
        out.append(box * (sum(good) / len(good) if good else 0.0))
    return np.array(out)


def test_rescore_ignores_keypoints_below_the_visibility_threshold():
    kpts = np.zeros((4, 17, 3), np.float32)
    kpts[0, :, 2] = 0.9                      # all visible
    kpts[1, :10, 2], kpts[1, 10:, 2] = 0.8, 0.1  # 7 invisible keypoints must not pull the mean down
    kpts[2, :, 2] = 0.19                     # none above the threshold: score 0
    kpts[3, :5, 2], kpts[3, 5:, 2] = 0.6, 0.21  # just above it: all count
    box = np.array([0.5, 1.0, 0.7, 0.9])
    got = ev.rescore(kpts, box)
    np.testing.assert_allclose(got, _rescore_by_hand(kpts, box), rtol=1e-6)
    np.testing.assert_allclose(got, [0.45, 0.8, 0.0, 0.9 * (5 * 0.6 + 12 * 0.21) / 17], rtol=1e-6)
    assert abs(got[1] - 1.0 * (10 * 0.8 + 7 * 0.1) / 17) > 0.2  # the all-keypoint mean would be wrong


def test_rescore_matches_the_re_derivation_on_random_people():
    rng = np.random.default_rng(1)
    kpts = rng.uniform(0, 1, (50, 17, 3)).astype(np.float32)
    kpts[::7, :, 2] *= 0.2  # some people with no keypoint above 0.2
    box = rng.uniform(0, 1, 50)
    np.testing.assert_allclose(ev.rescore(kpts, box), _rescore_by_hand(kpts, box), rtol=1e-6, atol=1e-7)


# --- OKS-NMS --------------------------------------------------------------------------------------

SIGMAS = [.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87, .89, .89]


def _oks_by_hand(a, b, area_a, area_b):
    """OKS of two people as mmpose's oks_iou defines it, in plain Python."""
    mean_area = (area_a + area_b) / 2
    total = 0.0
    for (xa, ya, _), (xb, yb, _), s in zip(a.tolist(), b.tolist(), SIGMAS):
        var = (2 * s / 10) ** 2
        total += math.exp(-((xa - xb) ** 2 + (ya - yb) ** 2) / var / mean_area / 2)
    return total / len(SIGMAS)


def _nms_by_hand(kpts, scores, areas, thr):
    """Greedy: take the best remaining person, drop everyone with OKS > thr to it."""
    left = sorted(range(len(scores)), key=lambda i: -scores[i])
    keep = []
    while left:
        best = left.pop(0)
        keep.append(best)
        left = [i for i in left if _oks_by_hand(kpts[best], kpts[i], areas[best], areas[i]) <= thr]
    return keep


def _person(rng, cx=200.0, cy=200.0, size=100.0):
    p = np.zeros((17, 3), np.float32)
    p[:, 0] = cx + rng.uniform(-size / 2, size / 2, 17)
    p[:, 1] = cy + rng.uniform(-size, size, 17)
    p[:, 2] = rng.uniform(0.3, 1.0, 17)
    return p


def _shift_for_oks(person, area, target, direction=1.0):
    """A copy of `person` moved sideways by the distance at which its OKS with the original is `target`."""
    lo, hi = 0.0, 100.0
    for _ in range(100):  # OKS falls monotonically with the shift
        mid = (lo + hi) / 2
        moved = person.copy()
        moved[:, 0] += direction * mid
        lo, hi = (mid, hi) if _oks_by_hand(person, moved, area, area) > target else (lo, mid)
    moved = person.copy()
    moved[:, 0] += direction * (lo + hi) / 2
    return moved


def test_oks_iou_matches_the_formula():
    rng = np.random.default_rng(2)
    a, others = _person(rng), np.stack([_person(rng) for _ in range(6)])
    areas = rng.uniform(2000, 20000, 6)
    got = ev.oks_iou(a, others, 9000.0, areas)
    np.testing.assert_allclose(got, [_oks_by_hand(a, o, 9000.0, ar) for o, ar in zip(others, areas)], rtol=1e-6)
    assert ev.oks_iou(a, a[None], 9000.0, np.array([9000.0]))[0] == pytest.approx(1.0)


def test_duplicates_above_0_9_are_suppressed_and_0_895_is_kept():
    rng = np.random.default_rng(3)
    area = 12000.0
    best = _person(rng)
    near = _shift_for_oks(best, area, 0.905)  # a duplicate: OKS 0.905 > 0.9
    far = _shift_for_oks(best, area, 0.895, -1.0)  # OKS 0.895 <= 0.9: another person (on the other side)
    assert _oks_by_hand(best, near, area, area) == pytest.approx(0.905, abs=1e-6)
    kpts = np.stack([best, near, far])
    scores, areas = np.array([0.9, 0.8, 0.7], np.float32), np.full(3, area, np.float32)
    assert ev.oks_nms(kpts, scores, areas, thr=0.9).tolist() == [0, 2] == _nms_by_hand(kpts, scores, areas, 0.9)
    # at 0.89 the second one is a duplicate too; at 0.91 neither is
    assert ev.oks_nms(kpts, scores, areas, thr=0.89).tolist() == [0] == _nms_by_hand(kpts, scores, areas, 0.89)
    assert ev.oks_nms(kpts, scores, areas, thr=0.91).tolist() == [0, 1, 2]


def test_a_suppressed_person_suppresses_nobody():
    rng = np.random.default_rng(4)
    area = 12000.0
    a = _person(rng)
    b = _shift_for_oks(a, area, 0.95)  # duplicate of a
    c = _shift_for_oks(b, area, 0.95)  # duplicate of b, but far enough from a
    kpts, areas = np.stack([a, b, c]), np.full(3, area, np.float32)
    assert _oks_by_hand(a, c, area, area) <= 0.9
    scores = np.array([0.9, 0.8, 0.7], np.float32)
    assert ev.oks_nms(kpts, scores, areas).tolist() == [0, 2] == _nms_by_hand(kpts, scores, areas, 0.9)


def test_oks_nms_matches_the_re_derivation_on_crowded_scenes():
    rng = np.random.default_rng(5)
    for trial in range(20):
        n = int(rng.integers(1, 12))
        centers = rng.uniform(150, 250, (3, 2))  # few centers: many near-duplicates
        kpts = np.stack([_person(rng, *centers[rng.integers(3)], size=rng.uniform(20, 60)) for _ in range(n)])
        kpts[:, :, :2] += rng.normal(0, 2, (n, 17, 2)).astype(np.float32)
        scores = rng.uniform(0, 1, n).astype(np.float32)
        areas = rng.uniform(2000, 8000, n).astype(np.float32)
        assert ev.oks_nms(kpts, scores, areas).tolist() == _nms_by_hand(kpts, scores, areas, 0.9), trial
    assert ev.oks_nms(np.zeros((0, 17, 3)), np.zeros(0), np.zeros(0)).tolist() == []


def test_padded_box_area_is_mmposes_scale_times_200():
    # 100 x 100 box: widened to the 3:4 crop (100 x 133.3), padded by 1.25 -> 125 x 166.7
    # 60 x 200 box: w < 0.75 h -> 150 x 200, padded -> 187.5 x 250
    got = ev.padded_box_areas(np.array([[10, 20, 110, 120, 0.9], [0, 0, 60, 200, 0.5]]))
    np.testing.assert_allclose(got, [125 * 500 / 3, 187.5 * 250], rtol=1e-6)


def test_image_results_rescore_then_suppress():
    rng = np.random.default_rng(6)
    a = _person(rng)
    kpts = np.stack([a, a + np.float32([0.5, 0.5, 0]), _person(rng, 400, 200)])  # two boxes on one person
    boxes = np.array([[150, 100, 250, 300, 0.6], [150, 100, 250, 300, 0.9], [350, 100, 450, 300, 0.3]])
    out = ev.image_results(7, kpts, boxes)
    scores = _rescore_by_hand(kpts, boxes[:, 4])
    assert [r["score"] for r in out] == pytest.approx([scores[1], scores[2]])  # the better duplicate stays
    assert out[0]["keypoints"] == pytest.approx(kpts[1].reshape(-1).tolist())
    assert all(r["image_id"] == 7 and r["category_id"] == 1 and len(r["keypoints"]) == 51 for r in out)


# --- boxes: ground truth and detections ---------------------------------------------------------------

def test_ground_truth_boxes_follow_mmpose(sample):
    coco = ev.load_keypoint_annotations(sample / ANN)
    total = sum(len(ev.ground_truth_boxes(coco, i)) for i in coco.getImgIds())
    assert total == 12  # 14 person boxes, of which 2 have no labelled keypoint
    ann = next(a for a in coco.dataset["annotations"] if a["image_id"] == 785)
    x, y, w, h = ann["bbox"]
    np.testing.assert_allclose(ev.ground_truth_boxes(coco, 785)[0], [x, y, x + w - 1, y + h - 1, 1.0])


def test_detections_on_unknown_images_are_counted(sample, tmp_path, caplog):
    dets = json.loads((sample / DETS).read_text())
    extra = [dict(dets[0], image_id=999999), dict(dets[1], image_id=999999), dict(dets[2], image_id=5)]
    path = tmp_path / "dets.json"
    path.write_text(json.dumps(dets + extra + [dict(dets[0], category_id=2)]))
    coco = ev.load_keypoint_annotations(sample / ANN)
    with caplog.at_level(logging.WARNING, logger="vitpose_trt.evaluate"):
        boxes, counts = ev.load_person_detections(path, coco)
    assert counts["unknown_image"] == 3 and counts["unknown_image_ids"] == 2 and counts["person"] == 121
    assert "3 of 121 detections" in caplog.text
    assert sum(len(b) for b in boxes.values()) == 118
    path.write_text(json.dumps(extra))
    with pytest.raises(ValueError, match="3 on unknown image ids"):
        ev.load_person_detections(path, coco)


def test_detections_that_are_not_boxes_name_the_file_and_the_image(sample, tmp_path):
    """The boxes of a detection file go through `geometry.check_boxes`, with the file and image named."""
    coco = ev.load_keypoint_annotations(sample / ANN)
    image_id = coco.getImgIds()[0]
    path = tmp_path / "dets.json"
    for bbox, score, problem in (([1e9, 0, 5, 5], 1.0, "beyond"), ([0, 0, 0, 0], 1.0, "zero width and height"),
                                 ([0, 0, 5, 5], float("nan"), "NaN or inf")):
        path.write_text(json.dumps([{"image_id": image_id, "category_id": 1, "bbox": bbox, "score": score}]))
        with pytest.raises(ValueError, match=rf"dets.json: image {image_id}: boxes \[0\] .*{problem}"):
            ev.load_person_detections(path, coco)
    # below the score threshold a box is dropped unchecked, as the protocol drops it
    path.write_text(json.dumps([{"image_id": image_id, "category_id": 1, "bbox": [0, 0, 0, 0], "score": 0.01},
                                {"image_id": image_id, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 0.9}]))
    kept, counts = ev.load_person_detections(path, coco, score_thr=0.5)
    assert counts["below_thr"] == 1 and kept[image_id].tolist() == [[0, 0, 5, 5, 0.9]]


def test_bad_annotation_and_detection_files_are_named(sample, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text((sample / DETS).read_text())  # a detection list given as annotations
    with pytest.raises(ValueError, match="not a COCO annotation file"):
        ev.load_keypoint_annotations(bad)
    data = json.loads((sample / ANN).read_text())
    for a in data["annotations"]:
        del a["keypoints"], a["num_keypoints"]  # what instances_val2017.json looks like
    bad.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="lacks .*keypoints.*instances"):
        ev.load_keypoint_annotations(bad)
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not a JSON file"):
        ev.load_keypoint_annotations(bad)
    with pytest.raises(FileNotFoundError, match="annotation file not found"):
        ev.load_keypoint_annotations(tmp_path / "nope.json")
    empty = tmp_path / "empty.json"
    empty.write_text("[]")
    coco = ev.load_keypoint_annotations(sample / ANN)
    with pytest.raises(ValueError, match="detection set is empty"):
        ev.load_person_detections(empty, coco)


def test_limit_must_be_positive(sample):
    for limit in (0, -1):
        with pytest.raises(ValueError, match="limit must be a positive number"):
            ev.evaluate(sample, sample / ANN, None, limit=limit)
        with pytest.raises(ValueError, match="limit must be a positive number"):
            ev.score_results(sample / ANN, sample / DETS, limit=limit)


def test_results_file_with_unknown_images_is_refused(sample, tmp_path):
    results = _gt_results(sample)
    results[0]["image_id"] = 424242
    path = tmp_path / "r.json"
    path.write_text(json.dumps(results))
    with pytest.raises(ValueError, match="1 image ids of the results are not in the annotations"):
        ev.score_results(sample / ANN, path)
    path.write_text("[]")
    with pytest.raises(ValueError, match="results list is empty"):
        ev.score_results(sample / ANN, path)


# --- end to end on the real photos ---------------------------------------------------------------

@pytest.fixture(scope="module")
def runs(sample, sample_checkpoint, tmp_path_factory):
    """The fixture ViTPose-S (PyTorch, CPU FP32) through `evaluate`, with GT boxes and detector boxes."""
    from vitpose_trt import VitPoseTRT

    pose = VitPoseTRT(str(sample_checkpoint), device="cpu")
    out = {}
    for name, dets in (("gt", None), ("dets", sample / DETS)):
        folder = tmp_path_factory.mktemp(f"eval-{name}")
        out[name] = (ev.evaluate(sample, sample / ANN, pose, dets=dets, out=folder, progress=False), folder)
    return out


def test_the_fixture_model_reaches_a_high_ap_on_its_own_people(runs):
    # It was fitted on these 12 people: a high AP shows the plumbing (boxes, crops, decode, rescoring, NMS,
    # COCOeval) is right, not that it is a pose model. Measured: 1.000 with GT boxes, 0.997 with detector boxes.
    gt, _ = runs["gt"]
    det, _ = runs["dets"]
    assert gt["AP"] >= 0.9 and det["AP"] >= 0.9, (gt["AP"], det["AP"])
    assert gt["settings"]["boxes_evaluated"] == 12 and det["settings"]["boxes_evaluated"] == 118
    assert det["settings"]["results_after_nms"] < 118  # OKS-NMS removed the duplicate boxes


def test_written_files_rescore_to_the_same_numbers(runs):
    for report, folder in runs.values():
        metrics = json.loads((folder / "metrics.json").read_text())
        assert {k: metrics[k] for k in ev.METRIC_NAMES} == {k: report[k] for k in ev.METRIC_NAMES}
        results = json.loads((folder / "keypoints.json").read_text())
        assert len(results) == report["settings"]["results_after_nms"]
        again = ev.score_results(report["settings"]["annotations"], folder / "keypoints.json")
        assert {k: again[k] for k in ev.METRIC_NAMES} == {k: report[k] for k in ev.METRIC_NAMES}
        assert not [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_a_wrong_model_scores_low(sample, tiny_model):
    """The AP guard above can fail: a random 2-block ViTPose on the same boxes scores near 0."""
    from vitpose_trt import VitPoseTRT
    from vitpose_trt.engines.pytorch import PyTorchEngine

    pose = VitPoseTRT(PyTorchEngine(copy.deepcopy(tiny_model)))
    report = ev.evaluate(sample, sample / ANN, pose, progress=False)
    assert report["AP"] < 0.5 and report["settings"]["random_weights"]


def test_missing_images_are_listed_not_fatal(sample, tiny_model, tmp_path, caplog):
    from vitpose_trt import VitPoseTRT
    from vitpose_trt.engines.pytorch import PyTorchEngine

    for name in ("000000000785.jpg", "000000196141.jpg"):  # temp copies of two of the four photos
        shutil.copy(sample / name, tmp_path)
    pose = VitPoseTRT(PyTorchEngine(copy.deepcopy(tiny_model)))
    with caplog.at_level(logging.WARNING, logger="vitpose_trt.evaluate"):
        report = ev.evaluate(tmp_path, sample / ANN, pose, progress=False)
    assert sorted(report["settings"]["missing_images"]) == ["000000040083.jpg", "000000197388.jpg"]
    assert report["settings"]["images_evaluated"] == 2
    assert "2 of 4 images are missing" in caplog.text
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="none of the 4 annotated images"):
        ev.evaluate(empty, sample / ANN, pose, progress=False)


@pytest.mark.slow
def test_compare_reports_ap_side_by_side_and_keypoint_distances(sample, sample_checkpoint, tiny_model, tmp_path):
    """The same boxes through ONNX Runtime: same AP, sub-pixel distances; through a wrong model: far off."""
    from vitpose_trt import VitPoseTRT
    from vitpose_trt.engines.pytorch import PyTorchEngine
    from vitpose_trt.export import export_onnx

    onnx_path = export_onnx(sample_checkpoint, tmp_path / "s.onnx").path
    wrong = VitPoseTRT(PyTorchEngine(copy.deepcopy(tiny_model)))
    report = ev.evaluate(sample, sample / ANN, str(sample_checkpoint), device="cpu", compare=[onnx_path, wrong],
                         progress=False)
    same, bad = report["compare"]
    assert same["metrics"]["AP"] == pytest.approx(report["AP"], abs=1e-3)
    assert same["distance_px"]["n"] > 100 and same["distance_px"]["max"] < 0.05, same["distance_px"]
    assert bad["distance_px"]["median"] > 5.0 and bad["metrics"]["AP"] < 0.5
    table = ev.format_table(report)
    assert "compare 1" in table and "compare 2" in table and "median" in table


def _printed_ap(text: str) -> float:
    (value,) = re.findall(r"^AP\s+([0-9.]+)\s*$", text, re.M)
    return float(value)


def test_cli_end_to_end(sample, sample_checkpoint, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["eval", "--images", str(sample), "--ann", str(sample / ANN), "--engine", str(sample_checkpoint),
               "--device", "cpu", "--out", str(out), "--no-progress", "--limit", "2"])
    assert rc == 0
    printed = capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(ev.METRIC_NAMES) <= metrics.keys() and metrics["settings"]["images_evaluated"] == 2
    assert _printed_ap(printed) == round(metrics["AP"], 4) and "boxes/s" in printed
    rc = main(["eval", "--ann", str(sample / ANN), "--results", str(out / "keypoints.json"), "--limit", "2"])
    assert rc == 0
    assert _printed_ap(capsys.readouterr().out) == round(metrics["AP"], 4)

    rc = main(["eval", "--images", str(sample), "--ann", str(sample / ANN), "--engine", str(sample_checkpoint),
               "--limit", "0"])
    err = capsys.readouterr().err
    assert rc != 0 and err.strip().count("\n") == 0
    assert err.startswith("vitpose-trt eval: error: limit must be a positive number")
