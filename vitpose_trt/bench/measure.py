"""Measuring: statistics, the stage timer, the per-frame and throughput loops, the matmul rate."""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from vitpose_trt.stats import summary

if TYPE_CHECKING:
    from vitpose_trt.bench.scenarios import Scenario

log = logging.getLogger(__name__)

MATMUL_N_CUDA = 8192
MATMUL_N_CPU = 2048


def summarize(samples: Iterable[float]) -> dict[str, float | int | None]:
    """Median, p90, p99 (linear interpolation, numpy's default), mean, min, max and n of samples.

    An empty list gives n = 0 and None for every statistic (`stats.summary`'s rules).
    """
    return summary(samples)


class Timer:
    """Times the stages of one iteration.

    `start()`, then `mark(stage, gpu=...)` at the end of each stage, then `stop()`. A GPU stage's
    time is the CUDA-event interval from the previous mark to this one on `stream` (events are only
    used when `cuda` is true); a CPU stage's time is the perf_counter interval. A stage marked
    more than once (e.g. one box at a time) is summed. `stop()` synchronizes the stream and adds
    "e2e", the wall-clock time from `start()`.

    All times are in milliseconds.
    """

    def __init__(self, cuda: bool = False, stream=None) -> None:
        self.cuda = cuda
        self.stream = stream
        self._marks: list[tuple[str, bool, float, float, Any, Any]] = []
        self._t0: float | None = None
        self._last: tuple[float, Any] = (0.0, None)
        self.result: dict[str, float] | None = None

    def _event(self):
        if not self.cuda:
            return None
        ev = torch.cuda.Event(enable_timing=True)
        ev.record(self.stream if self.stream is not None else torch.cuda.current_stream())
        return ev

    def start(self) -> Timer:
        self._marks, self.result = [], None
        ev = self._event()
        self._t0 = time.perf_counter()
        self._last = (self._t0, ev)
        return self

    def mark(self, stage: str, gpu: bool = False) -> None:
        if self._t0 is None:
            raise RuntimeError("Timer.mark() before start()")
        if self.result is not None:
            return  # stopped early by the runner: later work is untimed
        ev = self._event()
        t = time.perf_counter()
        self._marks.append((stage, gpu and self.cuda, self._last[0], t, self._last[1], ev))
        self._last = (t, ev)

    def stop(self) -> dict[str, float]:
        if self.result is not None:
            return self.result
        if self._t0 is None:
            raise RuntimeError("Timer.stop() before start()")
        if self.cuda:
            sync(self.stream)
        t_end = time.perf_counter()
        stages: dict[str, float] = defaultdict(float)
        for stage, gpu, t_a, t_b, e_a, e_b in self._marks:
            stages[stage] += e_a.elapsed_time(e_b) if gpu else (t_b - t_a) * 1e3
        stages["e2e"] = (t_end - self._t0) * 1e3
        self.result = dict(stages)
        return self.result


def sync(stream) -> None:
    """Wait for `stream` (None: the current CUDA stream)."""
    (stream if stream is not None else torch.cuda.current_stream()).synchronize()


