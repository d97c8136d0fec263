"""Batching shared by the engines and both pipeline paths: bounded chunks, and the in-flight handle."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np


def chunks(n: int, per: int) -> Iterator[tuple[int, int]]:
    """[lo, hi) ranges of at most `per` items covering range(n)."""
    if per < 1:
        raise ValueError(f"chunk size must be >= 1, got {per}")
    for lo in range(0, n, per):
        yield lo, min(n, lo + per)


def boxes_per_batch(max_batch: int, flip: bool) -> int:
    """How many boxes one engine call holds: flip test runs two crops per box."""
    per = max_batch // 2 if flip else max_batch
    if per < 1:
        raise ValueError(f"the engine's max batch {max_batch} cannot hold one flip-test pair")
    return per


@dataclass
class Segment:
    """The boxes of one frame inside one engine batch: frame `frame`, its boxes [lo, hi)."""

    frame: int
    lo: int
    hi: int


def frame_batches(counts: list[int], per: int) -> Iterator[list[Segment]]:
    """Split the boxes of several frames (counts[i] boxes in frame i) into batches of at most `per`
    boxes, frames kept in order; a frame may span two batches. Frames without boxes appear in none."""
    if per < 1:
        raise ValueError(f"boxes per batch must be >= 1, got {per}")
    batch: list[Segment] = []
    room = per
    for frame, count in enumerate(counts):
        lo = 0
        while lo < count:
            take = min(room, count - lo)
            batch.append(Segment(frame, lo, lo + take))
            lo += take
            room -= take
            if room == 0:
                yield batch
                batch, room = [], per
    if batch:
        yield batch


@dataclass
class PendingResult:
    """Frames in flight. `result()` blocks until their keypoints are on the host.

    `wait` returns the finished value; it is called once, by the first `result()`.
    """

    wait: Callable[[], object] | None = None
    value: object = field(default=None)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @classmethod
    def done(cls, value: object) -> PendingResult:
        return cls(None, value)

    def result(self):
        with self.lock:  # the caller and a later call reusing the slot may both ask
            if self.wait is not None:
                self.value, self.wait = self.wait(), None
        return self.value


# Called with a stage's name right after the stage is enqueued ("upload", "crop", "model", "decode",
# "download"): both paths take one, and the benchmark times them with it.
StageHook = Callable[[str], None]


def empty_keypoints(k: int) -> np.ndarray:
    return np.zeros((0, k, 3), dtype=np.float32)
