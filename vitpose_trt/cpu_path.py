"""The CPU path of `VitPoseTRT`: preprocess -> engine.run -> postprocess, on host memory.

Used for every CPU engine (ONNX Runtime, PyTorch on the CPU), and for CUDA engines when the
extension has no CUDA kernels (then crops go up and heatmaps come down each call). Boxes of all the
frames of a call share engine batches of at most `engine.max_batch` crops, so memory stays bounded
for any number of people. Thread-safe: nothing is shared between calls but the engine, and the
CPU engines run concurrent calls safely (the TensorRT engine serializes them itself).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vitpose_trt.batching import PendingResult, StageHook, boxes_per_batch, frame_batches
from vitpose_trt.engines.base import Engine
from vitpose_trt.geometry import check_boxes, check_frame
from vitpose_trt.decode import postprocess
from vitpose_trt.crop import preprocess


class CpuPath:
    """frame(s) + boxes -> keypoints with host-side pre/post-processing.

    Args:
        engine: any engine (its host `run` is used).
        mode, flip_test, flip_pairs: as `VitPoseTRT`.
        impl: "cpp" (the extension's kernels) or "numpy" (the reference).
        threads: CPU threads for the C++ kernels (None: the extension's default).
    """

    stream = None  # the GPU path's compute stream; none here

    def __init__(self, engine: Engine, mode: str, flip_test: bool, flip_pairs=None, impl: str = "cpp",
                 threads: int | None = None) -> None:
        self.engine, self.mode, self.flip, self.flip_pairs = engine, mode, flip_test, flip_pairs
        self.impl, self.threads = impl, threads

    def infer_async(self, frame, boxes, stage_hook: StageHook | None = None) -> PendingResult:
        """Runs now; the handle only holds the (N, K, 3) result."""
        return PendingResult.done(self.run([frame], [boxes], stage_hook)[0])

    def infer_many(self, frames: Sequence, boxes_per_frame: Sequence,
                   stage_hook: StageHook | None = None) -> PendingResult:
        return PendingResult.done(self.run(frames, boxes_per_frame, stage_hook))

    def run(self, frames: Sequence, boxes_per_frame: Sequence, stage_hook: StageHook | None = None) -> list[np.ndarray]:
        """Keypoints for every box of every frame. `stage_hook(name)` is called after each stage of
        each engine batch ("crop", "model", "decode"): the benchmark times this very path with it."""
        mark = stage_hook or (lambda stage: None)
        frames = [host_frame(f) for f in frames]
        boxes = [check_boxes(b) for b in boxes_per_frame]
        engine, k = self.engine, self.engine.num_keypoints
        outs = [np.empty((len(b), k, 3), dtype=np.float32) for b in boxes]
        for batch in frame_batches([len(b) for b in boxes], boxes_per_batch(engine.max_batch, self.flip)):
            parts = [preprocess(frames[s.frame], boxes[s.frame][s.lo:s.hi], self.mode, input_size=engine.input_size,
                                impl=self.impl, flip=self.flip, threads=self.threads) for s in batch]
            crops = parts[0][0] if len(parts) == 1 else np.concatenate([c for c, _ in parts])
            transforms = np.concatenate([t for _, t in parts])
            mark("crop")
            heatmaps = engine.run(crops)
            mark("model")
            flipped = None
            if self.flip:  # each frame's crops are [its boxes | their mirrors]: regroup for one decode
                sizes = [s.hi - s.lo for s in batch]
                starts = np.cumsum([0] + [2 * n for n in sizes[:-1]])
                plain = np.concatenate([np.arange(a, a + n) for a, n in zip(starts, sizes)])
                heatmaps, flipped = heatmaps[plain], heatmaps[plain + np.repeat(sizes, sizes)]
            keypoints = postprocess(heatmaps, transforms, self.mode, flipped=flipped, flip_pairs=self.flip_pairs,
                                    impl=self.impl, threads=self.threads)
            at = 0
            for s in batch:
                outs[s.frame][s.lo:s.hi] = keypoints[at:at + s.hi - s.lo]
                at += s.hi - s.lo
            mark("decode")
        return outs


def host_frame(frame) -> np.ndarray:
    """A checked HxWx3 uint8 numpy frame; a CUDA or torch frame is copied to the host."""
    if not isinstance(frame, np.ndarray) and (hasattr(frame, "__cuda_array_interface__")
                                              or type(frame).__module__.startswith("torch")):
        import torch

        if isinstance(frame, torch.Tensor) and frame.device.type == "cpu":
            frame = frame.numpy()
        else:
            from vitpose_trt.cuda_memory import as_cuda_frame

            device = frame.device if isinstance(frame, torch.Tensor) else None
            frame = as_cuda_frame(frame, device).cpu().numpy()  # waits for a foreign producer's stream
    return check_frame(frame)
