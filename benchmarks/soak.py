"""Soaks: long runs that must stay error-free and flat in memory and file descriptors, and stop by themselves.

    python benchmarks/soak.py video  [--frames 20000] [--det-every 5] [--seconds 3600] [--json out.json]
    python benchmarks/soak.py triton [--clients 8] [--seconds 600] [--json out.json]
    python benchmarks/soak.py ci     # both, small (~30 s): what tests/test_soak.py runs

video: a clip generated from the 4 coco-sample photos (each shown for --segment frames in turn,
    letterboxed into 640x480, MPEG-4) through the CLI's video path: `VideoSource` (reader thread) ->
    `PoseTracker` (a detector every --det-every frames, IoU ids, One-Euro smoothing) ->
    `process_video`'s JSONL and annotated mp4 (encoder thread). The detector replays the photos' real
    detector boxes (person_detections.json), telling the photo from an 8x6 thumbnail. Checked: every
    frame processed (or the --seconds bound reached, which stops the run the way Ctrl-C does), no
    decode error or skipped frame, on every frame where the detector ran as many people as it gave
    boxes above the threshold, one valid JSONL line per frame, an mp4 that holds every frame.
triton: a Triton server (127.0.0.1, `write_repository`'s defaults) and --clients closed-loop client
    threads, half HTTP and half gRPC, for --seconds; every answer compared bit for bit with the same
    request run in this process.

Both use a 2-block ViTPose (simple decoder) with random weights calibrated to a trained model's
heatmap scale (`build_random_model`), as ONNX (--engine to use another): fast on a CPU, and its
confident keypoints give the tracker's propagated boxes as a trained model's would.
Sampled every --sample-every s: resident memory (RSS) and open file descriptors of this process and,
for triton, of the server's process group (server + Python-backend stubs). Reported: the least-squares
slope over the second half of the run (after warm-up) and the growth it implies over that half.
"Flat": RSS growth below max(8 MB, 2 %) and fewer than 2 descriptors gained over the second half.
Exit status: 0 when error-free and flat (ci: error-free; 10-30 s runs are all warm-up), else 1.
"""

from __future__ import annotations

import _thread
import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from vitpose_trt.atomic import write_json
from vitpose_trt.pose_tracker import PoseTracker

CLIP_SIZE = (640, 480)  # (width, height)


# ---- sampling ---------------------------------------------------------------------------------------

def _proc_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return 0.0  # a zombie has none


