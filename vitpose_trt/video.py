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

import numpy as np

from vitpose_trt.draw import draw_people
from vitpose_trt.sources import VideoSource
from vitpose_trt.tracker import STAGES, DetectorError, PoseTracker
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
    import cv2

    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return "no display ($DISPLAY is not set)"
    try:
        cv2.namedWindow("vitpose-trt", cv2.WINDOW_NORMAL)
    except cv2.error:
        return "this OpenCV has no GUI support (opencv-python-headless); install opencv-python for --show"
    return None


def process_video(source: VideoSource, tracker: PoseTracker, out_dir, *, render: bool = True, show: bool = False,
                  frame_boxes: dict[int, np.ndarray] | None = None, kpt_thr: float = 0.3,
                  progress: bool = True, max_frames: int | None = None, overlap: bool | None = None) -> VideoResult:
    """Track every frame of `source`, writing `out_dir/<name>.jsonl` and (render) `out_dir/<name>.mp4`.

    Args:
        source: an opened `VideoSource` (closed on return).
        tracker: the `PoseTracker` (reset first: ids start at 0 per video).
        out_dir: an existing, writable folder.
        render: write the annotated video.
        show: also show it in a window (the caller checks `display_problem()` first).
        frame_boxes: per-frame boxes ({frame index: (M, 5)}) to use instead of the tracker's detector;
            frames absent from it have nobody.
        kpt_thr: keypoints drawn above this score.
        progress: a tqdm bar with live fps (on stderr).
        max_frames: stop after this many frames (cameras and streams run until stopped otherwise).
        overlap: detect on the next frame (read ahead) while this frame's poses are computed
            (`PoseTracker(..., next_frame=)`); the outputs are the same as without it. None: when the
            pose model runs on a GPU (`overlap_pays`); on a CPU the detector and the pose model each
            use every core, and running them at once was measured slower (docs/BENCHMARKS.md).

    Ctrl-C ends the loop cleanly: the files are closed and hold every processed frame; so does a
    `DetectorError` (a detector that failed on more frames in a row than the tracker's
    `max_detector_failures`), with `detector_error` set. Any other exception removes the partial
    outputs and propagates.
    """
    from tqdm import tqdm

    out_dir = Path(out_dir)
    tracker.reset()
    tracker.fps = source.fps
    res = VideoResult(jsonl=out_dir / f"{source.name}.jsonl")
    totals = dict.fromkeys(("decode", *STAGES, "render", "encode"), 0.0)
    jsonl = JsonlWriter(res.jsonl)
    writer: VideoWriter | None = None
    ok = False
    if overlap is None:
        overlap = overlap_pays(tracker)
    total = min(len(source) or 0, max_frames or 1 << 62) or None
    # one speed figure, VideoResult.fps's, live in the postfix: not tqdm's own rate as well
    shape = "{percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt}" if total else "{n_fmt}"
    bar = tqdm(total=total, desc=source.name, disable=not progress, leave=False, file=sys.stderr,
               bar_format=f"{{desc}}: {shape} frames [{{elapsed}}{{postfix}}]", postfix="0.0 fps")
    start = last = time.perf_counter()
    try:
        try:
            for frame, following in _with_next(source):
                ahead = following.image if overlap and following is not None and frame_boxes is None else None
                people = tracker(frame.image, None if frame_boxes is None else
                                 frame_boxes.get(frame.index, np.zeros((0, 5))), time=frame.time, next_frame=ahead)
                for k, v in tracker.stage_times.items():
                    totals[k] += v
                jsonl.write(frame.index, frame.time, [p.to_dict() for p in people])
                res.frames += 1
                res.people += len(people)
                if render or show:
                    t0 = time.perf_counter()
                    drawn = draw_people(frame.image, people, kpt_thr, getattr(tracker.pose, "dataset", None))
                    totals["render"] += time.perf_counter() - t0
                    if render:
                        if writer is None:
                            h, w = frame.image.shape[:2]
                            res.video = out_dir / f"{source.name}.mp4"
                            writer = VideoWriter(res.video, source.fps, (w, h))
                        writer.write(drawn)
                    if show:
                        import cv2

                        cv2.imshow("vitpose-trt", drawn)
                        if cv2.waitKey(1) & 0xFF in (ord("q"), 27):  # the viewer closed it: a normal end
                            break
                now = time.perf_counter()
                res.frame_seconds.append(now - last)
                last = now
                bar.set_postfix_str(f"{fps(res.frames, now - start):.1f} fps", refresh=False)
                bar.update(1)
                if max_frames is not None and res.frames >= max_frames:
                    break
        except KeyboardInterrupt:
            res.interrupted = True
        except DetectorError as e:  # like a broken stream: the files hold every frame processed so far
            res.detector_error = str(e)
        ok = True
    finally:
        bar.close()
        tracker.close()  # its detect-ahead thread, if one started
        source.close()
        res.seconds = time.perf_counter() - start
        jsonl.close(commit=ok)
        if writer is not None:
            writer.close(commit=ok)
            totals["encode"] = writer.encode_seconds
        if not ok:
            res.video = None
        totals["decode"] = source.decode_seconds
        res.error, res.skipped = res.detector_error or source.error, source.skipped
        res.detector_failures = tracker.detector_failures
        res.stage_seconds = totals
        if show:
            try:
                import cv2

                cv2.destroyAllWindows()
            except Exception:  # noqa: BLE001 - closing a window must not mask the real outcome
                pass
    return res
