"""The GPU path of `VitPoseTRT`: frames go up, only keypoints come down.

Per call, on two streams of the engine's device (all device work goes through `cuda_runtime`):
    upload stream:  it first waits for the caller's current stream (and a foreign frame's producer);
                    frames (host frames through pinned staging, device frames by a device-to-device
                    copy) and the per-box matrices go into the call's slot. The caller's stream (and
                    the producer's) then waits only for these copies: a device frame may be
                    overwritten as soon as it is copied, without waiting for any engine run.
    compute stream: waits for the upload; per engine batch: the warp kernel writes the crops
                    straight into the engine's input -> engine -> the decode kernel reads the
                    engine's output; then the (N, K, 3) keypoints go to pinned host memory.
One host synchronization per call: `PendingResult.result()` waits for the call's last event.
Calls rotate over `SLOTS` sets of buffers, so `infer_async` can upload frame t+1 while frame t is
still computing; a slot is reused only after its previous call finished. Calls from several
threads are serialized by a lock (the slots, the crop buffer and the engine are shared).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from vitpose_trt.batching import PendingResult, Segment, StageHook, boxes_per_batch, empty_keypoints, frame_batches
from vitpose_trt.datasets import flip_index
from vitpose_trt.cuda_memory import GrowBuffer, device_array
from vitpose_trt.cuda_runtime import CudaRuntime, Stream, runtime
from vitpose_trt.engines.base import Engine
from vitpose_trt.geometry import boxes_to_transforms, check_boxes, check_frame, inverse_warp_matrices

SLOTS = 2


class _Slot:
    """The buffers of one call in flight."""

    def __init__(self, cuda: CudaRuntime, device: torch.device) -> None:
        self.frames_host = GrowBuffer(torch.uint8, None, pinned=True)
        self.frames_dev = GrowBuffer(torch.uint8, device)
        self.inv_host = GrowBuffer(torch.float64, None, pinned=True)
        self.inv_dev = GrowBuffer(torch.float64, device)
        self.trans_host = GrowBuffer(torch.float32, None, pinned=True)
        self.trans_dev = GrowBuffer(torch.float32, device)
        self.out_host = GrowBuffer(torch.float32, None, pinned=True)
        self.out_dev = GrowBuffer(torch.float32, device)
        self.uploaded = cuda.event()  # the call's inputs are on the device
        self.done = cuda.event()  # the call's keypoints are on the host
        self.pending: PendingResult | None = None  # the call still reading out_host
        self.inputs: list | None = None  # the caller's frames, alive until the copies that read them are done


@dataclass
class _Call:
    """One call's inputs on the device: frames (None where a frame has no boxes), per-box matrices."""

    frames: list[torch.Tensor | None]
    inv: torch.Tensor  # (total, 2, 3) float64 crop -> frame
    transforms: torch.Tensor  # (total, 4) float32
    counts: list[int]
    first: list[int]  # index of each frame's first box in the call

    @property
    def total(self) -> int:
        return sum(self.counts)


