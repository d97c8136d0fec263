"""Video benchmark: end-to-end fps of `infer` on a video, and where the time goes.

A synthetic video (default 1280x720, MJPG in an .avi, written once per people count) with N people
walking across it goes through exactly the CLI's path, `process_video` with a `PoseTracker`: the
reader thread decodes, the detector (or the people's known boxes) finds them, ViTPose poses them,
the tracker keeps ids, and the frames are drawn and encoded in the encoder thread.

Each scenario runs twice: sequentially, and with the detector running ahead on the next frame while
the poses of this one are computed (`VideoConfig(overlap=True)`, the CLI's default): the rows
give both fps and the overlap gained. The stages are those of the overlapped run.

Stages (mean ms per frame): decode (reader thread), detect (the time the frame waited for its
boxes), pose, track (ids + box propagation + smoothing), render (drawing), encode (encoder thread). Decode and encode run in their own threads,
so on a machine with spare cores they overlap the rest and end-to-end fps is above 1 / sum(stages).
Without `detector=` the detect stage is the synthetic people's known boxes (a lookup: ~0 ms), and
says so; pass an ONNX detector to measure one.
"""

from __future__ import annotations

import logging
import math
import platform
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from vitpose_trt.coco import load_sample, sample_dir
from vitpose_trt.cuda_runtime import default_device
from vitpose_trt.engines.pytorch import PyTorchEngine, torch_threads
from vitpose_trt.model import build_random_model
from vitpose_trt.pipeline import VitPoseTRT
from vitpose_trt.detect import make_detector
from vitpose_trt.pose_tracker import PoseTracker
from vitpose_trt.sources import VideoSource
from vitpose_trt.video import VideoConfig, process_video

from vitpose_trt.options import with_options

log = logging.getLogger(__name__)

PERSON_ASPECT = 0.45  # width / height of a standing person's box
# Each synthetic frame carries its index in its top-left corner, 12 bits as 8x8 black/white blocks (JPEG
# keeps them: one block is one DCT block), so the known-boxes stand-in finds a frame's people from the
# frame itself, whichever thread asks and whenever (detection runs ahead of the pose when overlapped).
STAMP_BITS, STAMP_BLOCK = 12, 8


def _stamp(image: np.ndarray, index: int) -> None:
    for bit in range(STAMP_BITS):
        x = bit * STAMP_BLOCK
        image[:STAMP_BLOCK, x:x + STAMP_BLOCK] = 255 if (index >> bit) & 1 else 0


def frame_index_of(image: np.ndarray) -> int:
    """The index `synthetic_video` stamped into a (decoded) frame."""
    inner = slice(2, STAMP_BLOCK - 2)
    return sum(1 << bit for bit in range(STAMP_BITS)
               if image[inner, bit * STAMP_BLOCK + 2:(bit + 1) * STAMP_BLOCK - 2].mean() > 127)


def _person_sprites() -> list[np.ndarray]:
    """Real people cut from the sample photos where present (so a detector has something to find),
    else plain drawn figures."""
    root = sample_dir()
    sprites = []
    if root is not None:
        for _, frame, boxes in load_sample(root):
            for x1, y1, x2, y2, s in boxes[:3]:
                if s >= 0.5 and (y2 - y1) > 60:
                    sprites.append(frame[int(y1):int(y2), int(x1):int(x2)].copy())
    if not sprites:
        fig = np.full((200, 90, 3), 60, np.uint8)
        cv2.circle(fig, (45, 25), 18, (180, 160, 140), -1)
        cv2.rectangle(fig, (25, 45), (65, 130), (90, 60, 160), -1)
        cv2.rectangle(fig, (28, 130), (42, 198), (40, 40, 40), -1)
        cv2.rectangle(fig, (48, 130), (62, 198), (40, 40, 40), -1)
        sprites = [fig]
    return sprites


