"""`PoseTracker`: frame in, tracked people out: detector -> ViTPose -> ids -> smoothing.

    people = PoseTracker(VitPoseTRT("vitpose-b.engine"), detector="yolov8n.onnx")(frame)

The CLI's video path is this object in a loop; apps use it the same way.
"""

from __future__ import annotations

import logging
import time as _time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.optimize  # noqa: F401  -- tracking's matcher: loaded with this module, not in the first frame's time

from vitpose_trt.detect import detector_file, make_detector
from vitpose_trt.geometry import check_boxes, check_frame
from vitpose_trt.options import with_options
from vitpose_trt.video_io import person_record
from vitpose_trt.tracking import (ONE_EURO_BETA, ONE_EURO_D_CUTOFF, ONE_EURO_MIN_CUTOFF, IouTracker, OneEuroFilter,
                               Track, box_from_keypoints)

log = logging.getLogger(__name__)

STAGES = ("detect", "pose", "track")
# The CLI's video path tolerates a detector that fails on this many frames in a row (each such frame is
# tracked from the keypoints, as between detector runs); one more failure ends the run (DetectorError).
MAX_DETECTOR_FAILURES = 10


class DetectorError(RuntimeError):
    """The person detector failed on more frames in a row than the tracker tolerates."""


@dataclass
class Person:
    """One tracked person in one frame.

    Attributes:
        id: track id, stable while the person stays in view (new people get new ids).
        box: [x1, y1, x2, y2] frame pixels: the detector's box, or on frames between detector runs
            the padded box around the previous keypoints.
        box_score: the detector's score (between detector runs: the last one).
        keypoints: (K, 3) float32 x, y, score (smoothed when the tracker smooths).
    """

    id: int
    box: np.ndarray
    box_score: float
    keypoints: np.ndarray

    def to_dict(self, decimals: int = 2) -> dict:
        """JSON-ready, as in the video JSONL (`video_io.person_record`): {"id", "box", "box_score", "keypoints"}."""
        return person_record(self.id, self.box, self.box_score, self.keypoints, decimals)


@dataclass(frozen=True)
class TrackingConfig:
    """How a `PoseTracker` detects, tracks and smooths; each field is also a `PoseTracker` keyword.

    Attributes:
        det_every: run the detector on every N-th frame; in between each person's box is the padded
            box around their previous confident keypoints (as top-down video trackers do). A frame
            where everyone is lost runs the detector anyway.
        smooth: One-Euro filter each keypoint of each track.
        min_cutoff / beta / d_cutoff: the One-Euro parameters (see `vitpose_trt.tracking`).
        box_thr: detector boxes scoring below this are not tracked.
        kpt_thr: keypoints scoring above this make the propagated box.
        box_padding: how much the box around the keypoints is enlarged (width and height factor).
        iou_thr / max_age: id matching (see `IouTracker`).
        fps: frame rate used for time stamps when the caller gives none (for smoothing).
        max_detector_failures: frames in a row on which an exception from the detector (or boxes it
            returns that are not boxes: NaN, wrong shape) is tolerated: the frame is then tracked from
            the keypoints as between detector runs, with a warning, and the detector runs again on the
            next frame. One failure more raises `DetectorError` from the last one. 0 (the default):
            the detector's exception propagates at once, unchanged.

    Raises:
        ValueError: det_every or max_detector_failures not an integer in range, fps <= 0, or One-Euro
            parameters out of range (checked when the config is made, not at the first frame).
    """

    det_every: int = 1
    smooth: bool = False
    min_cutoff: float = ONE_EURO_MIN_CUTOFF
    beta: float = ONE_EURO_BETA
    d_cutoff: float = ONE_EURO_D_CUTOFF
    box_thr: float = 0.3
    kpt_thr: float = 0.3
    box_padding: float = 1.25
    iou_thr: float = 0.3
    max_age: int = 30
    fps: float = 30.0
    max_detector_failures: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.det_every, int) or self.det_every < 1:
            raise ValueError(f"det_every must be an integer >= 1, got {self.det_every!r}")
        if self.fps <= 0:
            raise ValueError(f"fps must be > 0, got {self.fps}")
        if not isinstance(self.max_detector_failures, int) or self.max_detector_failures < 0:
            raise ValueError(f"max_detector_failures must be an integer >= 0, got {self.max_detector_failures!r}")
        OneEuroFilter(self.min_cutoff, self.beta, self.d_cutoff)  # validate now, not at the first frame


