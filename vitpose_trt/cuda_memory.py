"""CUDA memory for the GPU path: arrays from other libraries, and buffers that grow.

Everything goes through `cuda_runtime.runtime()` (PyTorch's CUDA in a process; the test suite's
CPU stand-in in CI).

Arrays made by other libraries (CuPy, Numba, anything with `__cuda_array_interface__` version 3)
may name the stream their producer is still writing them on (the interface's "stream" key). That
key is read once per array (`device_array`), and the consumer's stream waits for the producer's
before reading (`as_cuda_frame`, `GpuPath`). A torch tensor carries no such key: PyTorch's rule is
that work queued on the current stream sees it. Such arrays are wrapped, never copied: one on
another GPU than the engine's is an error, not a silent peer copy.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from vitpose_trt.cuda_runtime import Stream, runtime
from vitpose_trt.geometry import check_frame


def producer_stream(interface_stream: Any, device: torch.device) -> Stream | None:
    """The stream a `__cuda_array_interface__` producer says its data is being written on.

    The interface's "stream" value: absent/None = no synchronization needed, 1 = the legacy
    default stream, 2 = the per-thread default stream (as CUDA resolves `cudaStreamPerThread`: the
    calling thread's, which is the producing thread's when, as usual, the producer calls us; the
    extension's kernels read it the same way), any other integer = a cudaStream_t (0 is
    disallowed by the protocol).
    """
    if interface_stream is None:
        return None
    if isinstance(interface_stream, bool) or not isinstance(interface_stream, int):
        raise ValueError(f"__cuda_array_interface__ 'stream' must be None or an int, got {interface_stream!r}")
    if interface_stream == 0:
        raise ValueError("__cuda_array_interface__ 'stream' is 0, which the protocol disallows")
    if interface_stream < 0:
        raise ValueError(f"__cuda_array_interface__ 'stream' must be a stream handle, got {interface_stream}")
    return runtime().external_stream(interface_stream, device)


def device_array(array: Any, device: torch.device | None = None, name: str = "frame",
                 ) -> tuple[torch.Tensor, Stream | None]:
    """A device array as a tensor over the same memory, and its producer's stream (or None).

    Args:
        array: a torch tensor in device memory, or any object with `__cuda_array_interface__`
            (its memory is only read: a read-only interface is accepted).
        device: where it must be (None: any device of the runtime).
        name: the argument's name, for errors.

    Raises:
        TypeError: not a device array. ValueError: on another device, or a bad interface "stream".
    """
    rt = runtime()
    interface = None if isinstance(array, torch.Tensor) else getattr(array, "__cuda_array_interface__", None)
    if isinstance(array, torch.Tensor):
        if not rt.owns(array):
            raise ValueError(f"{name}: expected a CUDA tensor or a numpy array, got a tensor on {array.device}")
        tensor, producer = array, None
    elif isinstance(interface, dict):  # read once: a property may compute it afresh (and synchronize)
        tensor = rt.as_tensor(_Interface(interface))  # on the array's own device: never a copy
        try:
            producer = producer_stream(interface.get("stream"), tensor.device)
        except ValueError as e:
            raise ValueError(f"{name}: {e}") from None
    else:
        raise TypeError(f"{name} must be a numpy array or a CUDA array, got {type(array).__name__}")
    if device is not None and tensor.device != device:
        raise ValueError(f"{name}: is on {tensor.device} but the engine runs on {device}")
    return tensor, producer


class _Interface:
    """An array interface read once, handed on as it was read. Marked writable: PyTorch refuses
    read-only interfaces, and the package only reads these arrays."""

    def __init__(self, interface: dict) -> None:
        data = interface.get("data")
        if isinstance(data, (tuple, list)) and len(data) == 2:
            interface = {**interface, "data": (data[0], False)}
        self.__cuda_array_interface__ = interface


def as_cuda_frame(frame: Any, device: torch.device | None = None) -> torch.Tensor:
    """A (H, W, 3) uint8 device tensor for `frame`, usable on the current stream.

    A numpy frame is copied up (synchronously). A device array is used in place (any strides);
    when its producer names a stream, the current stream first waits for it. Either is checked by
    `geometry.check_frame`.
    """
    rt = runtime()
    if isinstance(frame, np.ndarray):
        frame = check_frame(frame)
        target = device if device is not None else rt.device(None)
        out = rt.empty(frame.shape, torch.uint8, target)
        rt.copy(out, torch.from_numpy(np.ascontiguousarray(frame)))
        return out
    tensor, producer = device_array(frame, device)
    if producer is not None:
        rt.current_stream(tensor.device).wait_stream(producer)
    return check_frame(tensor, on_device=True)


class GrowBuffer:
    """A flat tensor that is allocated once and grows (never shrinks) to the largest request.

    Device buffers: `get(..., stream=s)` marks the block as used by `s` (`record_stream`), so a
    block released on growth is not reused while work queued on `s` may still read it; without a
    stream, growth waits for the device. Pinned host buffers grow without waiting: their users
    reuse one only after the copies that read it have finished (the GPU path's slots).
    """

    def __init__(self, dtype: torch.dtype, device: torch.device | None, pinned: bool = False) -> None:
        if (device is None) != pinned:
            raise ValueError("GrowBuffer: give a device, or pinned=True for page-locked host memory")
        self.dtype, self.device, self.pinned = dtype, device, pinned
        self.data: torch.Tensor | None = None
        self.cuda = runtime()  # kept: the memory belongs to this runtime

    def get(self, *shape: int, stream: Stream | None = None) -> torch.Tensor:
        """A view of `shape` (contiguous)."""
        rt = self.cuda
        n = int(np.prod(shape)) if shape else 0
        size = 0 if self.data is None else self.data.numel()
        if self.data is None or n > size:
            if self.data is not None and self.device is not None and stream is None:
                rt.synchronize(self.device)  # work on other streams may still read the old block
            size = max(n, 2 * size)
            self.data = (rt.empty_pinned((size,), self.dtype) if self.device is None
                         else rt.empty((size,), self.dtype, self.device))
        if stream is not None and self.device is not None:
            rt.record_stream(self.data, stream)
        return self.data[:n].view(shape)
