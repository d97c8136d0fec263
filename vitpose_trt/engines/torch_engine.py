"""PyTorch engine: the readable model itself, on the CPU (FP32) or a CUDA GPU (FP16 or FP32)."""

from __future__ import annotations

import numpy as np
import torch

from vitpose_trt.engines.base import Engine, check_max_batch

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
        max_batch: most crops per forward pass (default: `DEFAULT_MAX_BATCH` for the device).
    """

    name = "pytorch"

    def __init__(self, model: torch.nn.Module, device: str = "cpu", precision: str = "fp32",
                 max_batch: int | None = None) -> None:
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if precision not in _DTYPES:
            raise ValueError(f"precision must be 'fp32' or 'fp16', got {precision!r}")
        try:
            self.torch_device = torch.device(device)
        except (RuntimeError, TypeError) as e:
            raise ValueError(f"device: {e}") from None
        if self.torch_device.type not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda[:N]', got {device!r}")
        if self.torch_device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"device={device!r} but no CUDA GPU is visible to PyTorch "
                               "(torch.cuda.is_available() is False: no GPU, or a CPU-only torch build)")
        if self.torch_device.type == "cuda" and self.torch_device.index is None:
            # "cuda" != "cuda:0" for torch.device equality: tensors always carry the index
            self.torch_device = torch.device("cuda", torch.cuda.current_device())
        if self.torch_device.type == "cpu" and precision == "fp16":
            raise ValueError("fp16 needs a CUDA device; use precision='fp32' on the CPU")
        self.device = self.torch_device.type
        if self.device == "cpu":
            self.torch_device = None
        self.precision = precision
        self.dtype = _DTYPES[precision]
        self.input_dtype = self.dtype if self.device == "cuda" else None
        self.max_batch = check_max_batch(max_batch, self.device)
        self.model = model.eval().to(self.torch_device or "cpu", self.dtype)
        config = getattr(model, "config", None)
        if config is not None:
            self.num_keypoints = int(config.num_keypoints)
            self.input_size = tuple(config.input_size)
        self.random_weights = bool(getattr(model, "random_weights", False))

    @torch.inference_mode()
    def _run(self, crops: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(crops).to(self.torch_device or "cpu", self.dtype)
        return self.model(x).float().cpu().numpy()

    @torch.inference_mode()
    def _run_cuda(self, crops: torch.Tensor, stream: torch.cuda.Stream) -> torch.Tensor:
        with torch.cuda.stream(stream):
            return self.model(crops)
