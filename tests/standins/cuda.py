"""A CPU stand-in for `vitpose_trt.cuda_runtime.CudaRuntime`: the GPU path's orchestration, run in CI.

What it replaces, and how:
    device memory   host memory this stand-in allocated (CPU tensors), recognized by address;
    pinned memory   host memory it allocated as "pinned"; any other host memory is pageable;
    streams, events bookkeeping: each stream keeps a vector clock, so whether one operation is
                    ordered before another on a real GPU (by stream order, `wait_event`,
                    `wait_stream`) can be asked after the fact (`happens_before`);
    kernels         `warp_cuda` / `decode_cuda` run as their C++ CPU twins (`warp_cpu`,
                    `decode_cpu`: the same argument checks, the same arithmetic), on numpy views of
                    the "device" tensors; device pointers are checked as the CUDA binding does.
Work runs at once, in program order, so results equal what a GPU computes when every ordering the
code relies on is real. That is what the stand-in checks as it goes:
    races           two accesses to device or pinned memory from different streams (the host
                    counts as one, through `host_uses`), one of them a write, not ordered by the
                    streams' events or the host's synchronizations (`races`);
    allocator       a device block used on a stream other than the one it was allocated on,
                    without `record_stream` for that stream (`races` too: the caching allocator
                    could hand the block out again while that stream still reads it);
    host syncs      event / stream / device synchronizations and copies that involve pageable
                    host memory (`syncs`: the host waits there on a real GPU); work enqueued after
                    a synchronization is ordered after what the host waited for.
Every device operation is logged (`ops`) with the stream it was enqueued on.
"""

from __future__ import annotations

import contextlib
import ctypes
import threading
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from vitpose_trt import kernels
from vitpose_trt.cuda_runtime import CudaRuntime

DEVICE = torch.device("cpu")  # where the stand-in's "device" tensors live
_TYPESTR = {"|u1": np.uint8, "<i4": np.int32, "<f2": np.float16, "<f4": np.float32, "<f8": np.float64}
MAX_ACCESSES = 256  # remembered per block, newest kept
HOST = -1  # the host's entry in the clocks: its direct reads and writes of pinned memory


class StandInEvent:
    def __init__(self, rt: CudaStandIn) -> None:
        self.rt = rt
        self.clock: dict[int, int] | None = None  # the recording stream's clock; None: never recorded

    def record(self, stream: Any = None) -> None:
        stream = stream if stream is not None else self.rt.current_stream(DEVICE)
        self.clock = dict(stream.clock)

    def synchronize(self) -> None:
        self.rt.host_waits("event", self.clock or {})

    def query(self) -> bool:
        return True


class StandInStream:
    def __init__(self, rt: CudaStandIn, handle: int, label: str) -> None:
        self.rt, self.handle, self.label = rt, handle, label
        self.clock: dict[int, int] = {handle: 0}

    @property
    def cuda_stream(self) -> int:
        return self.handle

    def wait_event(self, event: StandInEvent) -> None:
        if event.clock is not None:  # CUDA: waiting for an event never recorded is a no-op
            _merge(self.clock, event.clock)

    def wait_stream(self, stream: StandInStream) -> None:
        _merge(self.clock, stream.clock)

    def synchronize(self) -> None:
        self.rt.host_waits(f"stream {self.label}", self.clock)

    def __repr__(self) -> str:
        return f"<stream {self.label}>"


@dataclass
class Op:
    """One operation enqueued on a stream: its clock says which operations it is ordered after."""

    index: int
    name: str
    stream: StandInStream
    clock: dict[int, int]
    reads: list[tuple[int, int]] = field(default_factory=list)  # [start, end) addresses
    writes: list[tuple[int, int]] = field(default_factory=list)


@dataclass
class _Block:
    """Memory this stand-in allocated."""

    start: int
    end: int
    pinned: bool
    stream: int | None  # the stream it was allocated on (device memory)
    recorded: set[int] = field(default_factory=set)  # streams given to record_stream
    foreign: bool = False  # reached through __cuda_array_interface__: not PyTorch's allocator's to reuse
    accesses: list[tuple[Op, bool, int, int]] = field(default_factory=list)  # (op, is_write, start, end)


