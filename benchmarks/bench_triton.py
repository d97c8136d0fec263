"""Requests/s and latency through Triton Inference Server vs the in-process call, and the server hop's cost.

    python benchmarks/bench_triton.py [--engine model.onnx] [--model s|tiny] [--clients 1,8] [--people 1,4]
                                      [--seconds 15] [--frame native|1920x1080] [--json out.json]

One request = one frame + N person boxes -> (N, 17, 3) keypoints. Rows: in-process (`VitPoseTRT.infer`,
one shared instance, C threads), Triton over HTTP and over gRPC (`vitpose_trt.triton.Client`, one per
thread, against a server started here on 127.0.0.1 with `write_repository`'s defaults: one instance,
dynamic batching with a 500 us queue delay). Each row: C closed-loop clients, each sending its next
request when the previous answer arrives, for --seconds after 2 warm-up requests per client. Reported:
completed requests per second of wall time, p50 and p99 latency (over every request of the row), n.
The hop cost is p50(Triton, 1 client) - p50(in-process, 1 client): the client's serialization, the
network stack on the loopback, the server's queue, the stub's shared memory and back.

Frames: a real COCO photo (coco-sample) at its own size (640x425) or resized (--frame 1920x1080),
with its N best detector boxes. Every answer is checked against the in-process keypoints (bit-exact).
The default engine is the fixture ViTPose-S as ONNX (ONNX Runtime, CPU); --model tiny uses a 2-block
ViTPose with the simple decoder (random weights), whose compute is small enough to show the hop itself.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from vitpose_trt.atomic import write_json


def _engine(args, tmp: Path) -> Path:
    if args.engine:
        return Path(args.engine)
    import torch

    from vitpose_trt.checkpoint import load_model
    from vitpose_trt.coco import sample_checkpoint
    from vitpose_trt.export import export_onnx
    from vitpose_trt.model import ViTPose, ViTPoseConfig

    if args.model == "s":
        ckpt = sample_checkpoint()
        if ckpt is None:
            sys.exit("bench_triton: the fixture ViTPose-S is absent (../shared/fixtures); pass --engine or --model tiny")
        model = load_model(ckpt).float().eval()
    else:
        torch.manual_seed(0)
        model = ViTPose(ViTPoseConfig(variant="tiny", embed_dim=64, depth=2, num_heads=2, decoder="simple")).eval()
        model.random_weights = True
    path = tmp / f"{args.model}.onnx"
    export_onnx(model, path, check=False)
    return path


def _frame(args):
    from vitpose_trt.coco import load_sample, sample_dir

    root = sample_dir()
    if root is None:
        sys.exit("bench_triton: ../shared/data/coco-sample is absent")
    name, frame, boxes = max(load_sample(root), key=lambda s: len(s[2]))  # the photo with the most people
    boxes = boxes[:, :4].astype(np.float32)
    if args.frame != "native":
        w, h = (int(v) for v in args.frame.lower().split("x"))
        sx, sy = w / frame.shape[1], h / frame.shape[0]
        frame = cv2.resize(frame, (w, h), interpolation=cv2.INTER_LINEAR)
        boxes = boxes * np.array([sx, sy, sx, sy], np.float32)
    return name, frame, boxes


def _run_row(make_call, clients: int, seconds: float, check) -> dict:
    """C closed-loop clients for `seconds`; every answer checked."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors: list[str] = []
    clock = {}

    def begin() -> None:  # runs once, when every client is warm, before any is released
        clock["t0"] = time.perf_counter()
        clock["stop"] = clock["t0"] + seconds

    start_barrier = threading.Barrier(clients + 1, action=begin)

    def work(c: int) -> None:
        try:
            call = make_call()
            for _ in range(2):  # warm-up: connections, first-call allocations
                check(call())
            start_barrier.wait()
            while time.perf_counter() < clock["stop"]:
                t0 = time.perf_counter()
                out = call()
                latencies[c].append(time.perf_counter() - t0)
                check(out)
        except Exception as e:  # noqa: BLE001 - reported in the row
            errors.append(f"{type(e).__name__}: {e}")
            try:
                start_barrier.abort()
            except threading.BrokenBarrierError:
                pass

    threads = [threading.Thread(target=work, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    try:
        start_barrier.wait()
    except threading.BrokenBarrierError:
        pass
    for t in threads:
        t.join()
    wall = time.perf_counter() - clock.get("t0", time.perf_counter())
    flat = sorted(x for lat in latencies for x in lat)
    if errors or not flat:
        return {"error": errors[0] if errors else "no request completed"}
    return {"n": len(flat), "wall_s": wall, "rps": len(flat) / wall,
            "p50_ms": 1e3 * statistics.median(flat), "p99_ms": 1e3 * float(np.percentile(flat, 99))}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--engine", default=None, help=".onnx/.engine/checkpoint (default: export --model)")
    p.add_argument("--model", choices=("s", "tiny"), default="s", help="model exported when --engine is not given")
    p.add_argument("--clients", default="1,8")
    p.add_argument("--people", default="1,4")
    p.add_argument("--paths", default="inprocess,http,grpc")
    p.add_argument("--seconds", type=float, default=15.0, help="timed seconds per row")
    p.add_argument("--frame", default="native", help="native (the photo's size) or WxH, e.g. 1920x1080")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)

    from vitpose_trt import VitPoseTRT
    from vitpose_trt.triton import Client, TritonServer, write_repository

    clients = [int(c) for c in args.clients.split(",")]
    people = [int(c) for c in args.people.split(",")]
    paths = args.paths.split(",")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        engine = _engine(args, tmp)
        name, frame, all_boxes = _frame(args)
        pose = VitPoseTRT(engine)
        server = None
        if {"http", "grpc"} & set(paths):
            repo = write_repository(tmp / "repo", engine, copy_engine=False)
            server = TritonServer(repo.path).start().wait_ready(300)
        try:
            for n in people:
                boxes = all_boxes[np.arange(n) % len(all_boxes)]
                expected = pose.infer(frame, boxes)

                def check(out, expected=expected):
                    if not np.array_equal(out, expected):
                        raise RuntimeError("keypoints differ from the in-process call")

                for c in clients:
                    for path in paths:
                        if path == "inprocess":
                            def make(boxes=boxes):
                                return lambda: pose.infer(frame, boxes)
                        else:
                            url = server.http_url if path == "http" else server.grpc_url

                            def make(boxes=boxes, url=url):
                                client = Client(url)
                                return lambda: client.infer(frame, boxes)
                        row = {"path": path, "clients": c, "people": n, **_run_row(make, c, args.seconds, check)}
                        rows.append(row)
                        print(json.dumps(row), flush=True)
        finally:
            if server is not None:
                server.stop()
    result = {"frame": f"{name} {frame.shape[1]}x{frame.shape[0]}", "engine": str(args.engine or f"{args.model} (ONNX Runtime)"),
              "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores", "rows": rows}
    print()
    print(f"frame {result['frame']}, engine {result['engine']}, {result['machine']}, {args.seconds:g} s per row")
    print("| path | clients | people | requests/s | p50 ms | p99 ms | n |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        if "error" in r:
            print(f"| {r['path']} | {r['clients']} | {r['people']} | error: {r['error']} | | | |")
        else:
            print(f"| {r['path']} | {r['clients']} | {r['people']} | {r['rps']:.2f} | {r['p50_ms']:.1f} | "
                  f"{r['p99_ms']:.1f} | {r['n']} |")
    base = {(r["people"]): r for r in rows if r["path"] == "inprocess" and r["clients"] == 1 and "p50_ms" in r}
    for r in rows:
        if r["path"] != "inprocess" and r["clients"] == 1 and "p50_ms" in r and r["people"] in base:
            print(f"hop cost ({r['path']}, {r['people']} people): p50 {r['p50_ms'] - base[r['people']]['p50_ms']:+.1f} ms")
    if args.json:
        write_json(args.json, result, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