def synthetic_video(path, people: int, frames: int, size: tuple[int, int] = (1280, 720),
                    fps: float = 30.0) -> dict[int, np.ndarray]:
    """Write a video of `people` people on a grid, each walking 3 px per frame.

    Returns:
        {frame index: (people, 5) boxes x1, y1, x2, y2, score=1}: where each person is.
    """
    w, h = size
    if w < STAMP_BITS * STAMP_BLOCK or frames > 1 << STAMP_BITS:
        raise ValueError(f"the benchmark video needs a width of at least {STAMP_BITS * STAMP_BLOCK} px and at most "
                         f"{1 << STAMP_BITS} frames (each frame's index is stamped into it), got {w} px, {frames}")
    cols = math.ceil(math.sqrt(people))
    rows = math.ceil(people / cols)
    cell_w, cell_h = w / cols, h / rows
    ph = int(cell_h * 0.8)
    pw = int(min(ph * PERSON_ASPECT, cell_w * 0.7))
    sprites = [cv2.resize(s, (pw, ph)) for s in _person_sprites()]
    yy, xx = np.mgrid[0:h, 0:w]
    background = np.dstack([(xx * 255 // w), (yy * 255 // h), np.full_like(xx, 128)]).astype(np.uint8)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, (w, h))
    if not writer.isOpened():
        raise RuntimeError(f"cannot write the benchmark video {path}")
    boxes = {}
    for f in range(frames):
        img = background.copy()
        frame_boxes = []
        for i in range(people):
            r, c = divmod(i, cols)
            slack = max(1, int(cell_w - pw) // 2)  # walks across half its cell's free width, then wraps
            x0 = min(int(c * cell_w + (cell_w - pw) / 4 + (3 * f) % slack), w - pw)
            y0 = int(r * cell_h + (cell_h - ph) / 2)
            img[y0:y0 + ph, x0:x0 + pw] = sprites[i % len(sprites)]
            frame_boxes.append([x0, y0, x0 + pw, y0 + ph, 1.0])
        _stamp(img, f)
        writer.write(img)
        boxes[f] = np.array(frame_boxes, np.float64)
    writer.release()
    return boxes


class _KnownBoxes:
    """A stand-in detector: the synthetic people's true boxes on the frame it is given."""

    def __init__(self, truth: dict[int, np.ndarray]) -> None:
        self.truth = truth

    def __call__(self, image: np.ndarray) -> np.ndarray:
        return self.truth[frame_index_of(image)]


class _RunThenKnownBoxes:
    """A real detector run for its cost, the synthetic people's true boxes returned: for detector
    exports without trained weights, which find nobody (the frame would then never be posed)."""

    def __init__(self, detector, truth: dict[int, np.ndarray]) -> None:
        self.detector, self.known = detector, _KnownBoxes(truth)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        self.detector(image)
        return self.known(image)


class _Counted:
    """A detector that counts its runs (the benchmark reports them next to det_every)."""

    def __init__(self, detector) -> None:
        self.detector, self.calls = detector, 0

    def __call__(self, image: np.ndarray) -> np.ndarray:
        self.calls += 1
        return self.detector(image)


@dataclass(frozen=True)
class VideoBenchConfig:
    """What `run_video_benchmark` measures: one row per (people, det_every) scenario.

    Attributes:
        engine: the pose model (path or `Engine`); None: a fixed-seed random ViTPose of `variant`
            (speed does not depend on the weights).
        variant: the random model's size when no engine is given.
        people: people per frame, one synthetic video each.
        det_every: detector periods, one row each per video.
        frames / warmup: timed frames per scenario, after `warmup` untimed pose calls.
        size: (W, H) of the synthetic video.
        detector: an .onnx person detector (or a known name), or None for the synthetic people's known boxes.
        render: draw and encode the annotated video.
        mode / flip_test / device / precision: as `VitPoseTRT`'s.
        threads: CPU threads for PyTorch and the detector's ONNX Runtime, each (None: their defaults).
        known_boxes: with `detector`, run it for its cost but pose the synthetic people's true boxes
            (a detector without trained weights finds nobody, and nobody would be posed).
    """

    engine: Any = None
    variant: str = "s"
    people: Sequence[int] = (1, 4, 16)
    det_every: Sequence[int] = (1, 5)
    frames: int = 20
    warmup: int = 2
    size: tuple[int, int] = (1280, 720)
    detector: Any = None
    render: bool = True
    mode: str = "udp"
    flip_test: bool = False
    device: str | None = None
    precision: str | None = None
    threads: int | None = None
    known_boxes: bool = False


def run_video_benchmark(config: VideoBenchConfig | None = None, /, **options: Any) -> dict:
    """Measure `process_video` per (people, det_every) scenario.

    Args:
        config: a `VideoBenchConfig`; `options` (its field names) override it or, without it, make one.

    Returns:
        {"environment": {...}, "rows": [{"people", "det_every", "frames", "fps", "median_frame_ms",
        "detector_runs", "people_found" (mean people posed per frame), "stage_ms": {stage: mean ms per frame}, "detector"}]}.
    """
    cfg = with_options(VideoBenchConfig, config, options)
    with torch_threads(cfg.threads):  # process-wide: restored after
        pose = _pose_model(cfg.engine, cfg.variant, mode=cfg.mode, flip_test=cfg.flip_test, device=cfg.device,
                           precision=cfg.precision)
        det = _detector(cfg)
        rows = []
        with tempfile.TemporaryDirectory(prefix="vitpose-bench-video-") as tmp:
            for n in cfg.people:
                rows += _people_rows(pose, det, n, Path(tmp), cfg)
        return {"environment": _environment(pose, cfg.size, cfg.render), "rows": rows}


def _detector(cfg: VideoBenchConfig):
    """The detector measured: `cfg.detector` (a path or known name: its ONNX Runtime on `cfg.threads`),
    or None for the synthetic people's known boxes."""
    if isinstance(cfg.detector, (str, Path)):
        return make_detector(cfg.detector, threads=cfg.threads)
    return make_detector(cfg.detector) if cfg.detector is not None else None


def _people_rows(pose, det, n: int, tmp: Path, cfg: VideoBenchConfig) -> list[dict]:
    """The rows of one people count: its synthetic video written, warmed up on, then run per det_every."""
    name = (f"{Path(cfg.detector).name}{' (run, then the known boxes)' if cfg.known_boxes else ''}" if cfg.detector
            else "known boxes (no model)")
    video = tmp / f"people{n}.avi"
    truth = synthetic_video(video, n, cfg.frames, cfg.size)
    _warm_up(pose, det, video, truth, cfg.warmup)
    rows = []
    for every in cfg.det_every:
        # without a detector: the true boxes, at no cost; an untrained one: its cost, the true boxes
        found = _KnownBoxes(truth) if det is None else _RunThenKnownBoxes(det, truth) if cfg.known_boxes else det
        row = _scenario(pose, found, video, tmp / f"out-{n}-{every}", every, cfg.render)
        rows.append({"people": n, "det_every": every, **row, "detector": name})
        log.info("%d people, detector every %d: %.2f fps (sequential %.2f)", n, every, row["fps"],
                 row["fps_sequential"])
    return rows


def _pose_model(engine, variant: str, **options):
    """The `VitPoseTRT` measured: `engine`, or a fixed-seed random ViTPose of `variant`."""
    if engine is None:
        dev = options["device"] or default_device()
        prec = options["precision"] or ("fp16" if dev.startswith("cuda") else "fp32")
        engine = PyTorchEngine(build_random_model(variant), device=dev, precision=prec)
    return VitPoseTRT(engine, **options)


def _warm_up(pose, det, video: Path, truth: dict[int, np.ndarray], calls: int) -> None:
    """`calls` untimed pose (and detector) calls on the video's first frame."""
    first = VideoSource(video)
    frame0 = next(iter(first)).image
    first.close()
    for _ in range(calls):
        pose.infer(frame0, truth[0])
        if det is not None:
            det(frame0)


def _scenario(pose, detector, video: Path, out: Path, every: int, render: bool) -> dict:
    """One row: the video tracked in turn, then detecting ahead (`VideoConfig(overlap=)`)."""
    runs = {}
    for overlap in (False, True):
        # Random weights give flat heatmaps (scores ~1e-4): no keypoint would pass the usual threshold,
        # every person would be "lost" and the detector would run on every frame. For timing, the box
        # between detector runs is then made from all keypoints.
        counted = _Counted(detector)
        tracker = PoseTracker(pose, counted, det_every=every, kpt_thr=-np.inf if pose.random_weights else 0.3)
        folder = out.with_name(f"{out.name}-{'ahead' if overlap else 'in-turn'}")
        folder.mkdir()
        config = VideoConfig(render=render, progress=False, overlap=overlap)
        runs[overlap] = (process_video(VideoSource(video), tracker, folder, config), counted.calls)
    (res, calls), sequential = runs[True], runs[False][0]
    return {"frames": res.frames, "fps": res.fps, "fps_sequential": sequential.fps,
            "overlap_gain": res.fps / max(sequential.fps, 1e-9), "detector_runs": calls,
            "people_found": res.people / max(res.frames, 1),
            "median_frame_ms": 1000 * float(np.median(res.frame_seconds)) if res.frame_seconds else 0.0,
            "stage_ms": {k: 1000 * v / max(res.frames, 1) for k, v in res.stage_seconds.items()}}


def _environment(pose, size: tuple[int, int], render: bool) -> dict:
    return {"machine": platform.machine(), "processor": platform.processor() or platform.machine(),
            "torch_threads": torch.get_num_threads(), "engine": type(pose.engine).__name__,
            "device": pose.engine.device, "random_weights": pose.random_weights,
            "size": f"{size[0]}x{size[1]}", "render": render, "time": time.strftime("%Y-%m-%d %H:%M")}

def format_video_table(result: dict) -> str:
    """A Markdown table of `run_video_benchmark`'s rows."""
    stages = ("decode", "detect", "pose", "track", "render", "encode")
    lines = ["| people | det every | detector runs | fps (end to end) | fps sequential | overlap gain | "
             "median frame ms | " + " | ".join(f"{s} ms" for s in stages) + " |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | " + " | ".join("---:" for _ in stages) + " |"]
    for r in result["rows"]:
        lines.append(f"| {r['people']} | {r['det_every']} | {r['detector_runs']}/{r['frames']} | {r['fps']:.2f} | "
                     f"{r['fps_sequential']:.2f} | {r['overlap_gain']:.2f}x | {r['median_frame_ms']:.1f} | "
                     + " | ".join(f"{r['stage_ms'].get(s, 0.0):.1f}" for s in stages) + " |")
    env = result["environment"]
    lines.append(f"\n{env['size']}, {env['engine']} on {env['device']}"
                 f"{' (random weights)' if env['random_weights'] else ''}, render {'on' if env['render'] else 'off'}, "
                 f"{env['torch_threads']} torch threads; detector: {result['rows'][0]['detector'] if result['rows'] else '-'}")
    return "\n".join(lines)
