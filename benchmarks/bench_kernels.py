"""Times the two kernel families of vitpose_trt._C against the numpy/OpenCV per-box reference.

    python benchmarks/bench_kernels.py [--mode udp] [--flip] [--min-time 0.3] [--sizes 1,4,16,64]
                                       [--load idle,busy] [--markdown] [--no-cuda]

warp:   a 1920x1080 frame (a real COCO photo resized, or noise when the sample is absent) and N person
        boxes -> (N, 3, 256, 192) float32 crops. numpy = the reference loop of cv2.warpAffine +
        normalize per box; C++ = one warp_cpu call; CUDA = one warp_cuda launch (frame already on
        the GPU). Bytes = crops written + ~N*h*w*3 frame bytes read.
decode: (N, 17, 64, 48) float32 heatmaps -> (N, 17, 3) keypoints. numpy = postprocess(impl="numpy")
        (argmax + per-keypoint cv2.GaussianBlur + DARK); C++ = one decode_cpu call; CUDA = one
        decode_cuda launch. Bytes = heatmaps read + 12 B * N * K written.

CPU rows: numpy (the reference; cv2 with its own default threads), C++ at threads=1 (the calling
thread only) and C++ at threads=all (default_threads(): every core this process may use; helper
threads that do not get a core in time are not waited for, csrc/parallel.h).

Load (--load): "idle" = nothing started by this script (the machine may still run other work: the
1-minute load average is printed); "busy" = one busy-looping Python process per core
(`while True: pass`), started by this script before the measurements and killed after, i.e. every
core is wanted by another process, as with a video decoder or a detector running beside us.

CPU times: time.perf_counter around each call, the three CPU rows of a size interleaved round by
round (so they share the background conditions), 3 warm-up rounds, median of at least 5 rounds
(--min-time seconds per row). CUDA times: CUDA events around each launch on the current stream, median.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from vitpose_trt import _C  # noqa: E402
from vitpose_trt.coco import sample_dir  # noqa: E402
from vitpose_trt.crop import normalize, warp_crop  # noqa: E402
from vitpose_trt.decode import postprocess  # noqa: E402
from vitpose_trt.geometry import boxes_to_transforms, check_boxes, inverse_warp_matrices  # noqa: E402

INPUT = (256, 192)
HEATMAP = (64, 48)
K = 17
SIZES = (1, 4, 16, 64)


def frame_and_boxes(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, str]:
    """A 1920x1080 BGR frame and n person boxes on it (real detections scaled up, jittered)."""
    rng = np.random.default_rng(seed)
    root = sample_dir()
    if root is not None:
        photo = cv2.imread(str(root / "000000000785.jpg"))
        dets = [d for d in json.loads((root / "person_detections.json").read_text()) if d["image_id"] == 785]
        sx, sy = 1920 / photo.shape[1], 1080 / photo.shape[0]
        base = np.array([[x * sx, y * sy, (x + w) * sx, (y + h) * sy] for x, y, w, h in (d["bbox"] for d in dets)])
        frame, source = cv2.resize(photo, (1920, 1080), interpolation=cv2.INTER_LINEAR), "COCO 000000000785.jpg resized"
    else:
        frame = cv2.GaussianBlur(rng.integers(0, 256, (1080, 1920, 3), dtype=np.uint8), (7, 7), 0)
        base, source = np.array([[800.0, 200.0, 1100.0, 900.0]]), "synthetic noise (coco-sample absent)"
    boxes = base[rng.integers(0, len(base), n)] + rng.normal(0, 20, (n, 4))
    boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 10)
    return frame, boxes, source


def heatmaps(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:HEATMAP[0], 0:HEATMAP[1]].astype(np.float32)
    cx = rng.uniform(0, HEATMAP[1] - 1, (n, K, 1, 1)).astype(np.float32)
    cy = rng.uniform(0, HEATMAP[0] - 1, (n, K, 1, 1)).astype(np.float32)
    hm = np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / 8.0) * rng.uniform(0.2, 0.9, (n, K, 1, 1))
    return (hm + rng.normal(0, 0.01, hm.shape)).astype(np.float32)


def time_interleaved(fns, min_time: float) -> list[float]:
    """Median seconds per call of each fn, measured round by round (each round calls every fn once,
    in turn) so that all of them see the same background conditions: 3 warm-up rounds, then
    rounds until min_time * len(fns) (5..1000 rounds)."""
    for _ in range(3):
        for fn in fns:
            fn()
    samples: list[list[float]] = [[] for _ in fns]
    start = time.perf_counter()
    while len(samples[0]) < 5 or (time.perf_counter() - start < min_time * len(fns) and len(samples[0]) < 1000):
        for fn, acc in zip(fns, samples):
            t0 = time.perf_counter()
            fn()
            acc.append(time.perf_counter() - t0)
    return [statistics.median(acc) for acc in samples]


def time_cuda(fn, min_time: float) -> float:
    import torch

    for _ in range(10):
        fn()
    torch.cuda.synchronize()
    samples: list[float] = []
    start = time.perf_counter()
    while len(samples) < 20 or (time.perf_counter() - start < min_time and len(samples) < 2000):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        samples.append(a.elapsed_time(b) * 1e-3)
    return statistics.median(samples)


def row(op, n, impl, seconds, nbytes, baseline=None):
    speedup = f"{baseline / seconds:8.1f}x" if baseline else " " * 9
    print(f"{op:<7}{n:>4}  {impl:<11}{seconds * 1e6:>11.1f} us {nbytes / seconds / 1e9:>8.2f} GB/s {speedup}")


@contextmanager
def background_load(kind: str):
    """'idle': nothing; 'busy': one busy-looping process per usable core for the duration."""
    procs = []
    if kind == "busy":
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(cores)]
        time.sleep(0.5)  # let them reach the scheduler
    try:
        yield
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()


def cpu_rows(args, load: str, results: dict) -> None:
    """numpy, C++ at 1 thread and C++ at all cores, for warp and decode at every size."""
    all_threads = _C.default_threads()
    m = 2 if args.flip else 1
    for n in args.sizes:
        frame, boxes, _ = frame_and_boxes(n)
        transforms = boxes_to_transforms(check_boxes(boxes), INPUT)
        inv = inverse_warp_matrices(transforms, args.mode, INPUT)
        out = np.empty((m * n, 3, *INPUT), np.float32)
        nbytes = out.nbytes + n * INPUT[0] * INPUT[1] * 3

        def numpy_warp():
            for i, t in enumerate(transforms):
                out[i] = normalize(warp_crop(frame, t, args.mode, INPUT))
            if args.flip:
                out[n:] = out[:n, :, :, ::-1]

        t_np, t_1, t_all = time_interleaved(
            [numpy_warp, lambda: _C.warp_cpu(frame, inv, out, args.flip, threads=1),
             lambda: _C.warp_cpu(frame, inv, out, args.flip, threads=all_threads)], args.min_time)
        row("warp", n, "numpy", t_np, nbytes)
        row("warp", n, "C++ 1 thr", t_1, nbytes, t_np)
        row("warp", n, f"C++ {all_threads} thr", t_all, nbytes, t_np)
        results[("crop", n, load)] = (t_np, t_1, t_all)

    for n in args.sizes:
        hm = heatmaps(n)
        fl = heatmaps(n, seed=1) if args.flip else None
        t = boxes_to_transforms(check_boxes(frame_and_boxes(n)[1]), INPUT)
        kp = np.empty((n, K, 3), np.float32)
        fidx = np.array([0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15], np.int32) if args.flip else None
        nbytes = hm.nbytes * m + kp.nbytes
        t_np, t_1, t_all = time_interleaved(
            [lambda: postprocess(hm, t, args.mode, flipped=fl, impl="numpy"),
             lambda: _C.decode_cpu(hm, t, kp, args.mode, fl, fidx, threads=1),
             lambda: _C.decode_cpu(hm, t, kp, args.mode, fl, fidx, threads=all_threads)], args.min_time)
        row("decode", n, "numpy", t_np, nbytes)
        row("decode", n, "C++ 1 thr", t_1, nbytes, t_np)
        row("decode", n, f"C++ {all_threads} thr", t_all, nbytes, t_np)
        results[("decode", n, load)] = (t_np, t_1, t_all)


def cuda_rows(args) -> None:
    import torch

    m = 2 if args.flip else 1
    stream = torch.cuda.current_stream().cuda_stream
    for n in args.sizes:
        frame, boxes, _ = frame_and_boxes(n)
        inv = inverse_warp_matrices(boxes_to_transforms(check_boxes(boxes), INPUT), args.mode, INPUT)
        dev, dinv = torch.from_numpy(frame).cuda(), torch.from_numpy(inv).cuda()
        dout = torch.empty((m * n, 3, *INPUT), dtype=torch.float32, device="cuda")
        nbytes = dout.numel() * 4 + n * INPUT[0] * INPUT[1] * 3
        row("warp", n, "CUDA", time_cuda(lambda: _C.warp_cuda(dev, dinv, dout, args.flip, stream), args.min_time),
            nbytes)
    for n in args.sizes:
        hm, fl = heatmaps(n), (heatmaps(n, seed=1) if args.flip else None)
        t = boxes_to_transforms(check_boxes(frame_and_boxes(n)[1]), INPUT)
        fidx = np.array([0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15], np.int32) if args.flip else None
        dhm, dt = torch.from_numpy(hm).cuda(), torch.from_numpy(t).cuda()
        dfl = None if fl is None else torch.from_numpy(fl).cuda()
        dfi = None if fidx is None else torch.from_numpy(fidx).cuda()
        dkp = torch.empty((n, K, 3), device="cuda")
        nbytes = hm.nbytes * m + n * K * 12
        row("decode", n, "CUDA",
            time_cuda(lambda: _C.decode_cuda(dhm, dt, dkp, args.mode, dfl, dfi, stream), args.min_time), nbytes)


def markdown(results: dict, sizes, loads) -> str:
    """The docs/BENCHMARKS.md table: medians in ms, and C++ (all cores) / numpy."""
    lines = ["| stage | N | load | numpy | C++ 1 thread | C++ all cores | all cores / numpy |",
             "| --- | ---: | --- | ---: | ---: | ---: | ---: |"]
    for op in ("crop", "decode"):
        for n in sizes:
            for load in loads:
                t_np, t_1, t_all = results[(op, n, load)]
                lines.append(f"| {op} | {n} | {load} | {t_np * 1e3:.3f} | {t_1 * 1e3:.3f} | {t_all * 1e3:.3f} | "
                             f"{t_all / t_np:.2f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=("udp", "classic"), default="udp")
    ap.add_argument("--flip", action="store_true", help="also write the flipped crops / merge flipped heatmaps")
    ap.add_argument("--min-time", type=float, default=0.3, help="seconds of samples per measurement")
    ap.add_argument("--sizes", default=",".join(map(str, SIZES)), help="box counts, comma-separated")
    ap.add_argument("--load", default="idle,busy", help="idle and/or busy (one busy-looping process per core)")
    ap.add_argument("--markdown", action="store_true", help="also print the CPU results as a markdown table")
    ap.add_argument("--no-cuda", action="store_true")
    args = ap.parse_args()
    args.sizes = [int(v) for v in args.sizes.split(",")]
    loads = [v for v in args.load.split(",") if v]
    if not loads or any(v not in ("idle", "busy") for v in loads):
        ap.error(f"--load: expected idle and/or busy, got {args.load!r}")

    use_cuda = not args.no_cuda and _C.cuda_available()
    if use_cuda:
        import torch

        use_cuda = torch.cuda.is_available()
    _, _, source = frame_and_boxes(1)
    print(f"vitpose_trt._C {_C.__version__}: built_with_cuda={_C.built_with_cuda}, "
          f"default_threads={_C.default_threads()}, cpu cores={os.cpu_count()}, "
          f"cv2 {cv2.__version__} (cv2 threads {cv2.getNumThreads()})")
    print(f"frame 1920x1080 ({source}), crops {INPUT[0]}x{INPUT[1]} float32, heatmaps {K}x{HEATMAP[0]}x{HEATMAP[1]} "
          f"float32, mode {args.mode}, flip {args.flip}; CUDA: {'yes' if use_cuda else 'no'}")
    results: dict = {}
    for load in loads:
        with background_load(load):
            print(f"\n== load: {load} (1-min load average before: {os.getloadavg()[0]:.2f})")
            print(f"{'op':<7}{'N':>4}  {'impl':<11}{'median':>14} {'effective':>13} {'vs numpy':>9}")
            cpu_rows(args, load, results)
    if use_cuda:
        print("\n== CUDA")
        cuda_rows(args)
    if args.markdown:
        print()
        print(markdown(results, args.sizes, loads))


if __name__ == "__main__":
    main()
