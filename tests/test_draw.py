"""Overlays: joints above the score threshold are drawn where the keypoints are, the rest are not."""

from __future__ import annotations

import numpy as np
import pytest

from vitpose_trt.datasets import get
from vitpose_trt.draw import POINT_COLOUR, draw_people, draw_poses
from vitpose_trt.pose_tracker import Person


def _keypoints(scores):
    kp = np.zeros((1, len(scores), 3), np.float32)
    kp[0, :, 0] = 20 + 15 * np.arange(len(scores))
    kp[0, :, 1] = 50
    kp[0, :, 2] = scores
    return kp


def test_joints_above_the_threshold_are_drawn_at_their_keypoints_and_the_frame_is_left_alone():
    frame = np.zeros((100, 300, 3), np.uint8)
    kp = _keypoints([0.9, 0.1, np.nan, 0.5])
    out = draw_poses(frame, kp, score_thr=0.3)
    assert not frame.any()  # a copy is drawn on
    for (x, y, s) in kp[0]:
        drawn = out[int(y), int(x)]
        assert (tuple(drawn) == POINT_COLOUR) == bool(s > 0.3), (x, s)  # NaN and 0.1 left out


def test_a_dataset_draws_its_skeleton_and_refuses_another_keypoint_count():
    coco = get("coco")
    frame = np.zeros((200, 400, 3), np.uint8)
    kp = _keypoints([0.9] * coco.num_keypoints)
    kp[0, :, 1] = 100
    with_limbs, joints_only = draw_poses(frame, kp, dataset=coco), draw_poses(frame, kp)
    assert (with_limbs != joints_only).any()  # the limbs
    with pytest.raises(ValueError, match="17"):
        draw_poses(frame, kp[:, :5], dataset=coco)


def test_draw_people_labels_each_person_with_their_id_and_copies_an_empty_frame():
    frame = np.zeros((240, 320, 3), np.uint8)
    assert draw_people(frame, []) is not frame
    kp = _keypoints([0.9] * 17)[0]
    box = np.array([10, 40, 300, 200], np.float32)
    labelled = draw_people(frame, [Person(7, box, 0.9, kp)])
    boxed = draw_poses(frame, kp[None], box[None])
    assert (labelled[:40] != boxed[:40]).any()  # the id, written above the box