class GpuPath:
    """frame(s) + boxes -> keypoints with the CUDA kernels around a CUDA engine.

    Args:
        engine: a CUDA engine (`device == "cuda"`, with `torch_device` and `input_dtype`).
        mode, flip_test, flip_pairs: as `VitPoseTRT`.
    """

    impl = "cuda"  # the pre/post implementation, as `CpuPath.impl`

    def __init__(self, engine: Engine, mode: str, flip_test: bool, flip_pairs=None) -> None:
        if engine.torch_device is None:
            raise ValueError(f"the GPU path needs a CUDA engine, got {engine.describe()}")
        if getattr(engine, "min_batch", 1) > 1:
            raise ValueError(f"the engine's optimization profile starts at batch {engine.min_batch}; the GPU "  # type: ignore[attr-defined]
                             "pipeline runs any number of boxes: rebuild it with the default minimum of 1")
        self.engine, self.mode, self.flip = engine, mode, flip_test
        self.cuda = runtime()
        self.device = engine.torch_device
        self.stream = self.cuda.stream(self.device)  # compute; public for the benchmark's CUDA events
        self.upload = self.cuda.stream(self.device)
        self.slots = [_Slot(self.cuda, self.device) for _ in range(SLOTS)]
        self.next_slot = 0
        self.input = GrowBuffer(engine.input_dtype, self.device)
        self.lock = threading.Lock()
        self.flip_index: torch.Tensor | None = None
        if flip_test:
            index = torch.tensor(flip_index(engine.num_keypoints, flip_pairs), dtype=torch.int32)
            with torch.inference_mode(), self.cuda.use(self.stream):
                self.flip_index = self.cuda.empty(index.shape, torch.int32, self.device)
                self.cuda.copy(self.flip_index, index)

    def infer_async(self, frame, boxes, stage_hook: StageHook | None = None) -> PendingResult:
        pending = self.infer_many([frame], [boxes], stage_hook)
        return PendingResult(lambda: pending.result()[0])

    def infer_many(self, frames: Sequence, boxes_per_frame: Sequence,
                   stage_hook: StageHook | None = None) -> PendingResult:
        """Enqueue the frames; `.result()` gives one (N_i, K, 3) array per frame.

        `stage_hook(name)`, when given, is called right after each stage is enqueued: "upload"
        (on the upload stream, which `stream` then waits for), per engine batch "crop", "model",
        "decode", then "download" (on `stream`): the benchmark records a CUDA event there.
        """
        boxes = [check_boxes(b) for b in boxes_per_frame]
        # inference mode throughout: the buffers are made once, as inference tensors, whatever the caller's mode
        with self.lock, torch.inference_mode():
            return self._enqueue(list(frames), boxes, stage_hook or (lambda stage: None))

    def _enqueue(self, frames: list, boxes: list[np.ndarray], mark: StageHook) -> PendingResult:
        """upload -> per engine batch: crop -> engine -> decode -> download, all enqueued; the result
        waits for the call's last event."""
        if sum(len(b) for b in boxes) == 0:
            return self._no_boxes(frames)
        slot = self._take_slot()
        slot.inputs = frames
        call = self._upload(slot, frames, boxes)
        mark("upload")
        k = self.engine.num_keypoints
        out_host = slot.out_host.get(call.total, k, 3)
        with self.cuda.use(self.stream):
            out_dev = slot.out_dev.get(call.total, k, 3, stream=self.stream)
            for batch in frame_batches(call.counts, boxes_per_batch(self.engine.max_batch, self.flip)):
                crops = self._crop(batch, call)
                mark("crop")
                heatmaps = self.engine.run_cuda(crops, self.stream)
                mark("model")
                self._decode(batch, call, heatmaps, out_dev)
                mark("decode")
            self.cuda.copy(out_host, out_dev)
        mark("download")
        slot.done.record(self.stream)
        slot.pending = PendingResult(lambda: self._collect(slot, call, out_host))
        return slot.pending

    def _no_boxes(self, frames: list) -> PendingResult:
        """A call without boxes: its frames are checked, nothing is enqueued."""
        for frame in frames:
            self._check(frame)
        return PendingResult.done([empty_keypoints(self.engine.num_keypoints) for _ in frames])

    def _collect(self, slot: _Slot, call: _Call, out_host: torch.Tensor) -> list[np.ndarray]:
        """The call's one host synchronization: its keypoints, split per frame."""
        slot.done.synchronize()
        slot.inputs = None
        self.cuda.host_uses(out_host, write=False)
        flat = out_host.numpy().copy()
        return [flat[a:a + c] for a, c in zip(call.first, call.counts)]

    def _take_slot(self) -> _Slot:
        """The next slot, once the call that used it last has finished (its result materialized)."""
        slot = self.slots[self.next_slot]
        self.next_slot = (self.next_slot + 1) % SLOTS
        if slot.pending is not None:
            slot.pending.result()
            slot.pending = None
        return slot

    def _check(self, frame) -> tuple[np.ndarray | torch.Tensor, Stream | None]:
        """A host frame checked, or a device frame as a tensor with its producer's stream."""
        if isinstance(frame, np.ndarray) or frame is None:
            return check_frame(frame), None
        tensor, producer = device_array(frame, self.device)
        return check_frame(tensor, on_device=True), producer

    def _upload(self, slot: _Slot, frames: list, boxes: list[np.ndarray]) -> _Call:
        """Frames and per-box matrices into the slot's device buffers, on the upload stream."""
        checked = [self._check(frame) for frame in frames]
        producers = [p for _, p in checked if p is not None]
        counts = [len(b) for b in boxes]
        wanted = [frame if count else None for (frame, _), count in zip(checked, counts)]
        inv_host, trans_host = self._matrices(slot, boxes)
        caller = self.cuda.current_stream(self.device)
        with self.cuda.use(self.upload):
            self.upload.wait_stream(caller)  # a device frame made on the caller's stream must be ready
            for producer in producers:
                self.upload.wait_stream(producer)
            for frame in frames:  # the caching allocator must not hand a caller's frame out while we read it
                if isinstance(frame, torch.Tensor):
                    self.cuda.record_stream(frame, self.upload)
            frames_dev = self._copy_frames(slot, wanted)
            inv = slot.inv_dev.get(len(inv_host), 2, 3, stream=self.stream)
            self.cuda.copy(inv, inv_host)
            trans = slot.trans_dev.get(len(trans_host), 4, stream=self.stream)
            self.cuda.copy(trans, trans_host)
            slot.uploaded.record(self.upload)
        self.stream.wait_event(slot.uploaded)
        if any(isinstance(frame, torch.Tensor) for frame in wanted):
            for stream in (caller, *producers):  # they may overwrite their frames once these are copied
                stream.wait_event(slot.uploaded)
        return _Call(frames_dev, inv, trans, counts, np.cumsum([0, *counts[:-1]]).tolist())

    def _matrices(self, slot: _Slot, boxes: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """Every box's crop -> frame matrix and transform, written into the slot's pinned host buffers."""
        size = self.engine.input_size
        transforms = boxes_to_transforms(np.concatenate(boxes), size)
        inv_host = slot.inv_host.get(len(transforms), 2, 3)
        trans_host = slot.trans_host.get(len(transforms), 4)
        for host in (inv_host, trans_host):
            self.cuda.host_uses(host, write=True)
        inv_host.numpy()[:] = inverse_warp_matrices(transforms, self.mode, size)
        trans_host.numpy()[:] = transforms
        return inv_host, trans_host

    def _copy_frames(self, slot: _Slot, frames: list) -> list[torch.Tensor | None]:
        """Each given frame into the slot's device buffer, packed (H, W, 3): host frames through
        pinned staging and an asynchronous copy, device frames by a device-to-device copy."""
        sizes = [0 if frame is None else frame.shape[0] * frame.shape[1] * 3 for frame in frames]
        flat = slot.frames_dev.get(sum(sizes), stream=self.stream)
        staged = slot.frames_host.get(sum(n for f, n in zip(frames, sizes) if isinstance(f, np.ndarray)))
        out: list[torch.Tensor | None] = []
        at = staged_at = 0
        for frame, n in zip(frames, sizes):
            if frame is None:
                out.append(None)
                continue
            dst = flat[at:at + n].view(tuple(frame.shape))
            at += n
            src = frame
            if isinstance(frame, np.ndarray):
                src = staged[staged_at:staged_at + n].view(frame.shape)
                self.cuda.host_uses(src, write=True)
                np.copyto(src.numpy(), frame)
                staged_at += n
            self.cuda.copy(dst, src)
            out.append(dst)
        return out

    def _crop(self, batch: list[Segment], call: _Call) -> torch.Tensor:
        """The warp kernel writes each box's crop (and its mirror) into the engine's input."""
        h, w = self.engine.input_size
        boxes = sum(s.hi - s.lo for s in batch)
        crops = self.input.get(2 * boxes if self.flip else boxes, 3, h, w, stream=self.stream)
        at = 0
        for s in batch:  # each frame's crops are [its boxes | their mirrors]
            n, g = s.hi - s.lo, call.first[s.frame] + s.lo
            width = 2 * n if self.flip else n
            frame = call.frames[s.frame]
            assert frame is not None  # only frames without boxes have none, and they are in no batch
            self.cuda.warp(frame, call.inv[g:g + n], crops[at:at + width], self.flip)
            at += width
        return crops

    def _decode(self, batch: list[Segment], call: _Call, heatmaps: torch.Tensor, out: torch.Tensor) -> None:
        """The decode kernel reads the engine's output and writes each box's keypoints into `out`."""
        at = 0
        for s in batch:
            n, g = s.hi - s.lo, call.first[s.frame] + s.lo
            flipped = heatmaps[at + n:at + 2 * n] if self.flip else None
            self.cuda.decode(heatmaps[at:at + n], call.transforms[g:g + n], out[g:g + n], self.mode, flipped,
                             self.flip_index)
            at += 2 * n if self.flip else n
