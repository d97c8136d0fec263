"""The GPU path of `VitPoseTRT`: frames go up, only keypoints come down.

Per call, on two streams of the engine's device:
    upload stream:  host frame -> pinned staging -> device (a CUDA frame is used in place), and the
                    per-box matrices; it first waits for the caller's current stream.
    compute stream: per engine batch: warp kernel writes the crops straight into the engine's input
                    -> engine -> decode kernel reads the engine's output; then the (N, K, 3)
                    keypoints go to pinned host memory. The caller's stream then waits until the
                    crops are cut, so a CUDA frame may be overwritten by work queued after the call.
Calls rotate over `SLOTS` sets of staging buffers, so `infer_async` can upload frame t+1 while frame
t is still computing; a slot is reused only after its previous call finished. Calls from several
threads are serialized by a lock (the slots, the crop buffer and the engine are shared).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import numpy as np
import torch

from vitpose_trt import kernels
from vitpose_trt.batching import PendingResult, boxes_per_batch, empty_keypoints, frame_batches
from vitpose_trt.coco import flip_index
from vitpose_trt.cuda_memory import GrowBuffer, as_cuda_frame, producer_stream
from vitpose_trt.engines.base import Engine
from vitpose_trt.geometry import boxes_to_transforms, check_boxes, check_frame, inverse_warp_matrices

SLOTS = 2
StageHook = Callable[[str], None]


class _Slot:
    def __init__(self, device: torch.device) -> None:
        self.frame_host = GrowBuffer(torch.uint8, "cpu", pin_memory=True)
        self.frame_dev = GrowBuffer(torch.uint8, device)
        self.inv_host = GrowBuffer(torch.float64, "cpu", pin_memory=True)
        self.inv_dev = GrowBuffer(torch.float64, device)
        self.trans_host = GrowBuffer(torch.float32, "cpu", pin_memory=True)
        self.trans_dev = GrowBuffer(torch.float32, device)
        self.out_host = GrowBuffer(torch.float32, "cpu", pin_memory=True)
        self.out_dev = GrowBuffer(torch.float32, device)
        self.done = torch.cuda.Event()
        self.pending: PendingResult | None = None  # the call still reading out_host


class GpuPath:
    """frame(s) + boxes -> keypoints with the CUDA kernels around a CUDA engine.

    Args:
        engine: a CUDA engine (`device == "cuda"`, with `torch_device` and `input_dtype`).
        mode, flip_test, flip_pairs: as `VitPoseTRT`.
    """

    impl = "cuda"  # the pre/post implementation, as `CpuPath.impl`

    def __init__(self, engine: Engine, mode: str, flip_test: bool, flip_pairs=None) -> None:
        self.engine, self.mode, self.flip = engine, mode, flip_test
        if engine.torch_device is None:
            raise ValueError(f"the GPU path needs a CUDA engine, got {engine.describe()}")
        self.device = engine.torch_device
        if getattr(engine, "min_batch", 1) > 1:
            raise ValueError(f"the engine's optimization profile starts at batch {engine.min_batch}; the GPU "  # type: ignore[attr-defined]
                             "pipeline runs any number of boxes: rebuild it with the default minimum of 1")
        self.stream = torch.cuda.Stream(self.device)  # compute; public for the benchmark's CUDA events
        self.upload = torch.cuda.Stream(self.device)
        self.slots = [_Slot(self.device) for _ in range(SLOTS)]
        self.next_slot = 0
        self.input = GrowBuffer(engine.input_dtype, self.device)
        self.frames_read = torch.cuda.Event()
        self.lock = threading.Lock()
        k = engine.num_keypoints
        self.flip_index = (torch.tensor(flip_index(k, flip_pairs), dtype=torch.int32, device=self.device)
                           if flip_test else None)

    def infer_async(self, frame, boxes, stage_hook: StageHook | None = None) -> PendingResult:
        pending = self.infer_many([frame], [boxes], stage_hook)
        return PendingResult(lambda: pending.result()[0])

    def infer_many(self, frames: Sequence, boxes_per_frame: Sequence,
                   stage_hook: StageHook | None = None) -> PendingResult:
        """Enqueue the frames; `.result()` gives one (N_i, K, 3) array per frame.

        `stage_hook(name)`, when given, is called right after each stage is enqueued on `stream`
        ("upload", then per engine batch "crop", "model", "decode", then "download"): the benchmark
        records a CUDA event there to time the stages of this very path.
        """
        with self.lock:
            return self._enqueue(list(frames), [check_boxes(b) for b in boxes_per_frame], stage_hook)

    def _enqueue(self, frames: list, boxes: list[np.ndarray], stage_hook: StageHook | None) -> PendingResult:
        mark = stage_hook or (lambda stage: None)
        counts = [len(b) for b in boxes]
        total, k = sum(counts), self.engine.num_keypoints
        if total == 0:
            for frame in frames:
                check_frame(frame) if isinstance(frame, np.ndarray) or frame is None else as_cuda_frame(frame, self.device)
            return PendingResult.done([empty_keypoints(k) for _ in frames])

        slot = self.slots[self.next_slot]
        self.next_slot = (self.next_slot + 1) % SLOTS
        if slot.pending is not None:  # materialize the call that used this slot before
            slot.pending.result()
            slot.pending = None
        h_in, w_in = self.engine.input_size

        # 1. Uploads, on their own stream so they overlap the previous call's compute.
        caller = torch.cuda.current_stream(self.device)
        self.upload.wait_stream(caller)  # a CUDA frame made on the caller's stream must be ready
        frames_dev: list[torch.Tensor | None] = []
        caller_frames = False
        producers: list[torch.cuda.Stream] = []  # foreign frames' producer streams (interface v3)
        with torch.cuda.stream(self.upload):
            for frame, count in zip(frames, counts):
                if isinstance(frame, np.ndarray) or frame is None:
                    frame = check_frame(frame)
                    if count == 0:
                        frames_dev.append(None)
                    elif len(frames) == 1:  # the real-time case: pinned staging, an async copy
                        staged = slot.frame_host.get(*frame.shape)
                        np.copyto(staged.numpy(), frame)
                        frames_dev.append(slot.frame_dev.get(*frame.shape, stream=self.stream)
                                          .copy_(staged, non_blocking=True))
                    else:
                        frame_dev = torch.from_numpy(np.ascontiguousarray(frame)).to(self.device)
                        frame_dev.record_stream(self.stream)  # freed on return, read later on `stream`
                        frames_dev.append(frame_dev)
                else:
                    frame_dev = as_cuda_frame(frame, self.device)  # waits for a v3 producer's stream
                    frame_dev.record_stream(self.stream)  # the caller may free it while we still read it
                    frames_dev.append(frame_dev)
                    caller_frames = True
                    if not isinstance(frame, torch.Tensor):
                        producer = producer_stream(frame, self.device)
                        if producer is not None:
                            producers.append(producer)
            all_boxes = np.concatenate(boxes)
            transforms = boxes_to_transforms(all_boxes, (h_in, w_in))
            inv_host = slot.inv_host.get(total, 2, 3)
            inv_host.numpy()[:] = inverse_warp_matrices(transforms, self.mode, (h_in, w_in))
            inv_dev = slot.inv_dev.get(total, 2, 3, stream=self.stream).copy_(inv_host, non_blocking=True)
            t_host = slot.trans_host.get(total, 4)
            t_host.numpy()[:] = transforms
            t_dev = slot.trans_dev.get(total, 4, stream=self.stream).copy_(t_host, non_blocking=True)
        self.stream.wait_stream(self.upload)
        mark("upload")

        # 2. Crop -> engine -> decode per engine batch, all on the compute stream, no host round trip.
        first = np.cumsum([0] + counts[:-1])  # index of each frame's first box in the call
        out_dev = slot.out_dev.get(total, k, 3, stream=self.stream)
        per = boxes_per_batch(self.engine.max_batch, self.flip)
        with torch.cuda.stream(self.stream):
            for batch in frame_batches(counts, per):
                m = sum(s.hi - s.lo for s in batch)
                crops = self.input.get(2 * m if self.flip else m, 3, h_in, w_in, stream=self.stream)
                at = 0
                for s in batch:  # each frame's crops are [its boxes | their mirrors]
                    n, g = s.hi - s.lo, first[s.frame] + s.lo
                    width = 2 * n if self.flip else n
                    kernels.warp(frames_dev[s.frame], inv_dev[g:g + n], crops[at:at + width], self.flip)
                    at += width
                self.frames_read.record(self.stream)
                mark("crop")
                heatmaps = self.engine.run_cuda(crops, self.stream)
                mark("model")
                at = 0
                for s in batch:
                    n, g = s.hi - s.lo, first[s.frame] + s.lo
                    flipped = heatmaps[at + n:at + 2 * n] if self.flip else None
                    kernels.decode(heatmaps[at:at + n], t_dev[g:g + n], out_dev[g:g + n], self.mode, flipped,
                                   self.flip_index)
                    at += 2 * n if self.flip else n
                mark("decode")
            out_host = slot.out_host.get(total, k, 3)
            out_host.copy_(out_dev, non_blocking=True)
        mark("download")
        slot.done.record(self.stream)
        if caller_frames:  # the caller (and a foreign producer) may overwrite a frame once the crops are cut
            for stream in [caller, *producers]:
                stream.wait_event(self.frames_read)

        def wait() -> list[np.ndarray]:
            slot.done.synchronize()
            flat = out_host.numpy().copy()
            return [flat[a:a + c] for a, c in zip(first, counts)]

        pending = PendingResult(wait)
        slot.pending = pending
        return pending
