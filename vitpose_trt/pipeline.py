"""`VitPoseTRT`: frame + boxes -> keypoints, on whichever engine was given.

Two paths share the one pre/post implementation:
    GPU (engine on CUDA and the CUDA kernels built): frame -> pinned staging -> async upload ->
        warp kernel writes the crops straight into the engine's input -> engine -> decode kernel
        reads the engine's output -> only (N, K, 3) results come back. One stream, one sync.
    CPU: `preprocess(impl="cpp")` -> engine.run -> `postprocess(impl="cpp")` (numpy where the
        extension is not built).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from vitpose_trt import _ext
from vitpose_trt.coco import flip_index
from vitpose_trt.crop import preprocess
from vitpose_trt.decode import postprocess
from vitpose_trt.engines import Engine, open_engine
from vitpose_trt.geometry import check_boxes, check_frame, check_mode

log = logging.getLogger(__name__)


class VitPoseTRT:
    """Top-down ViTPose: all boxes of a frame run as one batch.

    Args:
        engine: a TensorRT plan (.engine/.plan), an .onnx file, a checkpoint, an `Engine`, or None
            (random-weight ViTPose-B: for benchmarks and tests, not for real poses).
        mode: "udp" (official ViTPose pipeline) or "classic".
        flip_test: also run the mirrored crops and average (official flip test; twice the compute).
        backend: "auto", "tensorrt", "pytorch" or "onnxruntime" (see `open_engine`).
        device / precision: for the PyTorch backend (default: CUDA FP16 where a GPU is visible).
        flip_pairs: left/right keypoint index pairs for flip test (COCO's for K = 17).
        impl: pre/post implementation on the CPU path: "cpp" (default where built) or "numpy".

    Example:
        >>> pose = VitPoseTRT("vitpose-b.engine")
        >>> keypoints = pose.infer(frame_bgr, boxes_xyxy)   # (N, 17, 3): x, y, score
    """

    def __init__(self, engine=None, *, mode: str = "udp", flip_test: bool = False, backend: str = "auto",
                 device: str | None = None, precision: str | None = None, flip_pairs=None,
                 impl: str | None = None) -> None:
        self.mode = check_mode(mode)
        self.engine: Engine = open_engine(engine, backend=backend, device=device, precision=precision)
        built_mode = getattr(self.engine, "mode", None)  # TensorRT engines record theirs in the sidecar
        if built_mode is not None and built_mode != mode:
            log.warning("the engine was built for mode=%r but runs with mode=%r", built_mode, mode)
        self.flip_test = flip_test
        self.flip_pairs = flip_pairs
        if flip_test:
            flip_index(self.engine.num_keypoints, flip_pairs)  # fail now, not at the first frame
        self.impl = _ext.check_impl(impl) if impl is not None else _ext.default_cpu_impl()
        self._gpu = None
        if self.engine.device == "cuda":
            if _ext.has_cuda_kernels():
                from vitpose_trt._gpu_pipeline import GpuPipeline

                self._gpu = GpuPipeline(self.engine, mode, flip_test, flip_pairs)
            else:
                log.warning("vitpose_trt._C was built without CUDA kernels: crops and decode run on the CPU, "
                            "with host round trips (rebuild with nvcc on PATH for the GPU path)")
        if self.engine.random_weights:
            log.warning("VitPoseTRT is using RANDOM weights: keypoints are meaningless (benchmarks/tests only)")

    @property
    def num_keypoints(self) -> int:
        return self.engine.num_keypoints

    @property
    def random_weights(self) -> bool:
        return self.engine.random_weights

    def infer(self, frame, boxes) -> np.ndarray:
        """Keypoints for every box of one frame.

        Args:
            frame: HxWx3 uint8 BGR numpy array, or (GPU path) a CUDA array of the same layout.
            boxes: (N, 4) x1, y1, x2, y2 in frame pixels, or (N, 5) with a score column.

        Returns:
            (N, K, 3) float32: x, y in frame pixels and the heatmap score.
        """
        if self._gpu is not None:
            return self._gpu.infer(frame, boxes)
        return self._infer_cpu(frame, boxes)

    def infer_many(self, frames, boxes_per_frame) -> list[np.ndarray]:
        """Keypoints for several frames at once: `[infer(f, b) for f, b in zip(frames, boxes_per_frame)]`,
        with all the frames' crops sharing engine batches (a server's requests, a video's frames).

        Args:
            frames: a sequence of frames (as `infer`).
            boxes_per_frame: one (N_i, 4) or (N_i, 5) box array per frame (N_i may be 0).

        Returns:
            one (N_i, K, 3) float32 array per frame, in order.
        """
        frames, boxes_per_frame = list(frames), list(boxes_per_frame)
        if len(frames) != len(boxes_per_frame):
            raise ValueError(f"infer_many: {len(frames)} frames but {len(boxes_per_frame)} box arrays")
        return [self.infer(f, b) for f, b in zip(frames, boxes_per_frame)]

    @property
    def stream(self):
        """The GPU path's compute stream (a torch.cuda.Stream), None on the CPU path: record CUDA
        events on it from a `stage_hook` to time the GPU stages."""
        return None if self._gpu is None else self._gpu.compute

    def infer_async(self, frame, boxes, *, stage_hook: Callable[[str], None] | None = None) -> PendingResult:
        """Enqueue one frame and return at once; `.result()` waits for its keypoints.

        On the GPU path the next frame's upload overlaps this frame's compute. On the CPU path the
        work runs now and the handle only holds the result.

        Args:
            frame, boxes: as `infer`.
            stage_hook: called with the stage name ("upload", "crop", "model", "decode",
                "download") right after each stage of each chunk: on the CPU path after it ran,
                on the GPU path right after it was enqueued on `stream` (the benchmark records a
                CUDA event there).
        """
        if self._gpu is not None:
            return self._gpu.infer_async(frame, boxes, stage_hook=stage_hook)
        return PendingResult(lambda: None, self._infer_cpu(frame, boxes, stage_hook))

    def _infer_cpu(self, frame, boxes, stage_hook: Callable[[str], None] | None = None) -> np.ndarray:
        """The CPU path. `stage_hook(name)` is called after each stage of each chunk ("crop",
        "model", "decode"): the benchmark times this very path with it."""
        mark = stage_hook or (lambda stage: None)
        frame = _host_frame(frame)
        boxes = check_boxes(boxes)
        k = self.engine.num_keypoints
        if len(boxes) == 0:
            check_frame(frame)
            return np.zeros((0, k, 3), dtype=np.float32)
        out = np.empty((len(boxes), k, 3), dtype=np.float32)
        for lo, hi in _chunks(len(boxes), self.engine.max_batch, self.flip_test):
            crops, transforms = preprocess(frame, boxes[lo:hi], self.mode, input_size=self.engine.input_size,
                                           impl=self.impl, flip=self.flip_test)
            mark("crop")
            heatmaps = self.engine.run(crops)
            mark("model")
            n = hi - lo
            flipped = heatmaps[n:] if self.flip_test else None
            out[lo:hi] = postprocess(heatmaps[:n], transforms, self.mode, flipped=flipped,
                                     flip_pairs=self.flip_pairs, impl=self.impl)
            mark("decode")
        return out


@dataclass
class PendingResult:
    """A frame in flight. `result()` blocks until its keypoints are on the host."""

    _wait: object
    _value: np.ndarray | None = None

    def result(self) -> np.ndarray:
        if self._value is None:
            self._value = self._wait()  # type: ignore[operator]
        return self._value


def _chunks(n: int, max_batch: int | None, flip: bool):
    """Box ranges whose crop batch (doubled for flip test) fits the engine's profile."""
    if max_batch is None:
        yield 0, n
        return
    per = max_batch // 2 if flip else max_batch
    if per < 1:
        raise ValueError(f"the engine's max batch {max_batch} cannot hold one flip-test pair")
    for lo in range(0, n, per):
        yield lo, min(n, lo + per)


def _host_frame(frame) -> np.ndarray:
    if isinstance(frame, np.ndarray):
        return frame
    if hasattr(frame, "__cuda_array_interface__") or type(frame).__module__.startswith("torch"):
        import torch

        return torch.as_tensor(frame).cpu().numpy()
    return check_frame(frame)

