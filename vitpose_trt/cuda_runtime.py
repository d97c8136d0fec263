"""The GPU path's device primitives, behind one seam: streams, events, memory, copies, kernels.

Every CUDA call made by the GPU path (`gpu_path.py`), the CUDA engines (`PyTorchEngine` on CUDA,
`TensorRTEngine`) and the CUDA array helpers (`cuda_memory.py`) goes through `runtime()`. In a
process that is `CudaRuntime`: PyTorch's CUDA streams, events and caching allocator (so TensorRT,
PyTorch and the kernels share one context and one allocator) and the extension's CUDA kernels.

The seam exists so that the orchestration runs where no GPU does. `use_runtime(other)` swaps in
another implementation of the same methods for a block of code; the test suite's CPU stand-in
(tests/standins/cuda.py: streams and events that record what waited for what, "device" memory
that is host memory, the CUDA kernels routed to their C++ CPU twins) runs the GPU path in CI and
checks it against the CPU path bit for bit. Nothing else swaps it.

Streams and events are whatever the runtime makes; the code above only uses the methods of
`Stream` and `Event` below (those of `torch.cuda.Stream` / `torch.cuda.Event`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, ContextManager, Protocol

from vitpose_trt import kernels
from vitpose_trt._lazy import lazy_module

if TYPE_CHECKING:
    import torch
else:  # lazy: crop and decode import this module, and they must not import torch
    torch = lazy_module("torch")



class Event(Protocol):
    def record(self, stream: Any = None) -> None: ...

    def synchronize(self) -> None: ...

    def query(self) -> bool: ...


class Stream(Protocol):
    @property
    def cuda_stream(self) -> int: ...

    def wait_stream(self, stream: Any) -> None: ...

    def wait_event(self, event: Any) -> None: ...

    def synchronize(self) -> None: ...


class CudaRuntime:
    """PyTorch's CUDA and `vitpose_trt._C`'s CUDA kernels. Methods take the `torch.device` they act on."""

    name = "cuda"

    # ---- devices ---------------------------------------------------------------------------

    def available(self) -> bool:
        return torch.cuda.is_available()

    def has_kernels(self) -> bool:
        """True when the extension has CUDA kernels and a GPU is visible."""
        return kernels.has_cuda_kernels()

    def device(self, spec: str | int | torch.device | None = None) -> torch.device:
        """The device for "cuda", "cuda:N", N or None (the current one), always with its index.

        Raises:
            RuntimeError: no GPU is visible. ValueError: not a CUDA device, or no such index.
        """
        if not self.available():
            raise RuntimeError("no CUDA GPU is visible to PyTorch (torch.cuda.is_available() is False: no GPU, "
                               "or a CPU-only torch build)")
        try:
            dev = torch.device("cuda", spec) if isinstance(spec, int) else torch.device(spec or "cuda")
        except (RuntimeError, TypeError) as e:
            raise ValueError(f"device: {e}") from None
        if dev.type != "cuda":
            raise ValueError(f"expected a CUDA device, got {dev}")
        if dev.index is None:  # "cuda" != "cuda:0" for torch.device equality: tensors always carry the index
            return torch.device("cuda", torch.cuda.current_device())
        if not 0 <= dev.index < torch.cuda.device_count():
            raise ValueError(f"{dev}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        return dev

    def describe(self, device: torch.device) -> tuple[str, str]:
        """(GPU name, compute capability "major.minor") of `device`."""
        major, minor = torch.cuda.get_device_capability(device)
        return torch.cuda.get_device_name(device), f"{major}.{minor}"

    def owns(self, tensor: torch.Tensor) -> bool:
        """True when `tensor` is device memory (of any device of this runtime)."""
        return tensor.device.type == "cuda"

    # ---- streams and events ----------------------------------------------------------------

    def stream(self, device: torch.device) -> Stream:
        return torch.cuda.Stream(device)

    def event(self) -> Event:
        return torch.cuda.Event()

    def current_stream(self, device: torch.device) -> Stream:
        return torch.cuda.current_stream(device)

    def use(self, stream: Any) -> ContextManager[Any]:
        """Make `stream` (and its device) current for the block: kernels, copies and PyTorch ops in it
        are enqueued there."""
        return torch.cuda.stream(stream)

    def external_stream(self, handle: int, device: torch.device) -> Stream:
        """A stream made elsewhere, by its cudaStream_t (1: the legacy default stream)."""
        if handle == 1:
            return torch.cuda.default_stream(device)
        return torch.cuda.ExternalStream(handle, device=device)

    def synchronize(self, device: torch.device) -> None:
        """Wait on the host until all work queued on `device` is done."""
        torch.cuda.synchronize(device)

    # ---- memory ------------------------------------------------------------------------------

    def empty(self, shape: Sequence[int], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """Uninitialized device memory (PyTorch's caching allocator, on the current stream)."""
        return torch.empty(tuple(shape), dtype=dtype, device=device)

    def empty_pinned(self, shape: Sequence[int], dtype: torch.dtype) -> torch.Tensor:
        """Uninitialized page-locked host memory: asynchronous copies to and from it."""
        return torch.empty(tuple(shape), dtype=dtype, pin_memory=True)

    def copy(self, dst: torch.Tensor, src: torch.Tensor) -> None:
        """dst[...] = src, enqueued on the current stream; asynchronous where host memory is pinned."""
        dst.copy_(src, non_blocking=True)

    def record_stream(self, tensor: torch.Tensor, stream: Any) -> None:
        """Keep `tensor`'s block alive until the work queued on `stream` so far is done."""
        tensor.record_stream(stream)

    def host_uses(self, tensor: torch.Tensor, write: bool) -> None:
        """The host is about to read (or write) pinned `tensor` directly. Nothing to do on a GPU:
        the caller has already waited for the queued copies that use it (the stand-in checks that)."""

    def as_tensor(self, array: Any) -> torch.Tensor:
        """An object with `__cuda_array_interface__` as a tensor over the same memory, on the device
        the memory is on (no copy: `torch.as_tensor` with a device would copy across GPUs)."""
        return torch.as_tensor(array)

    # ---- kernels (on the current stream) -------------------------------------------------------

    def warp(self, frame: torch.Tensor, inv: torch.Tensor, out: torch.Tensor, flip: bool, *,
             normalize: str = "imagenet", letterbox: tuple[int, int, int, int, int] | None = None) -> None:
        kernels.warp(frame, inv, out, flip, normalize=normalize, letterbox=letterbox)

    def decode(self, heatmaps: torch.Tensor, transforms: torch.Tensor, out: torch.Tensor, mode: str,
               flipped: torch.Tensor | None = None, flip_index: torch.Tensor | None = None) -> None:
        kernels.decode(heatmaps, transforms, out, mode, flipped, flip_index)


_runtime: CudaRuntime = CudaRuntime()


def runtime() -> CudaRuntime:
    """The device primitives in use (the real CUDA ones, unless a test swapped in its stand-in)."""
    return _runtime


def default_device() -> str:
    """Where a model runs when the caller names no device: "cuda" where a GPU is visible, else "cpu"."""
    return "cuda" if _runtime.available() else "cpu"


@contextlib.contextmanager
def use_runtime(other: CudaRuntime) -> Iterator[CudaRuntime]:
    """Run the block with `other` as the runtime (the test suite's CPU stand-in); restores the previous one."""
    global _runtime
    previous, _runtime = _runtime, other
    try:
        yield other
    finally:
        _runtime = previous
