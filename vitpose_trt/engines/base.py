"""The engine interface shared by every backend (PyTorch, ONNX Runtime, TensorRT).

Pre- and post-processing never live here: an engine only maps crops to heatmaps.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch


class Engine(ABC):
    """A batch of normalized RGB crops (N, 3, H, W) in, heatmaps (N, K, H/4, W/4) out.

    Attributes:
        name: short backend name for logs and benchmark tables ("pytorch", "onnxruntime", "tensorrt").
        device: "cpu" or "cuda": where `run_cuda` (device) or `run` (host) is the natural path.
        num_keypoints: K.
        input_size: (H, W) of a crop, (256, 192) for the released ViTPose models.
        max_batch: largest batch one call accepts (None: unlimited). The pipeline chunks above it.
        random_weights: True when the weights are the fixed-seed random ones (benchmarks, tests).
        precision: "fp32" or "fp16": the dtype of the input the engine wants on the device path.

    CUDA engines also have `torch_device` (the torch.device they run on) and `input_dtype` (the
    torch dtype `run_cuda` takes): the GPU pipeline allocates the crops with them.
    """

    name: str = "engine"
    device: str = "cpu"
    num_keypoints: int = 17
    input_size: tuple[int, int] = (256, 192)
    max_batch: int | None = None
    random_weights: bool = False
    precision: str = "fp32"

    @property
    def heatmap_size(self) -> tuple[int, int]:
        return (self.input_size[0] // 4, self.input_size[1] // 4)

    @abstractmethod
    def run(self, crops: np.ndarray) -> np.ndarray:
        """Host path: (N, 3, H, W) float32 numpy -> (N, K, H/4, W/4) float32 numpy."""

    def run_cuda(self, crops: torch.Tensor, stream: torch.cuda.Stream) -> torch.Tensor:
        """Device path: a contiguous CUDA tensor of crops -> a CUDA tensor of heatmaps.

        The work is enqueued on `stream` and not synchronized. The crops tensor has the dtype that
        `precision` names; the returned heatmaps may be float16 or float32 and stay valid until
        the next call.
        """
        raise NotImplementedError(f"the {self.name} engine has no CUDA device path")

    def describe(self) -> str:
        weights = ", RANDOM WEIGHTS (not a trained model)" if self.random_weights else ""
        return f"{self.name} on {self.device} ({self.precision}, K={self.num_keypoints}{weights})"
