"""The engine interfaces shared by every backend (PyTorch, ONNX Runtime, TensorRT).

`Engine` is the pose model's: crops in, heatmaps out. Pre- and post-processing never live here.
As in Polygraphy's runners, the public methods check their input and then call the backend's
`_run` / `_run_cuda`, so every backend refuses bad input with the same message.

`Graph` is any other model file run as it is (a person detector): named tensors in, named
tensors out, on ONNX Runtime (`engines.onnxruntime.OnnxRuntimeGraph`) or TensorRT
(`engines.tensorrt.TensorRTPlan`, which the pose model's TensorRT engine runs on too).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from vitpose_trt.batching import chunks

if TYPE_CHECKING:
    import torch

    from vitpose_trt.cuda_runtime import Stream

# Most crops per engine call when the backend sets no limit of its own: memory grows with the batch
# (measured on the CPU: ~6.6 MiB per ViTPose-B crop in PyTorch), so a crowd scene or a detector gone
# wrong runs in bounded chunks. On the GPU 64 keeps the tensor cores busy (and is the TensorRT
# builder's default profile maximum). Override per engine with `max_batch=`.
DEFAULT_MAX_BATCH = {"cpu": 16, "cuda": 64}


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of a graph.

    Attributes:
        name: the tensor's name in the graph (the ONNX name; TensorRT keeps it).
        shape: its dimensions, None where they vary at run time.
        dtype: numpy dtype (float32, float16, int32, int64, bool).
    """

    name: str
    shape: tuple[int | None, ...]
    dtype: np.dtype


class Graph(Protocol):
    """A model file run as it is: `run({name: array}) -> [array per output]` on the host.

    Attributes:
        name: the runner ("onnxruntime", "tensorrt").
        path: the file.
        inputs / outputs: their `TensorSpec`s, in the graph's order (`run` returns that order).
        metadata: the ONNX graph's metadata_props (a TensorRT plan: those of the ONNX graph it was
            built from, as its sidecar records them).
        sidecar: a TensorRT plan's sidecar ({} for an ONNX graph, or a plan without one).
        providers: where it runs (ONNX Runtime's providers in order; ["TensorRT"] for a plan).
    """

    name: str
    path: Path
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    metadata: dict[str, str]
    sidecar: dict[str, Any]
    providers: list[str]

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]: ...

    def close(self) -> None: ...