class PoseTracker:
    """Top-down pose tracking over a video: `people = tracker(frame)`.

        tracker = PoseTracker(pose, "yolo11n", det_every=3, smooth=True)
        tracker = PoseTracker(pose, "yolo11n", config=TrackingConfig(det_every=3, smooth=True))  # the same

    Args:
        pose: a `VitPoseTRT` (anything with `infer(frame, boxes) -> (N, K, 3)`).
        detector: an .onnx person detector path, a `Detector`, any callable frame -> (M, 5) boxes,
            or None for OpenCV's HOG people detector (weak; logged). Ignored on frames whose boxes
            the caller passes.
        config: the detection, tracking and smoothing settings (default: `TrackingConfig()`).
        settings: any `TrackingConfig` field by name (det_every=, smooth=, min_cutoff=, beta=,
            d_cutoff=, box_thr=, kpt_thr=, box_padding=, iou_thr=, max_age=, fps=,
            max_detector_failures=), over `config`'s value; see `TrackingConfig` for each.

    Attributes:
        stage_times: seconds spent per stage ("detect", "pose", "track") in the last call: a hook for
            benchmarks and progress displays.
        detector_failures: frames on which the detector failed and the tracker carried on.
        det_every, smooth, box_thr, kpt_thr, box_padding, fps, max_detector_failures: the settings in
            use (`fps` may be changed between videos).
    """

    def __init__(self, pose, detector=None, *, config: TrackingConfig | None = None, **settings: Any) -> None:
        if not hasattr(pose, "infer"):
            raise TypeError(f"pose must be a VitPoseTRT (with .infer), got {type(pose).__name__}")
        config = with_options(TrackingConfig, config, settings)
        self.pose = pose
        if isinstance(detector, (str, Path)) and str(detector).lower() != "hog":
            detector = detector_file(detector)  # a missing file fails here, not at the first frame
        self._detector_arg = detector
        self._detector: Callable | None = None
        self.det_every, self.smooth = config.det_every, config.smooth
        self.one_euro = dict(min_cutoff=config.min_cutoff, beta=config.beta, d_cutoff=config.d_cutoff)
        self.box_thr, self.kpt_thr, self.box_padding = config.box_thr, config.kpt_thr, config.box_padding
        self.fps = config.fps
        self.tracker = IouTracker(iou_thr=config.iou_thr, max_age=config.max_age)
        self.frame_index = 0
        self._since_detect = 0
        self.stage_times = dict.fromkeys(STAGES, 0.0)
        self.max_detector_failures = config.max_detector_failures
        self.detector_failures = 0
        self._failures_in_a_row = 0
        self._ahead: tuple[np.ndarray, Future] | None = None  # a detection started during the last call
        self._pool: ThreadPoolExecutor | None = None

    @property
    def detector(self) -> Callable[[np.ndarray], np.ndarray]:
        """The detector in use (made on first need, so a tracker fed boxes never loads one)."""
        if self._detector is None:
            self._detector = make_detector(self._detector_arg)
        return self._detector

    def reset(self) -> None:
        """Forget all tracks (a new video)."""
        self.tracker.reset()
        self.frame_index = 0
        self._since_detect = 0
        self.detector_failures = self._failures_in_a_row = 0
        self._ahead = None

    def __call__(self, frame: np.ndarray, boxes=None, time: float | None = None, *,
                 next_frame: np.ndarray | None = None) -> list[Person]:
        """Track the people of the next frame: its boxes (given, detected, or propagated from the
        last keypoints) -> track ids -> poses -> smoothing.

        Args:
            frame: HxWx3 uint8 BGR.
            boxes: this frame's person boxes, (M, 4) or (M, 5) with scores, to use instead of the
                detector (e.g. from a detections file); None to detect/propagate.
            time: the frame's time in seconds (default: frame index / fps).
            next_frame: the frame that comes next, when it is known (a video read ahead). If the
                detector's schedule runs it on that frame, it starts now on a worker thread, while
                this frame's poses are computed, and the next call takes its boxes: the same boxes,
                sooner. (A frame where everyone is lost detects on the spot, as without it.)

        Returns:
            the people of this frame, in track-id order.
        """
        check_frame(frame)
        t = self.frame_index / self.fps if time is None else float(time)
        times = dict.fromkeys(STAGES, 0.0)
        dets, propagated, times["detect"] = self._find(frame, boxes)
        if next_frame is not None and boxes is None and self._since_detect % self.det_every == 0:
            self._detect_ahead(next_frame)
        t1 = _time.perf_counter()
        tracks = self._match(dets, propagated)
        track_boxes = np.array([tr.box for tr in tracks]).reshape(-1, 4)
        t2 = _time.perf_counter()
        keypoints = self._pose(frame, track_boxes)
        t3 = _time.perf_counter()
        people = self._people(tracks, keypoints, t)
        times["pose"] = t3 - t2
        times["track"] = (t2 - t1) + (_time.perf_counter() - t3)
        self.stage_times = times
        self.frame_index += 1
        return people

    def _find(self, frame: np.ndarray, boxes) -> tuple[np.ndarray | None, list[tuple[Track, np.ndarray]], float]:
        """This frame's (M, 5) detections (the given boxes, or the detector's), or None and each track's
        propagated box (between detector runs, or when the detector failed); and the seconds spent
        detecting (0 without a detector run)."""
        t0 = _time.perf_counter()
        propagated: list[tuple[Track, np.ndarray]] = []
        seconds = 0.0
        if boxes is not None:
            dets = check_boxes(boxes, scores=True)
        elif self._since_detect % self.det_every != 0 and (propagated := self._propagate()):
            dets = None
        else:
            dets = self._detect(frame)
            self._since_detect = 0 if dets is not None else -1  # after a failure: try again next frame
            propagated = self._propagate() if dets is None else []
            seconds = _time.perf_counter() - t0
        self._since_detect += 1
        return dets, propagated, seconds

    def _match(self, dets: np.ndarray | None, propagated: list[tuple[Track, np.ndarray]]) -> list[Track]:
        """The tracks of this frame: detections above `box_thr` matched to ids, or the propagated boxes."""
        if dets is None:
            return self.tracker.advance(propagated)
        dets = dets[dets[:, 4] >= self.box_thr]
        return self.tracker.update(dets[:, :4], dets[:, 4])

    def _pose(self, frame: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """(N, K, 3) keypoints of the (N, 4) track boxes (the pose model is not called for none)."""
        if len(boxes):
            return self.pose.infer(frame, boxes)
        return np.zeros((0, getattr(self.pose, "num_keypoints", 17), 3), np.float32)

    def _people(self, tracks: list[Track], keypoints: np.ndarray, t: float) -> list[Person]:
        """Each track's `Person` at time `t`, in id order: its raw keypoints kept on the track (for the
        next propagated box), a smoothed copy returned when the tracker smooths."""
        people = []
        for tr, kp in zip(tracks, keypoints):
            tr.keypoints = kp  # raw: the next propagated box must not lag behind the smoothing
            out = kp.copy()
            if self.smooth:
                if tr.filter is None:
                    tr.filter = OneEuroFilter(**self.one_euro)
                out[:, :2] = tr.filter(kp[:, :2], t)
            people.append(Person(tr.id, tr.box.copy(), tr.box_score, out))
        people.sort(key=lambda p: p.id)
        return people

    def close(self) -> None:
        """Stop the detect-ahead worker thread (after its detection in flight, if any). The tracker
        can still be used: a later `next_frame=` starts a new one."""
        pool, self._pool, self._ahead = self._pool, None, None
        if pool is not None:
            pool.shutdown(wait=True)

    def _detect_ahead(self, frame: np.ndarray) -> None:
        """Start the detector on `frame` on the worker thread (one detection in flight at most)."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="detect-ahead")
        detector = self.detector  # made here, on the caller's thread
        self._ahead = (frame, self._pool.submit(detector, frame))

    def _detect(self, frame: np.ndarray) -> np.ndarray | None:
        """The detector's (M, 5) boxes (from the detection started ahead when it is this frame's),
        or None when it failed and failures are tolerated (see `max_detector_failures`)."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead[0] is not frame:
            wait([ahead[1]])  # another frame's detection: the detector is never run twice at once
            ahead = None
        try:
            raw = ahead[1].result() if ahead is not None else self.detector(frame)
            dets = check_boxes(raw, scores=True)
        except Exception as e:
            if self.max_detector_failures <= 0:
                raise
            self._failures_in_a_row += 1
            self.detector_failures += 1
            if self._failures_in_a_row > self.max_detector_failures:
                raise DetectorError(f"the person detector failed on {self._failures_in_a_row} frames in a row "
                                    f"(frame {self.frame_index}: {type(e).__name__}: {e})") from e
            log.warning("frame %d: the person detector failed (%s: %s); tracking from the keypoints",
                        self.frame_index, type(e).__name__, e)
            return None
        self._failures_in_a_row = 0
        return dets

    def _propagate(self) -> list[tuple[Track, np.ndarray]]:
        """Each live track with its next box: the padded box around its last confident keypoints.
        Tracks whose keypoints are lost drop out until the next detection."""
        moves = []
        for tr in self.tracker.tracks:
            if tr.missed or tr.keypoints is None:
                continue
            box = box_from_keypoints(tr.keypoints, self.kpt_thr, self.box_padding)
            if box is not None:
                moves.append((tr, box))
        return moves
