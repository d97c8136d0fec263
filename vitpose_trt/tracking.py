"""Tracking pieces: box IoU, frame-to-frame id assignment, the One-Euro filter, and boxes from keypoints.

Ids: each track predicts where its box will be (constant velocity from its last two boxes) and the new
boxes are matched to the predictions by *optimal* assignment on IoU (`scipy.optimize.linear_sum_assignment`,
the Hungarian method). Why optimal rather than greedy: when people overlap, the greedy "best IoU first"
pairing can take the one box two tracks both want and leave the other track the wrong one; the
optimal assignment maximizes the total IoU, so two people crossing keep their ids. Why not ByteTrack
(`supervision`): a second dependency with its own Kalman filter and thresholds, for a job that a
prediction plus SciPy's assignment (SciPy being the numerical library we would pull anyway) does.

Smoothing: the One-Euro filter (Casiez, Roussel, Vogel, CHI 2012), a low-pass filter whose cutoff
rises with speed: little jitter when still, little lag when moving.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

# One-Euro defaults. min_cutoff and d_cutoff are the reference implementation's 1 Hz. Its beta is 0
# and the paper says to raise beta until fast motion no longer lags: for keypoints in pixels, on a
# synthetic track moving up to 150 px/s with 3 px noise at 30 fps (tests/test_tracking.py), beta = 0.05
# cuts the frame-to-frame jitter to 0.43x and the error to 0.90x of the raw track's; 0.007 (a common
# choice for normalized coordinates) cuts jitter to 0.22x but lags: 1.7x the raw error.
ONE_EURO_MIN_CUTOFF = 1.0
ONE_EURO_BETA = 0.05
ONE_EURO_D_CUTOFF = 1.0


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of (N, >=4) and (M, >=4) x1, y1, x2, y2 boxes -> (N, M)."""
    a = np.asarray(a, np.float64)[:, None, :4]
    b = np.asarray(b, np.float64)[None, :, :4]
    iw = (np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0])).clip(0)
    ih = (np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1])).clip(0)
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    union = area_a + area_b - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def box_from_keypoints(keypoints: np.ndarray, score_thr: float = 0.3, padding: float = 1.25,
                       min_keypoints: int = 3) -> np.ndarray | None:
    """The box around a person's confident keypoints, padded: the next frame's box for a top-down
    tracker between detector runs.

    Args:
        keypoints: (K, 3) x, y, score.
        score_thr: keypoints scoring at or below this are ignored.
        padding: the tight box's width and height are multiplied by this, about its center (joints are
            inside the body: the head top, the feet and the limbs' width lie outside them).
        min_keypoints: fewer confident keypoints than this -> None (the person is lost).

    Returns:
        [x1, y1, x2, y2] float64, or None.
    """
    kp = np.asarray(keypoints, np.float64)
    ok = np.isfinite(kp).all(axis=1) & (kp[:, 2] > score_thr)
    if ok.sum() < min_keypoints:
        return None
    x1, y1 = kp[ok, 0].min(), kp[ok, 1].min()
    x2, y2 = kp[ok, 0].max(), kp[ok, 1].max()
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    # a degenerate spread (all joints on a line) still gives a usable box: at least 10% of the other side
    w = max(x2 - x1, 0.1 * (y2 - y1), 1.0) * padding
    h = max(y2 - y1, 0.1 * (x2 - x1), 1.0) * padding
    return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])


class OneEuroFilter:
    """One-Euro filter over an array of values (e.g. all (K, 2) keypoint coordinates of one person).

    Args:
        min_cutoff: cutoff frequency (Hz) at zero speed: lower = smoother when still, more lag.
        beta: how fast the cutoff rises with speed: higher = less lag when moving, more jitter.
        d_cutoff: cutoff (Hz) of the low-pass on the speed estimate.
    """

    def __init__(self, min_cutoff: float = ONE_EURO_MIN_CUTOFF, beta: float = ONE_EURO_BETA,
                 d_cutoff: float = ONE_EURO_D_CUTOFF) -> None:
        if min_cutoff <= 0 or d_cutoff <= 0 or beta < 0:
            raise ValueError(f"One-Euro parameters must be min_cutoff > 0, d_cutoff > 0, beta >= 0; got "
                             f"min_cutoff={min_cutoff}, beta={beta}, d_cutoff={d_cutoff}")
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t: float | None = None

    @staticmethod
    def _alpha(cutoff, dt: float):
        tau = 1.0 / (2 * math.pi * cutoff)
        return 1.0 / (1.0 + tau / dt)

    def __call__(self, x: np.ndarray, t: float) -> np.ndarray:
        """Filter the sample `x` taken at time `t` (seconds, increasing)."""
        x = np.asarray(x, np.float64)
        if self._x is None or self._t is None or t <= self._t or self._x.shape != x.shape:
            self._x, self._dx, self._t = x.copy(), np.zeros_like(x), t
            return x.copy()
        dt = t - self._t
        dx = (x - self._x) / dt
        a_d = self._alpha(self.d_cutoff, dt)
        self._dx = a_d * dx + (1 - a_d) * self._dx
        cutoff = self.min_cutoff + self.beta * np.abs(self._dx)
        a = self._alpha(cutoff, dt)
        self._x = a * x + (1 - a) * self._x
        self._t = t
        return self._x.copy()


