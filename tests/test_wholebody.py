"""COCO-WholeBody (133 keypoints) end to end on heatmaps with known peaks: the flip merge (numpy and
C++ decode) puts every one of the 133 keypoints back, the pipeline takes the dataset's flip pairs, a
wrong pair list is caught; result files in the official part layout; the whole-body evaluation
(per-part sigmas, xtcocotools' part rules) on annotations built from the real sample; drawing."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from tests.conftest import coco_sample_dir
from vitpose_trt import evaluate as ev
from vitpose_trt.coco import keypoint_results, result_keypoints
from vitpose_trt.datasets import COCO, COCO_WHOLEBODY, flip_index
from vitpose_trt.engines.base import Engine
from vitpose_trt.decode import postprocess

WB = COCO_WHOLEBODY
H, W = 64, 48
PEAK_TOL_PX = 0.05  # DARK-UDP recovers a sigma-2 Gaussian's sub-pixel centre to ~0.01 px (test_postprocess)


def gaussians(centres: np.ndarray, h: int = H, w: int = W, sigma: float = 2.0) -> np.ndarray:
    """(N, K, h, w) float32: one Gaussian of height 1 at each (x, y) of `centres` (N, K, 2)."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    cx, cy = centres[..., 0, None, None], centres[..., 1, None, None]
    return np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * sigma**2)).astype(np.float32)


def known_peaks(n: int, seed: int = 0) -> np.ndarray:
    """(n, 133, 2) sub-pixel peak positions away from the border (DARK needs its 11x11 window inside)."""
    rng = np.random.default_rng(seed)
    return np.stack([rng.uniform(6, W - 7, (n, WB.num_keypoints)), rng.uniform(6, H - 7, (n, WB.num_keypoints))], -1)


def heatmaps_and_mirror(peaks: np.ndarray, pairs=WB.flip_pairs) -> tuple[np.ndarray, np.ndarray]:
    """What a perfect model gives for a crop and for its mirror (UDP: x -> W - 1 - x), where the
    mirror's channel perm[k] holds keypoint k (its left/right partner's channel)."""
    mirrored = peaks.copy()
    mirrored[..., 0] = W - 1 - peaks[..., 0]
    perm = flip_index(WB.num_keypoints, pairs)
    flipped = np.empty((len(peaks), WB.num_keypoints, H, W), np.float32)
    flipped[:, perm] = gaussians(mirrored)
    return gaussians(peaks), flipped


def udp_identity(n: int) -> np.ndarray:
    """Transforms under which frame pixels are heatmap pixels (UDP)."""
    return np.tile(np.array([(W - 1) / 2, (H - 1) / 2, W - 1, H - 1], np.float32), (n, 1))


@pytest.mark.parametrize("impl", ["numpy", "cpp"])
def test_flip_merge_and_decode_recover_all_133_keypoints(impl):
    if impl == "cpp":
        pytest.importorskip("vitpose_trt._C", reason="the C++ extension is not built")
    peaks = known_peaks(3)
    hm, flipped = heatmaps_and_mirror(peaks)
    kp = postprocess(hm, udp_identity(3), "udp", flipped=flipped, flip_pairs=WB.flip_pairs, impl=impl)
    assert kp.shape == (3, 133, 3)
    err = np.abs(kp[..., :2] - peaks).max(axis=-1)
    assert err.max() < PEAK_TOL_PX, f"worst keypoint {WB.keypoints[int(err.max(0).argmax())]}: {err.max():.3f} px"
    np.testing.assert_array_equal(kp[..., 2], hm.max(axis=(2, 3)))  # the two halves of each peak land on each other


