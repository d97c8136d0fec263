"""One video through a `PoseTracker`: decode (reader thread) -> track -> JSONL + annotated video
(encoder thread) [+ a window]. The CLI's `infer` runs this per video, camera or stream.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from vitpose_trt.draw import draw_people
from vitpose_trt.options import with_options
from vitpose_trt.pose_tracker import STAGES, DetectorError, Person, PoseTracker
from vitpose_trt.sources import Frame, VideoSource
from vitpose_trt.video_io import JsonlWriter, VideoWriter

log = logging.getLogger(__name__)


@dataclass
class VideoResult:
    """What `process_video` did.

    Attributes:
        frames: frames processed (each has its JSONL line).
        people: people summed over frames.
        seconds: wall time from the first frame to the last.
        jsonl / video: the files written (video None with render off).
        interrupted: stopped by Ctrl-C; the files hold every processed frame.
        error: why the run ended early (a broken stream, an undecodable tail, a detector that kept
            failing), else None.
        detector_error: the `DetectorError` that ended the run, if one did (then also `error`).
        skipped: corrupt frames the decoder skipped.
        detector_failures: frames on which the detector failed and were tracked from the keypoints.
        stage_seconds: total seconds per stage: decode (reader thread), detect, pose, track, render
            (drawing), encode (encoder thread).
        frame_seconds: wall time of each frame, from the end of the previous one (waits included).
    """

    frames: int = 0
    people: int = 0
    seconds: float = 0.0
    jsonl: Path | None = None
    video: Path | None = None
    interrupted: bool = False
    error: str | None = None
    detector_error: str | None = None
    skipped: int = 0
    detector_failures: int = 0
    stage_seconds: dict = field(default_factory=dict)
    frame_seconds: list = field(default_factory=list)

    @property
    def fps(self) -> float:
        """Frames per second end to end: frames done / wall time since the first frame was asked for
        (the one figure the progress bar shows live and the last line prints)."""
        return fps(self.frames, self.seconds)


def fps(frames: int, seconds: float) -> float:
    return frames / seconds if seconds > 0 else 0.0


def overlap_pays(tracker: PoseTracker) -> bool:
    """Whether detecting ahead is worth it by default: the pose model runs on a GPU, so the CPU (or the
    GPU's idle time between pose calls) is free for the detector."""
    return str(getattr(getattr(tracker.pose, "engine", None), "device", "cpu")).startswith("cuda")


def _with_next(frames):
    """(frame, the frame after it or None) for each frame: one frame is read ahead."""
    it = iter(frames)
    current = next(it, None)
    while current is not None:
        following = next(it, None)
        yield current, following
        current = following


def display_problem() -> str | None:
    """Why a window cannot be shown here, or None when it can."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return "no display ($DISPLAY is not set)"
    try:
        cv2.namedWindow("vitpose-trt", cv2.WINDOW_NORMAL)
    except cv2.error:
        return ("this OpenCV has no GUI support (opencv-python-headless); install opencv-python for show=True "
                "(the CLI's --show)")
    return None


@dataclass(frozen=True)
class VideoConfig:
    """How `process_video` runs: what it writes and shows, when it stops, whether it detects ahead.

    Attributes:
        render: write the annotated video.
        show: also show it in a window (the caller checks `display_problem()` first).
        kpt_thr: keypoints drawn above this score.
        progress: a tqdm bar with live fps (on stderr).
        max_frames: stop after this many frames (cameras and streams run until stopped otherwise).
        overlap: detect on the next frame (read ahead) while this frame's poses are computed
            (`PoseTracker(..., next_frame=)`); the outputs are the same as without it. None: when the
            pose model runs on a GPU (`overlap_pays`); on a CPU the detector and the pose model each
            use every core, and running them at once was measured slower (docs/BENCHMARKS.md).
    """

    render: bool = True
    show: bool = False
    kpt_thr: float = 0.3
    progress: bool = True
    max_frames: int | None = None
    overlap: bool | None = None


def process_video(source: VideoSource, tracker: PoseTracker, out_dir, config: VideoConfig | None = None, *,
                  frame_boxes: dict[int, np.ndarray] | None = None, **options: Any) -> VideoResult:
    """Track every frame of `source`, writing `out_dir/<name>.jsonl` and (render) `out_dir/<name>.mp4`.

    Args:
        source: an opened `VideoSource` (closed on return).
        tracker: the `PoseTracker` (reset first: ids start at 0 per video).
        out_dir: an existing, writable folder.
        config: rendering, window, progress bar, frame limit, detecting ahead (default: `VideoConfig()`);
            `options`, its fields by name, replace its values (`process_video(src, tracker, out, render=False)`).
        frame_boxes: per-frame boxes ({frame index: (M, 5)}) to use instead of the tracker's detector;
            frames absent from it have nobody.

    Ctrl-C ends the loop cleanly: the files are closed and hold every processed frame; so does a
    `DetectorError` (a detector that failed on more frames in a row than the tracker's
    `max_detector_failures`), with `detector_error` set. Any other exception removes the partial
    outputs and propagates.
    """
    run = _VideoRun(source, tracker, Path(out_dir), with_options(VideoConfig, config, options), frame_boxes)
    ok = False
    try:
        try:
            for frame, following in _with_next(source):
                if not run.step(frame, following):
                    break
        except KeyboardInterrupt:
            run.res.interrupted = True
        except DetectorError as e:  # like a broken stream: the files hold every frame processed so far
            run.res.detector_error = str(e)
        ok = True
    finally:
        run.finish(ok)
    return run.res


def _progress_bar(source: VideoSource, config: VideoConfig):
    """A tqdm bar over the frames to come, with VideoResult.fps's figure live in the postfix."""
    total = min(len(source) or 0, config.max_frames or 1 << 62) or None
    # one speed figure, VideoResult.fps's, live in the postfix: not tqdm's own rate as well
    shape = "{percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt}" if total else "{n_fmt}"
    return tqdm(total=total, desc=source.name, disable=not config.progress, leave=False, file=sys.stderr,
                bar_format=f"{{desc}}: {shape} frames [{{elapsed}}{{postfix}}]", postfix="0.0 fps")


class _VideoRun:
    """The state of one `process_video` call: its outputs, stage totals, progress bar and clock."""

    def __init__(self, source: VideoSource, tracker: PoseTracker, out_dir: Path, config: VideoConfig,
                 frame_boxes: dict[int, np.ndarray] | None) -> None:
        self.source, self.tracker, self.out_dir, self.config = source, tracker, out_dir, config
        self.frame_boxes = frame_boxes
        tracker.reset()
        tracker.fps = source.fps
        self.res = VideoResult(jsonl=out_dir / f"{source.name}.jsonl")
        self.totals = dict.fromkeys(("decode", *STAGES, "render", "encode"), 0.0)
        self.jsonl = JsonlWriter(self.res.jsonl)
        self.writer: VideoWriter | None = None
        self.overlap = overlap_pays(tracker) if config.overlap is None else config.overlap
        self.bar = _progress_bar(source, config)
        self.start = self.last = time.perf_counter()

    def step(self, frame: Frame, following: Frame | None) -> bool:
        """Track, write and draw one frame; False when the run stops here (the viewer closed the
        window, or `max_frames` is reached)."""
        people = self._track(frame, following)
        self.jsonl.write(frame.index, frame.time, [p.to_dict() for p in people])
        self.res.frames += 1
        self.res.people += len(people)
        if (self.config.render or self.config.show) and not self._draw(frame, people):
            return False
        self._tick()
        return self.config.max_frames is None or self.res.frames < self.config.max_frames

    def _track(self, frame: Frame, following: Frame | None) -> list[Person]:
        """The tracker on this frame (the given boxes, or its detector, started ahead on the next frame)."""
        boxes = self.frame_boxes
        ahead = following.image if self.overlap and following is not None and boxes is None else None
        people = self.tracker(frame.image, None if boxes is None else boxes.get(frame.index, np.zeros((0, 5))),
                              time=frame.time, next_frame=ahead)
        for k, v in self.tracker.stage_times.items():
            self.totals[k] += v
        return people

    def _draw(self, frame: Frame, people: list[Person]) -> bool:
        """The annotated frame into the video and the window; False when the viewer closed the window."""
        t0 = time.perf_counter()
        drawn = draw_people(frame.image, people, self.config.kpt_thr, getattr(self.tracker.pose, "dataset", None))
        self.totals["render"] += time.perf_counter() - t0
        if self.config.render:
            if self.writer is None:
                h, w = frame.image.shape[:2]
                self.res.video = self.out_dir / f"{self.source.name}.mp4"
                self.writer = VideoWriter(self.res.video, self.source.fps, (w, h))
            self.writer.write(drawn)
        if self.config.show:
            cv2.imshow("vitpose-trt", drawn)
            if cv2.waitKey(1) & 0xFF in (ord("q"), 27):  # the viewer closed it: a normal end
                return False
        return True

    def _tick(self) -> None:
        """The frame's wall time, and the progress bar's count and live fps."""
        now = time.perf_counter()
        self.res.frame_seconds.append(now - self.last)
        self.last = now
        self.bar.set_postfix_str(f"{fps(self.res.frames, now - self.start):.1f} fps", refresh=False)
        self.bar.update(1)

    def finish(self, ok: bool) -> None:
        """Close everything; `ok`: keep the files (else they are removed). Fills in the result's totals."""
        res, source = self.res, self.source
        self.bar.close()
        self.tracker.close()  # its detect-ahead thread, if one started
        source.close()
        res.seconds = time.perf_counter() - self.start
        self.jsonl.close(commit=ok)
        if self.writer is not None:
            self.writer.close(commit=ok)
            self.totals["encode"] = self.writer.encode_seconds
        if not ok:
            res.video = None
        self.totals["decode"] = source.decode_seconds
        res.error, res.skipped = res.detector_error or source.error, source.skipped
        res.detector_failures = self.tracker.detector_failures
        res.stage_seconds = self.totals
        if self.config.show:
            _close_windows()


def _close_windows() -> None:
    try:
        cv2.destroyAllWindows()
    except Exception:  # noqa: BLE001 - closing a window must not mask the real outcome
        pass
