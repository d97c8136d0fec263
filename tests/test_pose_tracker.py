"""`PoseTracker`: detector -> pose -> ids -> smoothing; the detector-every-N propagation, its
arguments and config, and frames without detections."""

from __future__ import annotations

import numpy as np
import pytest

from vitpose_trt.pose_tracker import Person, PoseTracker
from vitpose_trt.tracking import IouTracker, iou_matrix


class BoxPose:
    """A stand-in pose model whose keypoints lie on the inner 80% of each box (and record the boxes)."""

    num_keypoints = 17

    def __init__(self):
        self.calls = []

    def infer(self, frame, boxes):
        boxes = np.asarray(boxes, float)
        self.calls.append(boxes.copy())
        u = np.linspace(0.1, 0.9, 17)
        kp = np.zeros((len(boxes), 17, 3), np.float32)
        for i, (x1, y1, x2, y2) in enumerate(boxes[:, :4]):
            kp[i, :, 0] = x1 + (x2 - x1) * u
            kp[i, :, 1] = y1 + (y2 - y1) * u
            kp[i, :, 2] = 0.9
        return kp


def test_det_every_runs_the_detector_every_nth_frame_and_boxes_follow_keypoints_between():
    frame = np.zeros((240, 320, 3), np.uint8)
    calls = []

    def detector(img):
        calls.append(len(calls))
        return np.array([[50, 40, 100, 200, 0.9], [200, 30, 260, 210, 0.8]])

    pose = BoxPose()
    tracker = PoseTracker(pose, detector, det_every=3)
    people = [tracker(frame) for _ in range(7)]
    assert len(calls) == 3  # frames 0, 3, 6
    assert all([p.id for p in ps] == [0, 1] for ps in people)
    # frame 1's box: the keypoints span the inner 80% of frame 0's box; padded by 1.25 -> exactly 100%
    np.testing.assert_allclose(pose.calls[1], pose.calls[0][:, :4], atol=1e-3)
    assert people[1][0].box_score == pytest.approx(0.9)  # the last detector score carries over
    assert isinstance(people[0][0], Person) and set(people[0][0].to_dict()) == {"id", "box", "box_score", "keypoints"}


def test_det_every_propagation_with_real_heatmap_peaks(coco_sample, sample_checkpoint):
    """On a still frame, the boxes made from the fixture model's keypoints between detector runs stay
    on the detector's people."""
    from vitpose_trt import VitPoseTRT

    name, image, boxes = next(s for s in coco_sample if s[0] == "000000000785.jpg")
    pose = VitPoseTRT(str(sample_checkpoint))
    tracker = PoseTracker(pose, lambda img: boxes[:1], det_every=4)
    people = [tracker(image) for _ in range(4)]
    assert [len(p) for p in people] == [1, 1, 1, 1] and {p[0].id for p in people} == {0}
    for p in people[1:]:
        assert iou_matrix(p[0].box[None], boxes[:1])[0, 0] > 0.6
    assert people[1][0].keypoints[:, 2].mean() > 0.3


def test_tracker_checks_its_arguments():
    with pytest.raises(ValueError, match="det_every"):
        PoseTracker(BoxPose(), det_every=0)
    with pytest.raises(TypeError, match="VitPoseTRT"):
        PoseTracker("model.onnx")
    with pytest.raises(ValueError, match="x2 < x1"):
        PoseTracker(BoxPose())(np.zeros((10, 10, 3), np.uint8), boxes=[[5, 5, 1, 1]])


def test_a_tracking_config_is_the_same_as_its_keywords():
    """`PoseTracker(pose, config=TrackingConfig(...))` and `PoseTracker(pose, det_every=..., ...)` set the
    same settings; keywords given beside a config win over its fields; a misspelt keyword is an error."""
    from vitpose_trt.pose_tracker import TrackingConfig

    config = TrackingConfig(det_every=3, smooth=True, box_thr=0.5, fps=25.0)
    by_config = PoseTracker(BoxPose(), config=config)
    by_keywords = PoseTracker(BoxPose(), det_every=3, smooth=True, box_thr=0.5, fps=25.0)
    settings = ("det_every", "smooth", "box_thr", "kpt_thr", "box_padding", "fps", "max_detector_failures",
                "one_euro")
    assert [getattr(by_config, a) for a in settings] == [getattr(by_keywords, a) for a in settings]
    assert (by_config.det_every, by_config.smooth, by_config.box_thr, by_config.fps) == (3, True, 0.5, 25.0)
    both = PoseTracker(BoxPose(), config=config, det_every=2)
    assert (both.det_every, both.smooth) == (2, True)
    with pytest.raises(ValueError, match="det_every"):
        TrackingConfig(det_every=0)
    with pytest.raises(TypeError, match="det_evry"):
        PoseTracker(BoxPose(), det_evry=3)


def test_smoothing_changes_only_coordinates_and_follows_the_track():
    rng = np.random.default_rng(1)
    frame = np.zeros((240, 320, 3), np.uint8)
    raw, smooth = PoseTracker(BoxPose()), PoseTracker(BoxPose(), smooth=True)
    box = np.array([[50, 40, 100, 200, 1.0]])
    a = b = None
    for i in range(20):
        noisy = box + np.r_[rng.normal(0, 3, 4), 0]
        a, b = raw(frame, noisy, time=i / 30)[0], smooth(frame, noisy, time=i / 30)[0]
    assert a.id == b.id == 0
    np.testing.assert_array_equal(a.keypoints[:, 2], b.keypoints[:, 2])
    assert not np.allclose(a.keypoints[:, :2], b.keypoints[:, :2])


def test_frames_without_detection_age_and_drop_lost_tracks():
    """Between detector runs (`advance`), tracks that were not moved age like unmatched ones and are
    dropped past max_age, as in `update`."""
    tracker = IouTracker(max_age=2)
    a, b = tracker.update(np.array([[0, 0, 10, 10], [50, 50, 60, 60]], float))
    for _ in range(3):
        moved = tracker.advance([(a, a.box + 1.0)])
    assert moved == [a] and a.missed == 0 and b not in tracker.tracks
    np.testing.assert_allclose(a.box, [3, 3, 13, 13])