@pytest.mark.parametrize("impl", ["numpy", "cpp"])
def test_wrong_flip_pairs_are_caught_by_the_known_peaks(impl):
    """COCO's 17-keypoint pairs on a whole-body model leave feet, face and hands unswapped: their
    merged heatmaps hold two half peaks, and the decode misses (the check above can fail)."""
    if impl == "cpp":
        pytest.importorskip("vitpose_trt._C", reason="the C++ extension is not built")
    peaks = known_peaks(3, seed=1)
    hm, flipped = heatmaps_and_mirror(peaks)
    kp = postprocess(hm, udp_identity(3), "udp", flipped=flipped, flip_pairs=COCO.flip_pairs, impl=impl)
    err = np.abs(kp[..., :2] - peaks).max(axis=-1)
    assert err[:, :17].max() < PEAK_TOL_PX  # the body's pairs are right
    swapped = [i for pair in WB.flip_pairs if pair[0] >= 17 for i in pair]
    assert np.median(kp[:, swapped, 2]) < 0.6  # two half peaks instead of one whole one
    assert (err[:, swapped] > 1.0).mean() > 0.3  # and the argmax lands on the wrong half about half the time


class KnownPeaksEngine(Engine):
    """A test-only engine: for a batch of [crops | their mirrors] (the CPU path's flip-test batch) it
    returns the known-peak heatmaps of `heatmaps_and_mirror`, one person's per crop pair."""

    name = "known-peaks"
    num_keypoints = 133
    input_size = (256, 192)
    max_batch = 64

    def __init__(self, peaks: np.ndarray) -> None:
        self.hm, self.flipped = heatmaps_and_mirror(peaks)

    def _run(self, crops: np.ndarray) -> np.ndarray:
        n = len(crops) // 2
        return np.concatenate([self.hm[:n], self.flipped[:n]])


@pytest.mark.parametrize("impl", ["numpy", "cpp"])
def test_pipeline_flip_test_uses_the_datasets_pairs(impl):
    from vitpose_trt import VitPoseTRT

    if impl == "cpp":
        pytest.importorskip("vitpose_trt._C", reason="the C++ extension is not built")
    from vitpose_trt.geometry import boxes_to_transforms, heatmap_to_frame

    peaks = known_peaks(2, seed=2)
    boxes = np.array([[10, 20, 110, 220], [50, 0, 90, 60]], np.float64)
    pose = VitPoseTRT(KnownPeaksEngine(peaks), flip_test=True, impl=impl)
    assert pose.dataset is WB  # K = 133 tells it
    kp = pose.infer(np.zeros((240, 160, 3), np.uint8), boxes)
    expected = heatmap_to_frame(peaks.astype(np.float32), boxes_to_transforms(boxes, (256, 192)), (H, W), "udp")
    scale = boxes_to_transforms(boxes, (256, 192))[:, 2:3] / (W - 1)  # frame px per heatmap px
    assert (np.abs(kp[..., :2] - expected).max(-1) / scale).max() < PEAK_TOL_PX
    with pytest.raises(ValueError, match=r"dataset 'coco' has 17 keypoints but the known-peaks engine has 133"):
        VitPoseTRT(KnownPeaksEngine(peaks), dataset="coco")


# --- result files and the whole-body evaluation ---------------------------------------------------

def test_results_are_written_in_the_official_part_layout():
    kp = np.random.default_rng(0).uniform(0, 100, (2, 133, 3)).astype(np.float32)
    results = keypoint_results(785, kp, np.array([0.9, 0.5]), dataset=WB)
    assert list(results[0]) == ["image_id", "category_id", "keypoints", "foot_kpts", "face_kpts", "lefthand_kpts",
                                "righthand_kpts", "score"]
    assert [len(results[0][p.annotation_key]) for p in WB.parts] == [51, 18, 204, 63, 63]
    np.testing.assert_array_equal(np.array(result_keypoints(results[1], WB), np.float32), kp[1].reshape(-1))


