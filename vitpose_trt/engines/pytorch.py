"""PyTorch engine: the readable model itself, on the CPU (FP32) or a CUDA GPU (FP16 or FP32)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch

from vitpose_trt.cuda_runtime import Stream, runtime
from vitpose_trt.engines.base import Engine, check_max_batch, check_threads

_DTYPES = {"fp32": torch.float32, "fp16": torch.float16}


class PyTorchEngine(Engine):
    """Runs a `ViTPose` nn.Module.

    Args:
        model: the model (any nn.Module mapping (N, 3, H, W) crops to (N, K, H/4, W/4) heatmaps).
            It is moved and cast in place (no copy: a ViT-H is 2.5 GB); pass a copy to keep yours.
        device: "cpu" or "cuda" (or "cuda:1").
        precision: "fp32" or "fp16". FP16 casts the weights (PyTorch's LayerNorm and softmax
            kernels accumulate in FP32 internally, so the overflow that hurts FP16 TensorRT
            engines does not arise here).
        max_batch: most crops per forward pass (default: `DEFAULT_MAX_BATCH` for the device).
        threads: PyTorch's CPU threads while a CPU model runs (None: PyTorch's setting); set for each
            run and restored after (`torch_threads`), so the caller's own setting is left as it was.
    """

    name = "pytorch"

    def __init__(self, model: torch.nn.Module, device: str = "cpu", precision: str = "fp32",
                 max_batch: int | None = None, threads: int | None = None) -> None:
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if precision not in _DTYPES:
            raise ValueError(f"precision must be 'fp32' or 'fp16', got {precision!r}")
        try:
            kind = torch.device(device).type
        except (RuntimeError, TypeError) as e:
            raise ValueError(f"device: {e}") from None
        if kind not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda[:N]', got {device!r}")
        if kind == "cpu" and precision == "fp16":
            raise ValueError("fp16 needs a CUDA device; use precision='fp32' on the CPU")
        self.device = kind
        # a CUDA engine's device comes from the CUDA runtime (with its index; RuntimeError without a GPU)
        self.cuda = runtime()  # kept: the engine's streams belong to this runtime
        self.torch_device = self.cuda.device(device) if kind == "cuda" else None
        self.precision = precision
        self.dtype = _DTYPES[precision]
        self.input_dtype = self.dtype if self.device == "cuda" else None
        self.max_batch = check_max_batch(max_batch, self.device)
        self.threads = check_threads(threads) if kind == "cpu" else None
        self.model = model.eval().to(self.torch_device or "cpu", self.dtype)
        config = getattr(model, "config", None)
        if config is not None:
            self.num_keypoints = int(config.num_keypoints)
            self.input_size = tuple(config.input_size)
        self.random_weights = bool(getattr(model, "random_weights", False))

    @torch.inference_mode()
    def _run(self, crops: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(crops).to(self.torch_device or "cpu", self.dtype)
        with torch_threads(self.threads):
            return self.model(x).float().cpu().numpy()

    @torch.inference_mode()
    def _run_cuda(self, crops: torch.Tensor, stream: Stream) -> torch.Tensor:
        with self.cuda.use(stream):
            # .contiguous(): the patch tokens are reshaped to a feature map by a transposing view, and
            # the decoder's convolutions keep its channels-last strides; the decode kernel reads NCHW
            return self.model(crops).contiguous()


@contextlib.contextmanager
def exact_fp32() -> Iterator[None]:
    """FP32 that is FP32 on a GPU for the block: no TF32 in cuBLAS matmuls or cuDNN convolutions.

    PyTorch lets cuDNN convolutions use TF32 by default (inputs rounded to 10 mantissa bits), so an
    "FP32" reference on a GPU is not FP32 without this. The flags are process-wide: for references
    and benchmarks run from one thread, not for serving.
    """
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """PyTorch's CPU thread count set to `threads` (None: left as is) for the block, then restored:
    a library called from a program must not change the program's setting."""
    threads = check_threads(threads)
    saved = torch.get_num_threads()
    if threads is not None and threads != saved:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if torch.get_num_threads() != saved:
            torch.set_num_threads(saved)
