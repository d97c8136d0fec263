"""`VitPoseTRT`: frame + boxes -> keypoints, on whichever engine was given; `PoseConfig`: its settings.

The facade opens the engine and hands every call to one of two peers with the same shape
(`infer_async`, `infer_many`, a `stage_hook`, `stream`):
    `GpuPath` (gpu_path.py): a CUDA engine and the CUDA kernels: frames go up, crops are cut into the
        engine's input, heatmaps are decoded on the device, only keypoints come back.
    `CpuPath` (cpu_path.py): `preprocess` -> `engine.run` -> `postprocess` on host memory (the C++
        kernels, or the numpy reference).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from vitpose_trt import datasets, kernels
from vitpose_trt.batching import PendingResult, StageHook
from vitpose_trt.cpu_path import CpuPath
from vitpose_trt.cuda_runtime import runtime
from vitpose_trt.datasets import Dataset, flip_index
from vitpose_trt.engines import Engine, open_engine
from vitpose_trt.engines.base import check_threads
from vitpose_trt.geometry import check_mode
from vitpose_trt.options import with_options

if TYPE_CHECKING:
    from vitpose_trt.gpu_path import GpuPath

log = logging.getLogger(__name__)


def _torch_modules() -> tuple[ModuleType, ModuleType]:
    """(vitpose_trt.gpu_path, vitpose_trt.model), imported on first use."""
    # lazy: both import torch, which the CPU path (an ONNX Runtime engine) runs without
    from vitpose_trt import gpu_path, model

    return gpu_path, model


@dataclass(frozen=True)
class PoseConfig:
    """How a `VitPoseTRT` opens and runs its engine; each field is also a `VitPoseTRT` keyword.

    Attributes:
        mode: "udp" (official ViTPose pipeline) or "classic".
        flip_test: also run the mirrored crops and average (official flip test; twice the compute).
        backend: "auto", "tensorrt", "pytorch" or "onnxruntime" (see `open_engine`).
        device / precision: for the PyTorch backend (default: CUDA FP16 where a GPU is visible).
        flip_pairs: left/right keypoint index pairs for flip test (default: the dataset's).
        impl: pre/post implementation on the CPU path: "cpp" (default where built) or "numpy".
        threads: CPU threads for the kernels and the CPU engines (None: their defaults).
        max_batch: most crops per engine call (default: the engine's; see `DEFAULT_MAX_BATCH`).
        dataset: the keypoint dataset of the model (`vitpose_trt.datasets` name, e.g. "coco-wholebody"):
            picks a ViTPose++ checkpoint's expert and head, and brings the flip pairs, skeleton and
            sigmas (`VitPoseTRT.dataset`). Default: what the model records (ONNX metadata, TensorRT
            sidecar, the checkpoint's ViTPose++ head or config), else what its K tells (17: COCO).
        expert: a ViTPose++ checkpoint's expert, where it differs from the dataset's (Hugging Face
            ViTPose++ checkpoints hold six experts but only the COCO head).

    Raises:
        ValueError: an unknown mode or impl, or threads not a positive integer (checked when the
            config is made, before any engine is opened).
    """

    mode: str = "udp"
    flip_test: bool = False
    backend: str = "auto"
    device: str | None = None
    precision: str | None = None
    flip_pairs: Sequence[Sequence[int]] | None = None
    impl: str | None = None
    threads: int | None = None
    max_batch: int | None = None
    dataset: str | Dataset | None = None
    expert: int | None = None

    def __post_init__(self) -> None:
        check_mode(self.mode)
        if self.impl is not None:
            kernels.check_impl(self.impl)
        check_threads(self.threads)


class VitPoseTRT:
    """Top-down ViTPose: the boxes of a frame (or of several frames) run in shared engine batches.

        pose = VitPoseTRT("vitpose-b.engine", mode="classic", flip_test=True)
        pose = VitPoseTRT("vitpose-b.engine", PoseConfig(mode="classic", flip_test=True))  # the same

    Args:
        engine: a TensorRT plan (.engine/.plan), an .onnx file, a checkpoint, a `ViTPose` (any
            `nn.Module`), an `Engine`, or None (random-weight ViTPose-B: for benchmarks and tests,
            not for real poses).
        config: the settings (default: `PoseConfig()`).
        options: any `PoseConfig` field by name (mode=, flip_test=, backend=, device=, precision=,
            flip_pairs=, impl=, threads=, max_batch=, dataset=, expert=), over `config`'s value; see
            `PoseConfig` for each.

    Attributes:
        config: the settings in use (`config` with `options` over it).
        engine: the opened `Engine`.
        mode, flip_test: `config`'s.
        dataset: the model's keypoint dataset (`vitpose_trt.datasets.Dataset`), or None where unknown.

    Raises:
        TypeError: an option that is no `PoseConfig` field, or an engine of no known kind.
        ValueError: a bad setting (see `PoseConfig`), or an engine that cannot run it.

    Thread safety: one instance may be shared by threads. The CPU path shares nothing between
    calls but the engine; the GPU path serializes calls with a lock (they share staging buffers).

    Example:
        >>> pose = VitPoseTRT("vitpose-b.engine")
        >>> keypoints = pose.infer(frame_bgr, boxes_xyxy)   # (N, 17, 3): x, y, score
    """

    def __init__(self, engine=None, config: PoseConfig | None = None, **options: Any) -> None:
        self.config = cfg = with_options(PoseConfig, config, options)
        self.mode = cfg.mode
        self.engine: Engine = open_engine(engine, backend=cfg.backend, device=cfg.device, precision=cfg.precision,
                                          threads=cfg.threads, max_batch=cfg.max_batch, dataset=cfg.dataset,
                                          expert=cfg.expert)
        if self.engine.mode is not None and self.engine.mode != cfg.mode:
            log.warning("the engine was built for mode=%r but runs with mode=%r", self.engine.mode, cfg.mode)
        self.dataset: Dataset | None = datasets.resolve(cfg.dataset, self.engine.num_keypoints, self.engine.dataset,
                                                        what=f"the {self.engine.name} engine")
        flip_pairs = cfg.flip_pairs
        if flip_pairs is None and self.dataset is not None:
            flip_pairs = self.dataset.flip_pairs
        self.flip_test = bool(cfg.flip_test)
        if self.flip_test:
            flip_index(self.engine.num_keypoints, flip_pairs)  # fail now, not at the first frame
        self.path: CpuPath | GpuPath = self._open_path(flip_pairs, cfg.impl, cfg.threads)
        if self.engine.random_weights:
            _torch_modules()[1].warn_random_weights(f"VitPoseTRT runs {self.engine.describe()}: its keypoints are "
                                                    "meaningless (benchmarks and tests only)")

    def _open_path(self, flip_pairs, impl: str | None, threads: int | None) -> CpuPath | GpuPath:
        """The runner around the opened engine: the GPU path for a CUDA engine when the extension has
        the CUDA kernels, else the CPU path with the `impl` kernels."""
        if self.engine.device == "cuda" and runtime().has_kernels():
            return _torch_modules()[0].GpuPath(self.engine, self.mode, self.flip_test, flip_pairs)
        if self.engine.device == "cuda":
            log.warning("vitpose_trt._C was built without CUDA kernels: crops and decode run on the CPU, "
                        "with host round trips (rebuild with nvcc on PATH for the GPU path)")
        impl = impl or kernels.default_cpu_impl()  # a named one was checked by PoseConfig
        if impl == "cuda":
            raise ValueError("impl='cuda' is the GPU path: it runs by itself with a CUDA engine and the CUDA kernels")
        return CpuPath(self.engine, self.mode, self.flip_test, flip_pairs, impl=impl, threads=threads)

    @property
    def num_keypoints(self) -> int:
        return self.engine.num_keypoints

    @property
    def random_weights(self) -> bool:
        return self.engine.random_weights

    @property
    def impl(self) -> str:
        """The pre/post implementation in use: "cuda" (GPU path), "cpp" or "numpy" (CPU path)."""
        return self.path.impl

    @property
    def stream(self):
        """The GPU path's compute stream (a torch.cuda.Stream), None on the CPU path."""
        return self.path.stream

    def infer(self, frame, boxes) -> np.ndarray:
        """Keypoints for every box of one frame.

        Args:
            frame: HxWx3 uint8 BGR numpy array (any strides), or (GPU path) a CUDA array of the
                same layout (a torch tensor, CuPy, anything with `__cuda_array_interface__`).
            boxes: (N, 4) x1, y1, x2, y2 in frame pixels, or (N, 5) with a score column.

        Returns:
            (N, K, 3) float32: x, y in frame pixels and the heatmap score.
        """
        return self.path.infer_async(frame, boxes).result()

    def infer_async(self, frame, boxes, *, stage_hook: StageHook | None = None) -> PendingResult:
        """Enqueue one frame and return at once; `.result()` waits for its keypoints.

        On the GPU path the next frame's upload overlaps this frame's compute. On the CPU path the
        work runs now and the handle only holds the result. `stage_hook(name)` is called after each
        stage ("crop", "model", "decode" per engine batch; on the GPU also "upload" and "download",
        right after they were enqueued on `stream`): the benchmark's timing hook.
        """
        return self.path.infer_async(frame, boxes, stage_hook)

    def infer_many(self, frames: Sequence, boxes_per_frame: Sequence) -> list[np.ndarray]:
        """Keypoints for several frames at once, their crops sharing engine batches (a server's
        requests, a video's frames): the same as `[infer(f, b) for f, b in zip(...)]`, faster.

        Args:
            frames: a sequence of frames (as `infer`).
            boxes_per_frame: one (N_i, 4) or (N_i, 5) box array per frame (N_i may be 0).

        Returns:
            one (N_i, K, 3) float32 array per frame, in order.
        """
        frames, boxes_per_frame = list(frames), list(boxes_per_frame)
        if len(frames) != len(boxes_per_frame):
            raise ValueError(f"infer_many: {len(frames)} frames but {len(boxes_per_frame)} box arrays")
        return self.path.infer_many(frames, boxes_per_frame).result()

    def close(self) -> None:
        """Release the engine."""
        self.engine.close()

    def __enter__(self) -> VitPoseTRT:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

