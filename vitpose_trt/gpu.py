"""CUDA memory helpers for the GPU pipeline. Memory and streams come from PyTorch, so the engine
(TensorRT or PyTorch) and the kernels share one CUDA primary context and one caching allocator."""

from __future__ import annotations

import numpy as np
import torch


def as_cuda_frame(frame, device: torch.device | str = "cuda") -> torch.Tensor:
    """A (H, W, 3) uint8 CUDA tensor for `frame`.

    A numpy frame is copied up (synchronously; the pipeline uses `FrameUploader` instead); a CUDA
    array (torch tensor, CuPy, anything with `__cuda_array_interface__`) is used in place.
    """
    if isinstance(frame, np.ndarray):
        from vitpose_trt.geometry import check_frame

        return torch.from_numpy(np.ascontiguousarray(check_frame(frame))).to(device)
    if isinstance(frame, torch.Tensor) or hasattr(frame, "__cuda_array_interface__"):
        t = frame if isinstance(frame, torch.Tensor) else torch.as_tensor(frame, device="cuda")
        if t.device.type != "cuda":
            raise ValueError(f"frame: expected a CUDA tensor or a numpy array, got a tensor on {t.device}")
        want = torch.device(device)
        if want.index is not None and t.device != want:
            raise ValueError(f"frame: is on {t.device} but the engine runs on {want}")
        if t.ndim != 3 or t.shape[2] != 3 or t.dtype != torch.uint8:
            raise ValueError(f"frame: expected (H, W, 3) uint8, got {tuple(t.shape)} {t.dtype}")
        if t.shape[0] < 1 or t.shape[1] < 1:
            raise ValueError(f"frame is empty: shape {tuple(t.shape)}")
        if t.stride(2) != 1 or t.stride(1) != 3:
            t = t.contiguous()  # rows may be padded; pixels must be packed BGR
        return t
    raise TypeError(f"frame must be a numpy array or a CUDA array, got {type(frame).__name__}")


class GrowBuffer:
    """A flat tensor that is allocated once and grows (never shrinks) to the largest request."""

    def __init__(self, dtype: torch.dtype, device: str | torch.device, pin_memory: bool = False) -> None:
        self.dtype, self.device, self.pin = dtype, torch.device(device), pin_memory
        self.data = torch.empty(0, dtype=dtype, device=self.device, pin_memory=pin_memory)

    def get(self, *shape: int) -> torch.Tensor:
        n = int(np.prod(shape)) if shape else 0
        if n > self.data.numel():
            if self.device.type == "cuda" or self.pin:
                # Work queued on other streams may still read the old block; once freed, the caching
                # allocator could hand it out again. Growth is rare: wait for the device.
                torch.cuda.synchronize()
            self.data = torch.empty(max(n, 2 * self.data.numel()), dtype=self.dtype, device=self.device,
                                    pin_memory=self.pin)
        return self.data[:n].view(shape)
