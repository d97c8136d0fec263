"""`tracking`: ids by optimal IoU assignment (static scene, two people crossing), One-Euro smoothing
measured against the raw track, and boxes from keypoints."""

from __future__ import annotations

import numpy as np
import pytest

from vitpose_trt.tracking import IouTracker, OneEuroFilter, box_from_keypoints, iou_matrix


def test_iou_matrix_values():
    a = np.array([[0, 0, 10, 10], [0, 0, 0.5, 0.5]])
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]])
    np.testing.assert_allclose(iou_matrix(a, b)[0], [1.0, 50 / 150, 0.0])
    assert iou_matrix(np.zeros((0, 4)), b).shape == (0, 3)


def test_ids_are_stable_on_a_static_scene_whatever_the_box_order():
    rng = np.random.default_rng(0)
    people = np.array([[10, 10, 60, 150], [200, 20, 260, 170], [400, 40, 450, 160]], float)
    tracker = IouTracker()
    first = {tuple(b): t.id for b, t in zip(people, tracker.update(people))}
    for _ in range(10):
        order = rng.permutation(3)
        jittered = people[order] + rng.normal(0, 1.5, (3, 4))
        for i, track in zip(order, tracker.update(jittered)):
            assert track.id == first[tuple(people[i])]
    assert {t.id for t in tracker.tracks} == {0, 1, 2}


def crossing_boxes(frames=21):
    """Two equal people walking towards each other along one line, passing at frame 10; the
    detector lists them left to right (so their order flips when they cross)."""
    for f in range(frames):
        a = np.array([100 + 10 * f, 50, 140 + 10 * f, 150.0])  # walks right
        b = np.array([300 - 10 * f, 50, 340 - 10 * f, 150.0])  # walks left
        yield (a, b) if a[0] <= b[0] else (b, a), a[0] <= b[0]


def track_crossing(tracker):
    """[(id of the right-walker, id of the left-walker)] per frame."""
    out = []
    for boxes, a_first in crossing_boxes():
        ids = [t.id for t in tracker.update(np.stack(boxes))]
        out.append((ids[0], ids[1]) if a_first else (ids[1], ids[0]))
    return out


def test_two_people_crossing_keep_their_ids():
    ids = track_crossing(IouTracker())
    assert ids[0] != ids[0][::-1] and all(pair == ids[0] for pair in ids)


def test_the_crossing_check_fails_for_a_tracker_without_motion_prediction():
    ids = track_crossing(IouTracker(predict=False))  # the deliberately wrong tracker swaps them
    assert any(pair != ids[0] for pair in ids)


def test_lost_tracks_expire_and_new_people_get_new_ids():
    tracker = IouTracker(max_age=2)
    (t0,) = tracker.update(np.array([[0, 0, 10, 20]]))
    for _ in range(3):
        assert tracker.update(np.zeros((0, 4))) == []
    (t1,) = tracker.update(np.array([[0, 0, 10, 20]]))
    assert t1.id != t0.id and len(tracker.tracks) == 1


def noisy_track(seed=0, fps=30.0, seconds=4.0, noise=3.0):
    t = np.arange(0, seconds, 1 / fps)
    truth = np.stack([200 + 60 * np.sin(2 * np.pi * 0.4 * t), 300 + 30 * np.cos(2 * np.pi * 0.3 * t)], axis=1)
    return t, truth, truth + np.random.default_rng(seed).normal(0, noise, truth.shape)


def jitter(xy):
    """RMS of the second difference: frame-to-frame shake, insensitive to smooth motion."""
    return float(np.sqrt((np.diff(xy, n=2, axis=0) ** 2).mean()))


def smooth_run(filt, t, raw):
    return np.stack([filt(p[None], ti)[0] for p, ti in zip(raw, t)])


def test_one_euro_reduces_jitter_and_error_of_a_noisy_track():
    t, truth, raw = noisy_track()
    smooth = smooth_run(OneEuroFilter(), t, raw)
    assert jitter(smooth) < 0.6 * jitter(raw)  # measured 0.43 with the defaults
    err_raw = np.sqrt(((raw - truth) ** 2).mean())
    err_smooth = np.sqrt(((smooth[5:] - truth[5:]) ** 2).mean())
    assert err_smooth < 0.95 * err_raw  # measured 0.90: less shake without lagging behind the motion


def test_the_jitter_check_fails_for_a_filter_that_does_not_smooth():
    t, _, raw = noisy_track()
    passthrough = OneEuroFilter(min_cutoff=1e4)  # cutoff far above the frame rate: output = input
    assert not jitter(smooth_run(passthrough, t, raw)) < 0.6 * jitter(raw)


def test_one_euro_parameters_are_checked():
    with pytest.raises(ValueError, match="min_cutoff"):
        OneEuroFilter(min_cutoff=0)


def test_box_from_keypoints_pads_the_confident_ones():
    kp = np.array([[10, 20, 0.9], [30, 80, 0.8], [20, 50, 0.7], [500, 500, 0.1]])
    np.testing.assert_allclose(box_from_keypoints(kp, 0.3, padding=1.25), [7.5, 12.5, 32.5, 87.5])
    assert box_from_keypoints(kp, 0.75) is None  # only 2 confident keypoints
