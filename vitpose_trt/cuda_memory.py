"""CUDA memory for the GPU path: frames from other libraries, and buffers that grow.

Memory and streams come from PyTorch, so the engine (TensorRT or PyTorch) and the kernels share
one CUDA primary context and one caching allocator.
"""

from __future__ import annotations

import numpy as np
import torch

from vitpose_trt.geometry import check_frame


def producer_stream(frame, device: torch.device) -> torch.cuda.Stream | None:
    """The stream a `__cuda_array_interface__` (v3) producer says its data is being written on.

    The interface's "stream" key: absent/None = no synchronization needed, 1 = the legacy default
    stream, 2 = the per-thread default stream, any other integer = a cudaStream_t.
    """
    cai = getattr(frame, "__cuda_array_interface__", None)
    stream = cai.get("stream") if isinstance(cai, dict) else None
    if stream is None:
        return None
    if stream == 0:
        raise ValueError("frame: __cuda_array_interface__ 'stream' is 0, which the protocol disallows")
    if stream == 1:
        return torch.cuda.default_stream(device)
    if stream == 2:  # the producing thread's per-thread default stream: not nameable from here
        torch.cuda.synchronize(device)
        return None
    return torch.cuda.ExternalStream(int(stream), device=device)


def as_cuda_frame(frame, device: torch.device | str = "cuda") -> torch.Tensor:
    """A (H, W, 3) uint8 CUDA tensor for `frame`, usable on the current stream.

    A numpy frame is copied up (synchronously). A CUDA array (torch tensor, CuPy, anything with
    `__cuda_array_interface__`) is used in place; when its producer names a stream (interface v3),
    the current stream first waits for it, so a frame still being written is never read early
    (`producer_stream` gives that stream, for making it wait in turn once the frame is read).
    Any strides are accepted (one contiguous copy where pixels are not packed BGR).
    """
    if isinstance(frame, np.ndarray):
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
        if not isinstance(frame, torch.Tensor):
            producer = producer_stream(frame, t.device)
            if producer is not None:
                torch.cuda.current_stream(t.device).wait_stream(producer)
        if t.stride(2) != 1 or t.stride(1) != 3 or t.stride(0) < 3 * t.shape[1]:
            t = t.contiguous()  # rows may be padded; pixels must be packed BGR
        return t
    raise TypeError(f"frame must be a numpy array or a CUDA array, got {type(frame).__name__}")


class GrowBuffer:
    """A flat tensor that is allocated once and grows (never shrinks) to the largest request."""

    def __init__(self, dtype: torch.dtype, device: str | torch.device, pin_memory: bool = False) -> None:
        self.dtype, self.device, self.pin = dtype, torch.device(device), pin_memory
        self.data = torch.empty(0, dtype=dtype, device=self.device, pin_memory=pin_memory)

    def get(self, *shape: int, stream: torch.cuda.Stream | None = None) -> torch.Tensor:
        """A view of `shape`. On growth the old block is released; when `stream` is given, work
        queued on it keeps the new block alive until done (`record_stream`), otherwise growth waits
        for the device, since work on other streams may still read the old block."""
        n = int(np.prod(shape)) if shape else 0
        if n > self.data.numel():
            if (self.device.type == "cuda" or self.pin) and stream is None:
                torch.cuda.synchronize()
            self.data = torch.empty(max(n, 2 * self.data.numel()), dtype=self.dtype, device=self.device,
                                    pin_memory=self.pin)
        if stream is not None and self.device.type == "cuda":
            self.data.record_stream(stream)
        return self.data[:n].view(shape)