class Engine(ABC):
    """A batch of normalized RGB crops (N, 3, H, W) in, heatmaps (N, K, H/4, W/4) out.

    Attributes:
        name: short backend name for logs and benchmark tables ("pytorch", "onnxruntime", "tensorrt").
        device: "cpu" or "cuda": where `run_cuda` (device) or `run` (host) is the natural path.
        torch_device: the torch.device a CUDA engine runs on (None on the CPU).
        input_dtype: the torch dtype `run_cuda` takes (None on the CPU, where `run` takes float32).
        num_keypoints: K.
        input_size: (H, W) of a crop, (256, 192) for the released ViTPose models.
        max_batch: most crops one call runs at once; `run` chunks above it, `run_cuda` refuses.
        mode: the pipeline ("udp"/"classic") the engine was built for, where it records one.
        random_weights: True when the weights are the fixed-seed random ones (benchmarks, tests).
        precision: "fp32" or "fp16".
        dataset: the keypoint dataset the model records (`vitpose_trt.datasets` name), None when it
            records none (`VitPoseTRT` then names it from K or from its `dataset=`).

    Engines are context managers: `with open_engine(path) as engine: ...` releases them.
    """

    name: str = "engine"
    device: str = "cpu"
    torch_device: torch.device | None = None
    input_dtype: Any = None
    num_keypoints: int = 17
    input_size: tuple[int, int] = (256, 192)
    max_batch: int = DEFAULT_MAX_BATCH["cpu"]
    mode: str | None = None
    random_weights: bool = False
    precision: str = "fp32"
    dataset: str | None = None

    @property
    def heatmap_size(self) -> tuple[int, int]:
        return (self.input_size[0] // 4, self.input_size[1] // 4)

    def run(self, crops: np.ndarray) -> np.ndarray:
        """Host path: (N, 3, H, W) float32 numpy -> (N, K, h, w) float32 numpy, in chunks of `max_batch`."""
        h, w = self.input_size
        if not isinstance(crops, np.ndarray):
            raise TypeError(f"crops must be a numpy array (N, 3, {h}, {w}), got {type(crops).__name__}")
        if crops.ndim != 4 or crops.shape[1:] != (3, h, w):
            raise ValueError(f"crops: expected (N, 3, {h}, {w}), got {crops.shape}")
        if crops.dtype != np.float32:
            raise ValueError(f"crops: expected float32, got {crops.dtype} (no implicit casts)")
        k, (hh, hw) = self.num_keypoints, self.heatmap_size
        out = np.empty((len(crops), k, hh, hw), dtype=np.float32)
        for lo, hi in chunks(len(crops), self.max_batch):
            out[lo:hi] = self._run(np.ascontiguousarray(crops[lo:hi]))
        return out

    def run_cuda(self, crops: torch.Tensor, stream: Stream) -> torch.Tensor:
        """Device path: a contiguous CUDA batch of crops -> a CUDA tensor of heatmaps.

        The work is enqueued on `stream` and not synchronized. The crops have `input_dtype` and at
        most `max_batch` rows; the returned heatmaps are a C-contiguous (N, K, h, w) float16 or
        float32 tensor (the decode kernel reads dense memory), valid until the next call.
        """
        if self.device != "cuda":
            raise NotImplementedError(f"the {self.name} engine runs on the CPU: it has no CUDA device path")
        h, w = self.input_size
        if crops.device != self.torch_device:
            raise ValueError(f"crops: expected a tensor on {self.torch_device}, got {crops.device}")
        if crops.dtype != self.input_dtype:
            raise ValueError(f"crops: the engine takes {self.input_dtype}, got {crops.dtype} (no implicit casts)")
        if crops.ndim != 4 or tuple(crops.shape[1:]) != (3, h, w):
            raise ValueError(f"crops: expected (N, 3, {h}, {w}), got {tuple(crops.shape)}")
        if not crops.is_contiguous():
            raise ValueError("crops: expected a contiguous tensor (engines read dense NCHW memory)")
        if not 1 <= crops.shape[0] <= self.max_batch:
            raise ValueError(f"crops: batch {crops.shape[0]} is outside [1, {self.max_batch}]: chunk by `max_batch`")
        heatmaps = self._run_cuda(crops, stream)
        want = (crops.shape[0], self.num_keypoints, *self.heatmap_size)
        if tuple(heatmaps.shape) != want or not heatmaps.is_contiguous():
            raise RuntimeError(f"the {self.name} engine returned heatmaps of shape {tuple(heatmaps.shape)}, strides "
                               f"{heatmaps.stride()}: expected a C-contiguous {want}")
        return heatmaps

    @abstractmethod
    def _run(self, crops: np.ndarray) -> np.ndarray:
        """One checked, contiguous float32 batch of at most `max_batch` crops -> float32 heatmaps."""

    def _run_cuda(self, crops: torch.Tensor, stream: Stream) -> torch.Tensor:
        raise NotImplementedError(f"the {self.name} engine has no CUDA device path")

    def close(self) -> None:
        """Release what the engine holds (sessions, GPU memory). Idempotent."""

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def describe(self) -> str:
        weights = ", RANDOM WEIGHTS (not a trained model)" if self.random_weights else ""
        return (f"{self.name} on {self.device} ({self.precision}, K={self.num_keypoints}, "
                f"max batch {self.max_batch}{weights})")


def check_threads(threads: int | None) -> int | None:
    """A CPU thread count as given (None: the library's default, one per core), or ValueError.

    The one check of every `threads=` argument (the pipeline, the ONNX Runtime engines, PyTorch's
    thread count in the benchmarks): a positive integer, not a bool.
    """
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    return int(threads)


def check_max_batch(max_batch: int | None, device: str) -> int:
    """The batch bound an engine uses: `max_batch` when given, else the device's default."""
    if max_batch is None:
        return DEFAULT_MAX_BATCH[device]
    if isinstance(max_batch, bool) or not isinstance(max_batch, (int, np.integer)) or max_batch < 1:
        raise ValueError(f"max_batch must be a positive integer, got {max_batch!r}")
    return int(max_batch)