def release_cuda() -> None:
    """Finish queued GPU work and return cached blocks (between rows, after a failure)."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.empty_cache()


@dataclass
class Runner:
    """One alternative, ready to run.

    infer(frame, boxes, timer) -> (N, K, 3) keypoints, marking the stages on `timer` (started by
        the caller; it may call timer.stop() itself before untimed work).
    e2e: the real, uninstrumented API call (frame, boxes) -> keypoints, timed by wall clock; when
        None, the e2e of the instrumented `infer` is used.
    prepare(frame, boxes): untimed per-scenario setup (e.g. crops already on the GPU).
    batch(b) -> fn: for throughput, a no-argument function running the model once on a batch of b
        crops already in place (None: the alternative has no batched model).
    """

    name: str
    device: str
    precision: str
    description: str
    infer: Callable[[np.ndarray, np.ndarray, Timer], np.ndarray]
    e2e: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None
    prepare: Callable[[np.ndarray, np.ndarray], None] | None = None
    batch: Callable[[int], Callable[[], Any]] | None = None
    stream: Any = None
    notes: list[str] = field(default_factory=list)

    @property
    def cuda(self) -> bool:
        return self.device == "cuda"



def measure_frames(runner: Runner, scenario: Scenario, *, iters: int, warmup: int, budget_s: float) -> dict:
    """Time one alternative on one scenario (its correctness run already served as the first warm-up).

    Iterates until `iters` iterations or until the next one would exceed `budget_s` (at least one).
    """
    frame, boxes = scenario.frame, scenario.boxes
    for _ in range(warmup):
        timer = Timer(runner.cuda, runner.stream).start()
        runner.infer(frame, boxes, timer)
        timer.stop()
        if runner.e2e is not None:
            runner.e2e(frame, boxes)
    samples: dict[str, list[float]] = defaultdict(list)
    t0 = time.perf_counter()
    n = 0
    while n < iters:
        t_iter = time.perf_counter()
        timer = Timer(runner.cuda, runner.stream).start()
        runner.infer(frame, boxes, timer)
        for stage, ms in timer.stop().items():
            samples[stage].append(ms)
        if runner.e2e is not None:
            t = time.perf_counter()
            runner.e2e(frame, boxes)
            samples["e2e"][-1] = (time.perf_counter() - t) * 1e3
        n += 1
        now = time.perf_counter()
        if now - t0 + (now - t_iter) > budget_s:
            break
    return {"iterations": n, "seconds": time.perf_counter() - t0, "samples": dict(samples)}


def measure_throughput(runner: Runner, batches: Sequence[int], *, iters: int, warmup: int, budget_s: float,
                       progress=None) -> list[dict]:
    """crops/s of the model alone at each batch size; a batch whose first run would take more than
    3x the budget (predicted from the previous batch) is skipped."""
    rows = []
    per_crop_s = None
    for b in batches:
        row: dict[str, Any] = {"alternative": runner.name, "batch": int(b), "device": runner.device,
                               "precision": runner.precision}
        if per_crop_s is not None and per_crop_s * b > 3 * budget_s:
            row.update(status="skipped", reason=f"predicted {per_crop_s * b:.1f} s per run > 3 x budget {budget_s:g} s")
            rows.append(row)
            if progress is not None:
                progress.update(1)
            continue
        try:
            if runner.batch is None:
                raise RuntimeError("no batched model")
            fn = runner.batch(b)
            if runner.cuda:
                torch.cuda.synchronize()  # the batch was made on the default stream; the model may use another
            t_first = time.perf_counter()
            for _ in range(max(1, warmup)):
                fn()
                if runner.cuda:
                    sync(runner.stream)
            per_crop_s = (time.perf_counter() - t_first) / max(1, warmup) / b
            ms: list[float] = []
            t0 = time.perf_counter()
            while len(ms) < iters:
                t_iter = time.perf_counter()
                timer = Timer(runner.cuda, runner.stream).start()
                fn()
                timer.mark("model", gpu=True)
                ms.append(timer.stop()["model"])
                now = time.perf_counter()
                if now - t0 + (now - t_iter) > budget_s:
                    break
            median_ms = float(np.median(ms))
            per_crop_s = median_ms / 1e3 / b
            row.update(status="ok", model_ms=summarize(ms), samples=ms, crops_per_s=b / (median_ms / 1e3))
        except Exception as e:  # out of memory at a large batch, a profile limit, ...
            log.debug("throughput %s batch %d failed", runner.name, b, exc_info=True)
            row.update(status="skipped", reason=f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
            release_cuda()
        rows.append(row)
        if progress is not None:
            progress.update(1)
    return rows


def measure_matmul_rate(device: str = "cuda", n: int | None = None, iters: int = 10) -> dict:
    """Dense matmul rate: an n^3 FP16 matmul on the GPU (CUDA events), FP32 on the CPU; median."""
    if device == "cuda":
        n = n or MATMUL_N_CUDA
        a = torch.randn(n, n, device="cuda", dtype=torch.float16)
        b = torch.randn(n, n, device="cuda", dtype=torch.float16)
        for _ in range(3):
            a @ b
        torch.cuda.synchronize()
        ms = []
        for _ in range(iters):
            timer = Timer(True).start()
            a @ b
            timer.mark("mm", gpu=True)
            ms.append(timer.stop()["mm"])
        dtype = "fp16"
        del a, b
        release_cuda()
    else:
        n = n or MATMUL_N_CPU
        a = torch.randn(n, n)
        b = torch.randn(n, n)
        a @ b
        ms = []
        for _ in range(max(3, iters // 2)):
            t = time.perf_counter()
            a @ b
            ms.append((time.perf_counter() - t) * 1e3)
        dtype = "fp32"
    return {"device": device, "dtype": dtype, "n": n, "ms": summarize(ms),
            "tflops": 2 * n**3 / (float(np.median(ms)) / 1e3) / 1e12}
