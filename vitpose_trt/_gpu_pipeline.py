"""The zero-copy GPU path of `VitPoseTRT` (internal).

Per frame: host frame -> pinned staging -> async upload (upload stream) -> warp kernel writes the
crops into the engine's input buffer -> engine -> decode kernel reads the engine's output buffer
-> (N, K, 3) results -> pinned host. Only the frame goes up and only the results come down.

Frames rotate over `SLOTS` sets of staging buffers, so `infer_async` can upload frame t+1 while
frame t is still computing; a slot is reused only after its previous frame finished.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from vitpose_trt import _ext
from vitpose_trt.coco import flip_index
from vitpose_trt.engines.base import Engine
from vitpose_trt.geometry import boxes_to_transforms, check_boxes, check_frame, inverse_warp_matrices
from vitpose_trt.gpu import GrowBuffer, as_cuda_frame

SLOTS = 2


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
        self.pending = None  # the PendingResult still reading out_host


class GpuPipeline:
    def __init__(self, engine: Engine, mode: str, flip_test: bool, flip_pairs=None) -> None:
        self.engine, self.mode, self.flip = engine, mode, flip_test
        self.device = engine.torch_device  # every CUDA engine has it, and the input_dtype it reads
        if getattr(engine, "min_batch", 1) > 1:
            raise ValueError(f"the engine's optimization profile starts at batch {engine.min_batch}; the GPU "
                             "pipeline runs any number of boxes: rebuild it with the default minimum of 1")
        self.ext = _ext.extension()
        self.compute = torch.cuda.Stream(self.device)
        self.upload = torch.cuda.Stream(self.device)
        self.slots = [_Slot(self.device) for _ in range(SLOTS)]
        self.next_slot = 0
        self.input = GrowBuffer(engine.input_dtype, self.device)
        k = engine.num_keypoints
        self.flip_index = (torch.tensor(flip_index(k, flip_pairs), dtype=torch.int32, device=self.device)
                           if flip_test else None)

    def infer(self, frame, boxes) -> np.ndarray:
        return self.infer_async(frame, boxes).result()

    def infer_async(self, frame, boxes, stage_hook: Callable[[str], None] | None = None):
        """Enqueue one frame. `stage_hook(name)`, when given, is called right after each stage is
        enqueued on the compute stream ("upload", then per chunk "crop", "model", "decode", then
        "download"): the benchmark records a CUDA event there to time the stages of this very path."""
        from vitpose_trt.pipeline import PendingResult, _chunks

        mark = stage_hook or (lambda stage: None)

        boxes = check_boxes(boxes)
        n, k = len(boxes), self.engine.num_keypoints
        if n == 0:
            if isinstance(frame, np.ndarray):
                check_frame(frame)
            else:
                as_cuda_frame(frame, self.device)
            return PendingResult(lambda: None, np.zeros((0, k, 3), dtype=np.float32))

        slot = self.slots[self.next_slot]
        self.next_slot = (self.next_slot + 1) % SLOTS
        if slot.pending is not None:  # materialize the frame that used this slot before
            slot.pending.result()
            slot.pending = None
        h_in, w_in = self.engine.input_size

        # 1. Uploads, on their own stream so they overlap the previous frame's compute.
        producer = torch.cuda.current_stream(self.device)
        self.upload.wait_stream(producer)  # a CUDA frame made on the caller's stream must be ready
        with torch.cuda.stream(self.upload):
            if isinstance(frame, np.ndarray):
                frame = check_frame(frame)
                staged = slot.frame_host.get(*frame.shape)
                np.copyto(staged.numpy(), frame)
                frame_dev = slot.frame_dev.get(*frame.shape)
                frame_dev.copy_(staged, non_blocking=True)
            else:
                frame_dev = as_cuda_frame(frame, self.device)
                frame_dev.record_stream(self.compute)  # the caller may free it while we still read it
            transforms = boxes_to_transforms(boxes, (h_in, w_in))
            inv_host = slot.inv_host.get(n, 2, 3)
            inv_host.numpy()[:] = inverse_warp_matrices(transforms, self.mode, (h_in, w_in))
            inv_dev = slot.inv_dev.get(n, 2, 3)
            inv_dev.copy_(inv_host, non_blocking=True)
            t_host = slot.trans_host.get(n, 4)
            t_host.numpy()[:] = transforms
            t_dev = slot.trans_dev.get(n, 4)
            t_dev.copy_(t_host, non_blocking=True)
        self.compute.wait_stream(self.upload)
        mark("upload")

        # 2. Crop -> engine -> decode, all on the compute stream, no host round trip.
        out_dev = slot.out_dev.get(n, k, 3)
        stream = self.compute.cuda_stream
        for lo, hi in _chunks(n, self.engine.max_batch, self.flip):
            m = hi - lo
            crops = self.input.get(2 * m if self.flip else m, 3, h_in, w_in)
            self.ext.warp_cuda(frame_dev, inv_dev[lo:hi], crops, self.flip, stream)
            mark("crop")
            heatmaps = self.engine.run_cuda(crops, self.compute)
            mark("model")
            self.ext.decode_cuda(heatmaps[:m], t_dev[lo:hi], out_dev[lo:hi], self.mode,
                                 heatmaps[m:] if self.flip else None, self.flip_index, stream)
            mark("decode")
        out_host = slot.out_host.get(n, k, 3)
        with torch.cuda.stream(self.compute):
            out_host.copy_(out_dev, non_blocking=True)
        mark("download")
        slot.done.record(self.compute)

        def wait() -> np.ndarray:
            slot.done.synchronize()
            return out_host.numpy().copy()

        pending = PendingResult(wait)
        slot.pending = pending
        return pending