def write_wholebody_annotations(root, path) -> list[dict]:
    """The sample's person annotations with whole-body parts added, written to `path`: the 17 real
    body keypoints, and feet, face and hands drawn inside each box (a fixed seed); person 0 has no
    face labels, person 1 no left-hand labels (so those parts must ignore them, as the official
    evaluator does). Returns the people with keypoints."""
    data = json.loads((root / "person_keypoints.json").read_text())
    rng = np.random.default_rng(3)
    people = [a for a in data["annotations"] if a["num_keypoints"] > 0]
    for ann in data["annotations"]:
        x, y, w, h = ann["bbox"]
        for part in WB.parts[1:]:
            pts = np.stack([x + rng.uniform(0, w, part.size), y + rng.uniform(0, h, part.size),
                            np.full(part.size, 2.0)], -1)
            if ann["num_keypoints"] == 0 or (ann is people[0] and part.name == "face") or \
                    (ann is people[1] and part.name == "lefthand"):
                pts[:] = 0
            ann[part.annotation_key] = pts.reshape(-1).round(2).tolist()
    path.write_text(json.dumps(data))
    return people


@pytest.fixture(scope="module")
def wholebody_annotations(tmp_path_factory):
    root = coco_sample_dir()
    if root is None:
        pytest.skip("real photos not found: ../shared/data/coco-sample is absent (set VITPOSE_TRT_COCO_SAMPLE)")
    path = tmp_path_factory.mktemp("wholebody") / "coco_wholebody_sample.json"
    return path, write_wholebody_annotations(root, path)


def perfect_results(people) -> list[dict]:
    """Each person's ground truth as a result (score 1 everywhere). Unlabelled keypoints go to the box
    centre: inside the box, where the evaluator matches them to the (ignored) person, as any model's."""
    out = []
    for ann in people:
        flat = np.array([v for p in WB.parts for v in ann[p.annotation_key]], np.float32).reshape(133, 3)
        x, y, w, h = ann["bbox"]
        flat[flat[:, 2] == 0, :2] = x + w / 2, y + h / 2
        flat[:, 2] = 1.0
        out += keypoint_results(ann["image_id"], flat[None], np.array([1.0]), dataset=WB)
    return out


def test_wholebody_eval_scores_perfect_results_one_per_part(wholebody_annotations):
    path, people = wholebody_annotations
    coco = ev.load_keypoint_annotations(path, WB)
    report = ev.coco_keypoint_eval(coco, perfect_results(people), dataset=WB)
    assert list(report["parts"]) == ["body", "foot", "face", "lefthand", "righthand", "wholebody"]
    for part, metrics in report["parts"].items():
        assert metrics["AP"] == pytest.approx(1.0), part
    assert report["AP"] == report["parts"]["wholebody"]["AP"]


def test_wholebody_eval_moves_only_the_perturbed_part(wholebody_annotations):
    """Left hands moved by a few pixels: the left hand's AP and the whole body's fall, the other parts
    stay perfect; the person without left-hand labels is ignored by the left-hand score."""
    path, people = wholebody_annotations
    coco = ev.load_keypoint_annotations(path, WB)
    results = perfect_results(people)
    for r in results:
        r["lefthand_kpts"] = [v + (6.0 if j % 3 == 0 else 0.0) for j, v in enumerate(r["lefthand_kpts"])]
    parts = ev.coco_keypoint_eval(coco, results, dataset=WB)["parts"]
    assert parts["lefthand"]["AP"] < 0.9
    assert parts["wholebody"]["AP"] < 1.0
    for name in ("body", "foot", "face", "righthand"):
        assert parts[name]["AP"] == pytest.approx(1.0), name


def test_wholebody_body_part_is_the_coco_evaluation(wholebody_annotations):
    """The body part scores exactly as COCO's own evaluation of the same 17 keypoints."""
    path, people = wholebody_annotations
    rng = np.random.default_rng(4)
    results = perfect_results(people)
    for r in results:
        r["keypoints"] = (np.array(r["keypoints"]) + rng.normal(0, 4, 51) * np.tile([1, 1, 0], 17)).tolist()
        r["score"] = float(rng.uniform(0.5, 1))
    wb = ev.coco_keypoint_eval(ev.load_keypoint_annotations(path, WB), results, dataset=WB)["parts"]["body"]
    coco_only = [{"image_id": r["image_id"], "category_id": 1, "keypoints": r["keypoints"], "score": r["score"]}
                 for r in results]
    assert wb == ev.coco_keypoint_eval(ev.load_keypoint_annotations(path, COCO), coco_only)
    assert wb["AP"] < 1.0