class CudaStandIn(CudaRuntime):
    """The CUDA runtime's methods over host memory, with the checks described in the module docstring.

    Args:
        kernels: whether the "extension" has CUDA kernels (False: the pipeline's CPU fallback).
        gpu_name / capability: what `describe` reports (the sidecar's GPU checks read it).
    """

    name = "cuda-standin"

    def __init__(self, kernels: bool = True, gpu_name: str = "Stand-in GPU (CPU)", capability: str = "9.0") -> None:
        self.kernels, self.gpu_name, self.capability = kernels, gpu_name, capability
        self.ops: list[Op] = []
        self.races: list[str] = []
        self.syncs: list[str] = []
        self.blocks: list[_Block] = []
        self.streams: dict[int, StandInStream] = {}
        self.host_clock: dict[int, int] = {HOST: 0}  # the host's own accesses, and the work it waited for
        self.host = StandInStream(self, HOST, "host")  # names the host in ops and messages
        self.default = self._new_stream("default", handle=0)
        self.local = threading.local()

    # ---- devices ---------------------------------------------------------------------------

    def available(self) -> bool:
        return True

    def has_kernels(self) -> bool:
        return self.kernels and kernels.has_cpp()

    def device(self, spec: str | int | torch.device | None = None) -> torch.device:
        if spec is None or spec == DEVICE or spec in (0, "cuda", "cuda:0") or spec == torch.device("cuda", 0):
            return DEVICE
        raise ValueError(f"{spec}: this machine has 1 CUDA device(s)")

    def describe(self, device: torch.device) -> tuple[str, str]:
        return self.gpu_name, self.capability

    def owns(self, tensor: torch.Tensor) -> bool:
        block = self._block(tensor.data_ptr())
        return block is not None and not block.pinned

    # ---- streams and events ----------------------------------------------------------------

    def _new_stream(self, label: str, handle: int | None = None) -> StandInStream:
        handle = handle if handle is not None else 0x1000 + len(self.streams)
        stream = StandInStream(self, handle, label)
        self.streams[handle] = stream
        return stream

    def stream(self, device: torch.device) -> StandInStream:
        return self._new_stream(f"s{len(self.streams)}")

    def event(self) -> StandInEvent:
        return StandInEvent(self)

    def current_stream(self, device: torch.device | None = None) -> StandInStream:
        stack = getattr(self.local, "stack", None)
        return stack[-1] if stack else self.default

    @contextlib.contextmanager
    def use(self, stream: Any) -> Iterator[Any]:
        if not hasattr(self.local, "stack"):
            self.local.stack = []
        self.local.stack.append(stream)
        try:
            yield stream
        finally:
            self.local.stack.pop()

    def external_stream(self, handle: int, device: torch.device) -> StandInStream:
        if handle == 1:
            return self.default
        return self.streams.get(handle) or self._new_stream(f"external {handle:#x}", handle)

    def synchronize(self, device: torch.device) -> None:
        self.host_waits("device", *(s.clock for s in self.streams.values()))

    def host_waits(self, what: str, *clocks: dict[int, int]) -> None:
        """The host blocks until the work behind `clocks` is done: what it enqueues next comes after."""
        self.syncs.append(what)
        for clock in clocks:
            _merge(self.host_clock, clock)

    # ---- memory ------------------------------------------------------------------------------

    def _register(self, tensor: torch.Tensor, pinned: bool) -> torch.Tensor:
        """Remember an allocation until its tensor (and every view of it) is gone."""
        start = tensor.data_ptr()
        end = start + max(1, tensor.numel() * tensor.element_size())
        self.blocks = [b for b in self.blocks if b.end <= start or b.start >= end]  # that memory was freed
        block = _Block(start, end, pinned, None if pinned else self.current_stream().handle)
        self.blocks.append(block)
        weakref.finalize(tensor, self._release, block)  # views keep their base (`._base`) alive
        return tensor

    def _release(self, block: _Block) -> None:
        self.blocks = [b for b in self.blocks if b is not block]

    def empty(self, shape: Sequence[int], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        self.device(device)
        return self._register(torch.empty(tuple(shape), dtype=dtype), pinned=False)

    def empty_pinned(self, shape: Sequence[int], dtype: torch.dtype) -> torch.Tensor:
        return self._register(torch.empty(tuple(shape), dtype=dtype), pinned=True)

    def to_device(self, array: np.ndarray | torch.Tensor) -> torch.Tensor:
        """A "device" copy of a host array (tests make their device frames with it)."""
        host = torch.as_tensor(array)
        out = self.empty(host.shape, host.dtype, DEVICE)
        out.copy_(host)
        return out

    def copy(self, dst: torch.Tensor, src: torch.Tensor) -> None:
        for t in (dst, src):
            if self._block(t.data_ptr()) is None:
                self.syncs.append("pageable copy")  # the host waits for such a copy
        self.enqueue("copy", reads=[src], writes=[dst])
        dst.copy_(src)

    def record_stream(self, tensor: torch.Tensor, stream: Any) -> None:
        block = self._block(tensor.data_ptr())
        if block is not None:
            block.recorded.add(stream.handle)

    def host_uses(self, tensor: torch.Tensor, write: bool) -> None:
        """The host reads or writes pinned memory: ordered after what the host waited for, and before
        what it enqueues next."""
        self.host_clock[HOST] += 1
        op = Op(len(self.ops), f"host {'writes' if write else 'reads'}", self.host, dict(self.host_clock))
        (op.writes if write else op.reads).append(_span(tensor))
        self.ops.append(op)
        start, end = op.writes[0] if write else op.reads[0]
        if end > start:
            self._access(op, start, end, write)

    def as_tensor(self, array: Any) -> torch.Tensor:
        """A tensor over the memory an interface points at (as torch.as_tensor does on a GPU, which
        also refuses read-only interfaces)."""
        interface = array.__cuda_array_interface__
        if interface["data"][1]:
            raise TypeError("the read only flag is not supported, should always be False")
        dtype = np.dtype(_TYPESTR[interface["typestr"]])
        shape = tuple(interface["shape"])
        strides = interface.get("strides") or tuple(int(s) for s in np.cumprod((1, *shape[:0:-1]))[::-1] * dtype.itemsize)
        block = self._block(interface["data"][0])
        if block is None:
            raise ValueError("as_tensor: the interface points outside the stand-in's device memory")
        block.foreign = True
        span = sum((n - 1) * s for n, s in zip(shape, strides)) + dtype.itemsize
        raw = (ctypes.c_uint8 * span).from_address(interface["data"][0])
        view = np.lib.stride_tricks.as_strided(np.frombuffer(raw, dtype=dtype, count=span // dtype.itemsize),
                                               shape, strides)
        return torch.from_numpy(view)

    # ---- kernels: the C++ CPU twins ------------------------------------------------------------

    def warp(self, frame: torch.Tensor, inv: torch.Tensor, out: torch.Tensor, flip: bool, *,
             normalize: str = "imagenet", letterbox: tuple[int, int, int, int, int] | None = None) -> None:
        self._check_device("warp_cuda", frame=frame, inv_matrices=inv, out=out)
        self.enqueue("warp", reads=[frame, inv], writes=[out])
        kernels.warp(frame.numpy(), inv.numpy(), out.numpy(), flip, normalize=normalize, letterbox=letterbox)

    def decode(self, heatmaps: torch.Tensor, transforms: torch.Tensor, out: torch.Tensor, mode: str,
               flipped: torch.Tensor | None = None, flip_index: torch.Tensor | None = None) -> None:
        self._check_device("decode_cuda", heatmaps=heatmaps, transforms=transforms, out=out, flipped=flipped,
                           flip_index=flip_index)
        extra = [t for t in (flipped, flip_index) if t is not None]
        self.enqueue("decode", reads=[heatmaps, transforms, *extra], writes=[out])
        kernels.decode(heatmaps.numpy(), transforms.numpy(), out.numpy(), mode,
                       None if flipped is None else flipped.numpy(),
                       None if flip_index is None else flip_index.numpy())

    def _check_device(self, entry: str, **arrays: torch.Tensor | None) -> None:
        """The CUDA binding's check_device_arrays, for the host memory the stand-in knows: its pinned
        blocks. (Tensors that PyTorch ops make under the stand-in are host memory it did not
        allocate; on a GPU they would be device memory, so they pass.)"""
        for name, t in arrays.items():
            block = None if t is None or t.numel() == 0 else self._block(t.data_ptr())
            if block is not None and block.pinned:
                raise ValueError(f"{entry}: {name}: expected CUDA device memory, got a host pointer")

    # ---- the checks ----------------------------------------------------------------------------

    def enqueue(self, name: str, reads: Sequence[Any] = (), writes: Sequence[Any] = ()) -> Op:
        """Log an operation on the current stream; check its accesses to device memory."""
        stream = self.current_stream()
        _merge(stream.clock, self.host_clock)  # enqueued after what the host already waited for
        stream.clock[stream.handle] += 1
        op = Op(len(self.ops), name, stream, dict(stream.clock), [_span(r) for r in reads], [_span(w) for w in writes])
        self.ops.append(op)
        for spans, write in ((op.reads, False), (op.writes, True)):
            for start, end in spans:
                if end > start:
                    self._access(op, start, end, write)
        return op

    def _access(self, op: Op, address: int, end: int, write: bool) -> None:
        block = self._block(address)
        if block is None:
            return
        here = op.stream.handle
        if not block.pinned and not block.foreign and here != block.stream and here not in block.recorded:
            self.races.append(f"{op.name} on {op.stream} uses a block allocated on stream {block.stream:#x} "
                              "without record_stream")
        for earlier, earlier_write, lo, hi in block.accesses:
            overlap = lo < end and address < hi
            if (overlap and (write or earlier_write) and earlier.stream is not op.stream
                    and not happens_before(earlier, op)):
                self.races.append(f"{op.name} on {op.stream} {'writes' if write else 'reads'} memory that "
                                  f"{earlier.name} on {earlier.stream} {'wrote' if earlier_write else 'read'}, "
                                  "unordered")
        block.accesses = [*block.accesses[-MAX_ACCESSES:], (op, write, address, end)]

    def _block(self, address: int) -> _Block | None:
        for block in self.blocks:
            if block.start <= address < block.end:
                return block
        return None

    def ops_named(self, name: str) -> list[Op]:
        return [op for op in self.ops if op.name == name]


class ForeignFrame:
    """A device array from another library (CuPy, Numba...) over a stand-in tensor: `__cuda_array_interface__`
    v3 naming its producer's stream (`reads` counts how often the interface was asked for)."""

    def __init__(self, tensor: torch.Tensor, stream: int, read_only: bool = False) -> None:
        self.tensor, self.stream, self.read_only, self.reads = tensor, stream, read_only, 0

    @property
    def __cuda_array_interface__(self):
        self.reads += 1
        typestr = {torch.uint8: "|u1", torch.float32: "<f4"}[self.tensor.dtype]
        strides = None if self.tensor.is_contiguous() else tuple(s * self.tensor.element_size()
                                                                   for s in self.tensor.stride())
        return {"shape": tuple(self.tensor.shape), "typestr": typestr, "data": (self.tensor.data_ptr(), self.read_only),
                "strides": strides, "version": 3, "stream": self.stream}


def happens_before(a: Op, b: Op) -> bool:
    """True when `a` completes before `b` starts on any GPU (same stream in order, or an event chain)."""
    return a is not b and b.clock.get(a.stream.handle, 0) >= a.clock[a.stream.handle]


def _merge(into: dict[int, int], other: dict[int, int]) -> None:
    for handle, count in other.items():
        into[handle] = max(into.get(handle, 0), count)


def _span(item: Any) -> tuple[int, int]:
    """[start, end) addresses of a tensor's elements, or an explicit (address, bytes) pair."""
    if isinstance(item, torch.Tensor):
        if item.numel() == 0:
            return (0, 0)
        last = sum((n - 1) * s for n, s in zip(item.shape, item.stride()))
        return item.data_ptr(), item.data_ptr() + (last + 1) * item.element_size()
    address, nbytes = item
    return int(address), int(address) + int(nbytes)