class Sampler:
    """Samples RSS (MB) and open descriptors, summed over `pids()`, every `every` s in a thread."""

    def __init__(self, pids, every: float) -> None:
        self.pids, self.every = pids, every
        self.samples: list[tuple[float, float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-sampler", daemon=True)
        self._t0 = time.monotonic()

    def sample(self) -> None:
        rss, fds = 0.0, 0
        for pid in self.pids():
            try:
                rss += _proc_rss_mb(pid)
                fds += len(os.listdir(f"/proc/{pid}/fd"))
            except OSError:
                continue
        self.samples.append((time.monotonic() - self._t0, rss, fds))

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.sample()

    def __enter__(self) -> Sampler:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


def trend(samples: list[tuple[float, float, int]]) -> dict:
    """Slopes (per minute) and growth over the second half of the run, and whether that is flat."""
    s = np.array(samples, dtype=np.float64)
    half = s[s[:, 0] >= s[-1, 0] / 2]
    out = {"samples": len(s), "rss_mb_first": round(s[0, 1], 1), "rss_mb_last": round(s[-1, 1], 1),
           "rss_mb_max": round(s[:, 1].max(), 1), "fds_first": int(s[0, 2]), "fds_last": int(s[-1, 2]),
           "fds_max": int(s[:, 2].max())}
    if len(half) < 3 or half[-1, 0] - half[0, 0] <= 0:
        return {**out, "flat": None}
    span_min = (half[-1, 0] - half[0, 0]) / 60.0
    rss_slope = np.polyfit(half[:, 0] / 60.0, half[:, 1], 1)[0]
    fd_slope = np.polyfit(half[:, 0] / 60.0, half[:, 2], 1)[0]
    growth, fd_growth = rss_slope * span_min, fd_slope * span_min
    flat = bool(growth < max(8.0, 0.02 * half[:, 1].mean()) and fd_growth < 2.0)
    return {**out, "rss_mb_per_min": round(float(rss_slope), 3), "rss_growth_mb_second_half": round(float(growth), 2),
            "fds_per_min": round(float(fd_slope), 3), "fd_growth_second_half": round(float(fd_growth), 2),
            "flat": flat}


# ---- the model and the photos -----------------------------------------------------------------------

def engine_path(args, tmp: Path) -> Path:
    """--engine, else the calibrated 2-block random ViTPose exported to ONNX in `tmp`."""
    if args.engine:
        return Path(args.engine)
    from vitpose_trt.export import export_onnx
    from vitpose_trt.model import ViTPoseConfig, build_random_model

    model = build_random_model(ViTPoseConfig(variant="tiny", embed_dim=64, depth=2, num_heads=2, decoder="simple"))
    path = tmp / "tiny-calibrated.onnx"
    export_onnx(model, path, check=False)
    return path


def sample_photos():
    from vitpose_trt.coco import load_sample, sample_dir

    root = sample_dir()
    if root is None:
        sys.exit("soak: the coco-sample photos are absent (../shared/data/coco-sample or $VITPOSE_TRT_COCO_SAMPLE)")
    return load_sample(root)


def letterboxed(photos) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each photo scaled into CLIP_SIZE at the top-left (black elsewhere), with its boxes scaled too."""
    w, h = CLIP_SIZE
    out = []
    for _, image, boxes in photos:
        scale = min(w / image.shape[1], h / image.shape[0])
        canvas = np.zeros((h, w, 3), np.uint8)
        small = cv2.resize(image, (round(image.shape[1] * scale), round(image.shape[0] * scale)))
        canvas[:small.shape[0], :small.shape[1]] = small
        b = boxes.copy()
        b[:, :4] *= scale
        out.append((canvas, b))
    return out


class ReplayDetector:
    """frame -> the real detector boxes of the sample photo it shows (nearest 8x6 thumbnail): a detector
    with real output and no model. Counts its calls."""

    def __init__(self, scenes) -> None:
        self.thumbs = [self._thumb(image) for image, _ in scenes]
        self.boxes = [b for _, b in scenes]
        self.calls = 0
        self.last = -1

    @staticmethod
    def _thumb(image) -> np.ndarray:
        return cv2.resize(image, (8, 6), interpolation=cv2.INTER_AREA).astype(np.int32)

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        self.calls += 1
        thumb = self._thumb(frame)
        self.last = int(np.argmin([np.abs(thumb - t).sum() for t in self.thumbs]))
        return self.boxes[self.last].copy()


# ---- video --------------------------------------------------------------------------------------------

def write_clip(path: Path, scenes, frames: int, segment: int, fps: float = 30.0) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, CLIP_SIZE)
    if not writer.isOpened():
        raise RuntimeError(f"cannot write {path}")
    for i in range(frames):
        writer.write(scenes[(i // segment) % len(scenes)][0])
    writer.release()
    return path


def check_jsonl(path: Path, frames: int) -> list[str]:
    """Problems with the pose log: one valid line per frame, consecutive, finite keypoints."""
    problems = []
    with open(path) as f:
        for n, line in enumerate(f):
            try:
                rec = json.loads(line)
                assert rec["frame"] == n, f"frame {rec['frame']} on line {n + 1}"
                for p in rec["people"]:
                    kp = np.asarray(p["keypoints"], np.float64)
                    assert kp.shape == (17, 3) and np.isfinite(kp).all() and p["id"] >= 0, "bad person"
            except (ValueError, KeyError, AssertionError) as e:
                problems.append(f"{path.name} line {n + 1}: {e}")
                if len(problems) > 5:
                    break
    if n + 1 != frames:
        problems.append(f"{path.name}: {n + 1} lines for {frames} frames")
    return problems


def count_video_frames(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.grab():
        n += 1
    cap.release()
    return n


def soak_video(args) -> dict:
    from vitpose_trt import VitPoseTRT
    from vitpose_trt.sources import VideoSource
    from vitpose_trt.video import VideoConfig, process_video

    scenes = letterboxed(sample_photos())
    with tempfile.TemporaryDirectory(prefix="vitpose_trt_soak_") as tmp:
        tmp = Path(tmp)
        clip = write_clip(tmp / "clip.mp4", scenes, args.frames, args.segment)
        detector = ReplayDetector(scenes)
        tracker = CheckedTracker(VitPoseTRT(engine_path(args, tmp)), detector, det_every=args.det_every,
                                 smooth=True)
        deadline = threading.Timer(args.seconds, _thread.interrupt_main)  # the bound ends it as Ctrl-C would
        deadline.daemon = True
        (tmp / "out").mkdir()
        with Sampler(lambda: [os.getpid()], args.sample_every) as sampler:
            t0 = time.monotonic()
            deadline.start()
            res = process_video(VideoSource(clip), tracker, tmp / "out", VideoConfig(progress=False))
            deadline.cancel()
            wall = time.monotonic() - t0
        errors = [f"the source ended early: {res.error}"] if res.error else []
        errors += [f"{res.skipped} frames skipped"] if res.skipped else []
        errors += [] if res.interrupted or res.frames == args.frames else [f"{res.frames} of {args.frames} frames"]
        errors += [f"{tracker.mismatches} detector frames with the wrong people count"] if tracker.mismatches else []
        errors += check_jsonl(res.jsonl, res.frames)
        encoded = count_video_frames(res.video)
        errors += [] if encoded == res.frames else [f"the mp4 holds {encoded} of {res.frames} frames"]
    return {"kind": "video", "frames": res.frames, "stopped_by": "--seconds" if res.interrupted else "end of clip",
            "wall_s": round(wall, 1), "fps": round(res.frames / wall, 2), "people": res.people,
            "detector_calls": detector.calls, "detector_frames_checked": tracker.checked, "errors": errors,
            "memory": trend(sampler.samples)}


class CheckedTracker(PoseTracker):
    """A PoseTracker that checks, on every frame where its detector ran, that it reports one person per
    detector box above the threshold (counters only: a growing record would itself grow the RSS)."""

    def __init__(self, pose, detector: ReplayDetector, **kwargs) -> None:
        super().__init__(pose, detector, **kwargs)
        self.checked = self.mismatches = 0

    def __call__(self, frame, boxes=None, time=None, *, next_frame=None):
        replay = self.detector
        calls = replay.calls
        people = super().__call__(frame, boxes, time=time)  # in turn: the detector's calls are this frame's
        if replay.calls != calls:
            self.checked += 1
            self.mismatches += len(people) != int((replay.boxes[replay.last][:, 4] >= self.box_thr).sum())
        return people


# ---- triton -----------------------------------------------------------------------------------------

def triton_cases(pose, photos) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(frame, float32 boxes, in-process keypoints): every photo with 1, 3 and all its boxes."""
    cases = []
    for _, frame, boxes in photos:
        for n in (1, 3, len(boxes)):
            b = np.ascontiguousarray(boxes[:n, :4], dtype=np.float32)
            cases.append((frame, b, pose.infer(frame, b)))
    return cases


def soak_triton(args) -> dict:
    from vitpose_trt import VitPoseTRT
    from vitpose_trt.triton import Client, TritonServer, write_repository
    from vitpose_trt.triton.server import process_group

    with tempfile.TemporaryDirectory(prefix="vitpose_trt_soak_") as tmp:
        tmp = Path(tmp)
        engine = engine_path(args, tmp)
        cases = triton_cases(VitPoseTRT(engine), sample_photos())
        repo = write_repository(tmp / "repo", engine, copy_engine=False)
        server = TritonServer(repo.path, env={"PYTHONPATH": str(Path(__file__).resolve().parents[1])})
        server.start().wait_ready(300)
        counts = {"ok": 0, "wrong": 0, "error": 0}
        errors: list[str] = []
        lock = threading.Lock()
        try:
            stop = time.monotonic() + args.seconds

            def client(c: int) -> None:
                with Client(server.grpc_url if c % 2 else server.http_url, timeout_s=60) as cl:
                    j = c
                    while time.monotonic() < stop:
                        frame, boxes, expected = cases[j % len(cases)]
                        j += 1
                        try:
                            kind = "ok" if np.array_equal(cl.infer(frame, boxes), expected) else "wrong"
                        except RuntimeError as e:
                            kind = "error"
                            with lock:
                                errors.append(str(e)[:300])
                        with lock:
                            counts[kind] += 1

            with Sampler(lambda: process_group(server.process.pid), args.sample_every) as server_mem, \
                    Sampler(lambda: [os.getpid()], args.sample_every) as client_mem:
                threads = [threading.Thread(target=client, args=(c,)) for c in range(args.clients)]
                t0 = time.monotonic()
                for th in threads:
                    th.start()
                for th in threads:
                    th.join()
                wall = time.monotonic() - t0
        finally:
            server.stop()
    problems = errors[:5] + ([f"{counts['wrong']} answers differ from the in-process call"] if counts["wrong"] else [])
    n = sum(counts.values())
    return {"kind": "triton", "clients": args.clients, "seconds": args.seconds, "requests": n,
            "requests_per_s": round(n / wall, 2), **{f"requests_{k}": v for k, v in counts.items()},
            "errors": problems, "server_memory": trend(server_mem.samples), "client_memory": trend(client_mem.samples)}


# ---- command ------------------------------------------------------------------------------------------

def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=("video", "triton", "ci"))
    p.add_argument("--engine", default=None, help=".onnx/.engine/checkpoint (default: the calibrated tiny ViTPose)")
    p.add_argument("--seconds", type=float, default=None,
                   help="time bound (default: video 3600, triton 600, ci 8 per part)")
    p.add_argument("--frames", type=int, default=20000, help="video: frames in the clip")
    p.add_argument("--segment", type=int, default=50, help="video: frames each photo is shown for")
    p.add_argument("--det-every", type=int, default=5, help="video: the detector runs every N-th frame")
    p.add_argument("--clients", type=int, default=8, help="triton: concurrent clients")
    p.add_argument("--sample-every", type=float, default=5.0, help="seconds between RSS/fd samples")
    p.add_argument("--json", default=None, help="also write the results here")
    return p.parse_args(argv)


def main(argv=None) -> int:
    import logging

    args = parse_args(argv)
    logging.basicConfig(level=logging.ERROR)  # the random-weights warnings are expected here
    runs = []
    if args.what in ("video", "ci"):
        video = argparse.Namespace(**vars(args))
        if args.what == "ci":
            video.frames, video.segment, video.sample_every = 150, 25, 1.0
        video.seconds = args.seconds or (8.0 if args.what == "ci" else 3600.0)
        runs.append(soak_video(video))
    if args.what in ("triton", "ci"):
        triton = argparse.Namespace(**vars(args))
        if args.what == "ci":
            triton.clients, triton.sample_every = 4, 1.0
        triton.seconds = args.seconds or (8.0 if args.what == "ci" else 600.0)
        runs.append(soak_triton(triton))
    result = {"command": " ".join(["python benchmarks/soak.py", *(argv if argv is not None else sys.argv[1:])]),
              "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}", "runs": runs}
    print(json.dumps(result, indent=1))
    if args.json:
        write_json(args.json, result, indent=1)
    failed = any(r["errors"] for r in runs)
    memories = [m for r in runs for m in (r.get("memory"), r.get("server_memory"), r.get("client_memory")) if m]
    if args.what != "ci" and any(m["flat"] is False for m in memories):
        failed = True
    print("soak: " + ("FAILED" if failed else "passed") + ": " +
          "; ".join(f"{r['kind']} {len(r['errors'])} errors" for r in runs))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