def test_wholebody_results_with_no_positive_part_score_are_dropped(wholebody_annotations):
    """xtcocotools skips a result whose part scores are all <= 0; as a detection it would be a false
    positive and lower the face AP."""
    path, people = wholebody_annotations
    coco = ev.load_keypoint_annotations(path, WB)
    results = perfect_results(people)
    extra = copy.deepcopy(results[2])
    extra["face_kpts"] = [v if j % 3 != 2 else 0.0 for j, v in enumerate(extra["face_kpts"])]
    extra["face_kpts"] = [v + 40.0 if j % 3 == 0 else v for j, v in enumerate(extra["face_kpts"])]
    extra["score"] = 2.0  # ranked first: counted, it would be a false positive at every threshold
    assert ev.coco_keypoint_eval(coco, results + [extra], dataset=WB)["parts"]["face"]["AP"] == pytest.approx(1.0)


def test_wholebody_annotation_layout_is_checked(wholebody_annotations, tmp_path):
    path, _ = wholebody_annotations
    data = json.loads(path.read_text())
    del data["annotations"][0]["face_kpts"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"annotation 0 has none in 'face_kpts', expected 204 \(the 68 "
                                         r"COCO-WholeBody face keypoints"):
        ev.load_keypoint_annotations(bad, WB)
    with pytest.raises(ValueError, match="has 0 values in 'foot_kpts'|has none in 'foot_kpts'"):
        ev.load_keypoint_annotations(coco_sample_dir() / "person_keypoints.json", WB)


def test_score_results_reads_both_result_layouts(wholebody_annotations, tmp_path):
    path, people = wholebody_annotations
    split = perfect_results(people)
    flat = [{"image_id": r["image_id"], "keypoints": result_keypoints(r, WB), "score": r["score"]} for r in split]
    for name, results in (("split", split), ("flat", flat)):
        f = tmp_path / f"{name}.json"
        f.write_text(json.dumps(results))
        assert ev.score_results(path, f, dataset="coco-wholebody")["parts"]["face"]["AP"] == pytest.approx(1.0)
    f.write_text(json.dumps([{k: v for k, v in split[0].items() if k != "face_kpts"}]))
    with pytest.raises(ValueError, match="result 0 has no 'face_kpts'"):
        ev.score_results(path, f, dataset="coco-wholebody")


# --- drawing --------------------------------------------------------------------------------------

def test_wholebody_drawing_keeps_hands_and_face_small():
    from vitpose_trt.draw import draw_poses

    frame = np.zeros((600, 600, 3), np.uint8)
    kp = np.zeros((1, 133, 3), np.float32)
    kp[0, :, 2] = 1.0
    kp[0, :, 0], kp[0, :, 1] = 300, 300
    kp[0, 112:133, 0] = np.linspace(100, 140, 21)  # the right hand, spread along a line
    kp[0, 112:133, 1] = 100
    hand = draw_poses(frame, kp[:, :], None, 0.3, WB)[80:120, 90:150]
    body = kp.copy()
    body[0, 5, :2] = 100, 500
    body[0, 7, :2] = 140, 500  # a body link (left shoulder - left elbow) along a line of the same length
    limb = draw_poses(frame, body, None, 0.3, WB)[480:520, 90:150]
    rows = lambda img: int(np.count_nonzero(img.any(axis=(1, 2))))  # noqa: E731  (the drawn stroke's height)
    assert 0 < rows(hand) <= 4 < rows(limb)
    with pytest.raises(ValueError, match="17 keypoints, but dataset 'coco-wholebody' has 133"):
        draw_poses(frame, kp[:, :17], None, 0.3, WB)