@dataclass(eq=False)
class Track:
    """One tracked person: its id, last box and score, last keypoints, and its smoothing state."""

    id: int
    box: np.ndarray
    box_score: float
    keypoints: np.ndarray | None = None
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4))
    missed: int = 0  # frames since it was last matched
    filter: OneEuroFilter | None = None

    def predicted_box(self) -> np.ndarray:
        return self.box + self.velocity * (self.missed + 1)


class IouTracker:
    """Stable ids for boxes, frame to frame.

    Args:
        iou_thr: a box and a track's predicted box must overlap at least this much to match.
        max_age: a track unmatched for more than this many frames is dropped.
        predict: match against each track's constant-velocity prediction (False: against its last
            box, as a plain IoU tracker does; people who cross then swap ids).

    `update(boxes)` returns one id per box; new people get new ids (never reused).
    """

    def __init__(self, iou_thr: float = 0.3, max_age: int = 30, predict: bool = True) -> None:
        self.iou_thr, self.max_age, self.predict = iou_thr, max_age, predict
        self.tracks: list[Track] = []
        self._next_id = 0

    def update(self, boxes: np.ndarray, scores: np.ndarray | None = None) -> list[Track]:
        """Match (N, >=4) boxes to the tracks; returns the N matched or new tracks, in box order."""
        # lazy: scipy.optimize takes ~0.5 s to import, and the CLI imports this module to build its --help
        from scipy.optimize import linear_sum_assignment

        boxes = np.asarray(boxes, np.float64)
        if boxes.size == 0:
            boxes = np.zeros((0, 4))
        n = len(boxes)
        scores = np.ones(n) if scores is None else np.asarray(scores, np.float64)
        assigned: list[Track | None] = [None] * n
        if n and self.tracks:
            pred = np.stack([t.predicted_box() if self.predict else t.box for t in self.tracks])
            iou = iou_matrix(boxes, pred)
            rows, cols = linear_sum_assignment(-iou)
            for r, c in zip(rows, cols):
                if iou[r, c] >= self.iou_thr:
                    assigned[r] = self.tracks[c]
        for i, track in enumerate(assigned):
            box = boxes[i, :4].copy()
            if track is None:
                track = Track(self._next_id, box, float(scores[i]))
                self._next_id += 1
                self.tracks.append(track)
                assigned[i] = track
            else:
                self._move(track, box)
                track.box_score = float(scores[i])
        self._age(assigned)
        return [t for t in assigned if t is not None]

    def advance(self, moves: list[tuple[Track, np.ndarray]]) -> list[Track]:
        """A frame without detection: move these tracks to the given boxes (e.g. from their keypoints);
        the others age and, past `max_age`, are dropped, as in `update`. Returns the moved tracks."""
        for track, box in moves:
            self._move(track, np.asarray(box, np.float64))
        moved = [t for t, _ in moves]
        self._age(moved)
        return moved

    def _move(self, track: Track, box: np.ndarray) -> None:
        step = (box - track.box) / (track.missed + 1)
        track.velocity = 0.5 * track.velocity + 0.5 * step  # smoothed: one noisy box must not fling it
        track.box, track.missed = box, 0

    def _age(self, seen) -> None:
        current = {id(t) for t in seen}
        for track in self.tracks:
            if id(track) not in current:
                track.missed += 1
        self.tracks = [t for t in self.tracks if t.missed <= self.max_age]

    def reset(self) -> None:
        self.tracks, self._next_id = [], 0
