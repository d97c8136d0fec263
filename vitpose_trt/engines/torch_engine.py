"""PyTorch engine: the readable model itself, on the CPU (FP32) or a CUDA GPU (FP16 or FP32)."""

from __future__ import annotations

import numpy as np
import torch

from vitpose_trt.engines.base import Engine

_DTYPES = {"fp32": torch.float32, "fp16": torch.float16}


class TorchEngine(Engine):
    """Runs a `ViTPose` nn.Module.

    Args:
        model: the model (any nn.Module mapping (N, 3, H, W) crops to (N, K, H/4, W/4) heatmaps).
            It is moved and cast in place (no copy: a ViT-H is 2.5 GB); pass a copy to keep yours.
        device: "cpu" or "cuda" (or "cuda:1").
        precision: "fp32" or "fp16". FP16 casts the weights (PyTorch's LayerNorm and softmax
            kernels accumulate in FP32 internally, so the overflow that hurts FP16 TensorRT
            engines does not arise here).
    """

    name = "pytorch"

    def __init__(self, model: torch.nn.Module, device: str = "cpu", precision: str = "fp32") -> None:
        if precision not in _DTYPES:
            raise ValueError(f"precision must be 'fp32' or 'fp16', got {precision!r}")
        self.torch_device = torch.device(device)
        if self.torch_device.type == "cpu" and precision == "fp16":
            raise ValueError("fp16 needs a CUDA device; use precision='fp32' on the CPU")
        self.device = self.torch_device.type
        self.precision = precision
        self.dtype = self.input_dtype = _DTYPES[precision]
        self.model = model.eval().to(self.torch_device, self.dtype)
        config = getattr(model, "config", None)
        if config is not None:
            self.num_keypoints = int(config.num_keypoints)
            self.input_size = tuple(config.input_size)
        self.random_weights = bool(getattr(model, "random_weights", False))

    @torch.inference_mode()
    def run(self, crops: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(crops, dtype=np.float32)).to(self.torch_device, self.dtype)
        return self.model(x).float().cpu().numpy()

    @torch.inference_mode()
    def run_cuda(self, crops: torch.Tensor, stream: torch.cuda.Stream) -> torch.Tensor:
        if crops.device.type != "cuda" or crops.dtype != self.dtype:
            raise ValueError(f"crops: expected a CUDA {self.dtype} tensor, got {crops.device} {crops.dtype}")
        with torch.cuda.stream(stream):
            return self.model(crops)
