"""TensorRT at run time: a built `model.engine` (plan) plus its `model.engine.json` sidecar.

`TensorRTPlan` loads and runs any plan (name-based inputs and outputs, dynamic shapes, the
sidecar's checks); `TensorRTEngine` is the pose model's engine on it, and a person detector's
plan runs on it through `vitpose_trt.detect.Detector`.

TensorRT is imported on use only (`trt`), so `import vitpose_trt` works without it. A bare
`import tensorrt` is not proof that TensorRT is there: the `tensorrt-stubs` typing package makes
that import succeed with no library behind it, hence `tensorrt_available()` looks for
`tensorrt.Builder` / `tensorrt.Runtime`.

Device memory (crops, heatmaps) comes from PyTorch: TensorRT and PyTorch share the one CUDA
primary context and PyTorch's caching allocator, and no pycuda / cuda-python is needed. The
engine's own scratch memory is allocated by TensorRT itself (in that same context) when the
execution context is created.

This module is the runtime half. `build_engine.tensorrt_build` makes the plan and the sidecar.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from vitpose_trt._lazy import lazy_module
from vitpose_trt.cuda_memory import GrowBuffer
from vitpose_trt.cuda_runtime import Stream, runtime
from vitpose_trt.engines.base import Engine, TensorSpec, check_max_batch
from vitpose_trt.engines.sidecar import (
    KIND_POSE,
    EngineMismatchError,
    Platform,
    check_compatibility,
    check_kind,
    read_sidecar,
    rebuild_command,
    sidecar_path,
)
from vitpose_trt.model import warn_random_weights

if TYPE_CHECKING:
    import tensorrt as trt  # typed by tensorrt-stubs
else:  # TensorRT is optional: imported on first use, looked up at each (test stand-ins)
    trt = lazy_module("tensorrt")

log = logging.getLogger(__name__)

INSTALL_HINT = (
    "TensorRT is not installed: `pip install tensorrt-cu13` or `pip install tensorrt-cu12`, the one matching the CUDA "
    "major version of your PyTorch build (`python -c 'import torch; print(torch.version.cuda)'`) and driver, or "
    "NVIDIA's TensorRT wheels / NGC containers "
    "(https://docs.nvidia.com/deeplearning/tensorrt/latest/installing-tensorrt/installing.html)"
)


class TensorRTUnavailableError(ImportError):
    """The tensorrt package (the real one, not only its type stubs) is not importable."""


# --------------------------------------------------------------------------------------------
# availability


def tensorrt_available() -> bool:
    """True when the real TensorRT Python package is importable (not only `tensorrt-stubs`)."""
    try:
        return hasattr(trt, "Builder") and hasattr(trt, "Runtime")
    except ImportError:  # not installed (the first attribute access imports it)
        return False


def require_tensorrt() -> None:
    """Raise `TensorRTUnavailableError` (one line: how to install it) unless TensorRT is importable."""
    if not tensorrt_available():
        raise TensorRTUnavailableError(INSTALL_HINT)


_TRT_LOGGER: trt.ILogger | None = None


def trt_logger() -> trt.ILogger:
    """The process-wide TensorRT logger, forwarding to Python `logging` (TensorRT wants one to outlive
    every builder, runtime and engine made with it, so it is created once and kept)."""
    global _TRT_LOGGER
    if _TRT_LOGGER is None:
        require_tensorrt()
        base: Any = trt.ILogger  # the installed TensorRT's (or a test stand-in's) logger interface
        # TensorRT severities 0..4 (internal error, error, warning, info, verbose). Build-time INFO
        # is dozens of lines per build, so it goes to DEBUG; VERBOSE below that.
        levels = {0: logging.CRITICAL, 1: logging.ERROR, 2: logging.WARNING, 3: logging.DEBUG, 4: 5}
        trt_log = logging.getLogger("tensorrt")

        class _LoggingBridge(base):
            def __init__(self) -> None:
                base.__init__(self)  # pybind11 trampolines need the explicit base __init__

            def log(self, severity: trt.ILogger.Severity, msg: str) -> None:
                level = levels.get(int(severity), logging.INFO)
                if trt_log.isEnabledFor(level):
                    trt_log.log(level, "%s", msg)

        _TRT_LOGGER = _LoggingBridge()
    return _TRT_LOGGER


# --------------------------------------------------------------------------------------------
# this machine


def current_platform(device: torch.device | None = None) -> Platform:
    """This machine's TensorRT version and the GPU `device` (default: the current CUDA device)."""
    require_tensorrt()
    version = trt.__version__
    rt = runtime()
    if not rt.available():
        return Platform(version)
    name, capability = rt.describe(device if device is not None else rt.device(None))
    return Platform(version, name, capability)


# --------------------------------------------------------------------------------------------
# the plan: loading, the sidecar's checks, name-based I/O


class TensorRTPlan:
    """A TensorRT plan and its execution context: the one place that loads a plan and binds its tensors.

    Both models run on it: the pose engine (`TensorRTEngine`, crops -> heatmaps) and a person
    detector (`vitpose_trt.detect.Detector`, a `Graph`). Before deserializing, the sidecar is checked:
    the kind of model (`kind`: a detector's plan given as the pose model, or the reverse, is refused
    by name), then the TensorRT version and GPU compute capability against this machine's (a
    mismatch raises `EngineMismatchError` with the rebuild command instead of TensorRT's
    deserialization error). Tensors are bound by name (TensorRT 10/11), any number of inputs and
    outputs, with input shapes anywhere in the plan's first optimization profile; output shapes follow
    from the input shapes (data-dependent output shapes are not supported: they are refused when the
    plan is opened).

    The plan file is trusted code: it holds compiled CUDA kernels (and may hold plugin or host
    code) that run with this process's rights. Only load plans you built or got over a trusted
    channel; this class does not and cannot sandbox them.

    Calls share the execution context and TensorRT's scratch memory: they take turns under `lock`,
    and a call on another stream than the last first makes its stream wait for that one
    (`take_turn`). `run` (the host path) enqueues on a stream of its own.

    Args:
        path: the .engine/.plan file; its sidecar `<path>.json` is read when present.
        kind: what the caller runs, `sidecar.KIND_POSE` or `sidecar.KIND_DETECTOR`.
        device: the CUDA device (default: the current one).

    Attributes:
        sidecar: the sidecar dict ({} when there is none).
        inputs / outputs: `TensorSpec`s; an input dimension the profile fixes (min == max) is given.
        metadata: the source ONNX graph's metadata_props as the sidecar records them ({} if not).
        device: the torch.device; stream: the host path's stream.
    """

    name = "tensorrt"

    def __init__(self, path: str | os.PathLike[str], *, kind: str,
                 device: int | str | torch.device | None = None) -> None:
        rt = self._cuda = runtime()  # kept: the plan's memory and streams belong to this runtime
        self.path = Path(os.fspath(path))
        if not self.path.is_file():
            raise FileNotFoundError(f"TensorRT engine not found: {self.path}")
        require_tensorrt()
        if not rt.available():
            raise RuntimeError("TensorRT engines need an NVIDIA GPU visible to PyTorch (torch.cuda.is_available() "
                               "is False: no GPU, or a CPU-only torch build)")
        self.device = rt.device(device)
        sidecar = read_sidecar(self.path)
        self.sidecar: dict[str, Any] = sidecar or {}
        current = current_platform(self.device)
        self._check_sidecar(sidecar, kind, current)
        self.metadata: dict[str, str] = dict((self.sidecar.get("source") or {}).get("metadata") or {})
        self.providers = ["TensorRT"]
        plan = self.path.read_bytes()
        # The host path (`run`) enqueues on a stream of its own: on the legacy default stream
        # TensorRT adds device-wide synchronizations and warns on every call.
        self.stream = rt.stream(self.device)
        self._read_tensors(self._load(plan, current))
        self._bound: dict[str, tuple[int, ...]] = {}  # the input shapes the context is set to
        self.lock = threading.RLock()  # one execution context: calls from threads take turns
        self._last_stream: Stream | None = None  # the stream of the last enqueue

    def _check_sidecar(self, sidecar: dict[str, Any] | None, kind: str, current: Platform) -> None:
        """The sidecar's kind, TensorRT version and GPU against the caller's and this machine's (a warning
        when there is no sidecar: nothing can be checked)."""
        if sidecar is None:
            log.warning("%s has no sidecar %s: cannot check the TensorRT version and GPU it was built for",
                        self.path, sidecar_path(self.path).name)
        else:
            check_kind(sidecar, kind, self.path)
            check_compatibility(sidecar, current, self.path)

    def _load(self, plan: bytes, current: Platform) -> trt.ICudaEngine:
        """Deserialize the plan and create its execution context, with the plan's device current."""
        with self._cuda.use(self.stream):  # the plan's device is current while TensorRT loads it
            self._runtime: trt.Runtime | None = trt.Runtime(trt_logger())
            try:
                engine: trt.ICudaEngine | None = self._runtime.deserialize_cuda_engine(plan)
            except RuntimeError as e:  # some versions raise instead of returning None
                raise EngineMismatchError(self._unloadable(current, str(e))) from None
            if engine is None:
                raise EngineMismatchError(self._unloadable(current, "see the TensorRT error logged above"))
            self._engine: trt.ICudaEngine | None = engine
            context: trt.IExecutionContext | None = engine.create_execution_context()
            if context is None:
                raise RuntimeError(f"{self.path}: TensorRT could not create an execution context (out of GPU memory?)")
            self._context: trt.IExecutionContext | None = context
        return engine

    def _read_tensors(self, engine: trt.ICudaEngine) -> None:
        """The I/O tensors' dtypes and `TensorSpec`s, and each input's profile-0 shapes."""
        input_mode = trt.TensorIOMode.INPUT
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self._dtypes = {n: _torch_dtype(engine.get_tensor_dtype(n), n) for n in names}
        self._profiles: dict[str, tuple[tuple[int, ...], ...]] = {}
        self.inputs: list[TensorSpec] = []
        self.outputs: list[TensorSpec] = []
        for n in names:
            dims = _dims(engine.get_tensor_shape(n))
            if engine.get_tensor_mode(n) == input_mode:
                lo, opt, hi = (_dims(d) for d in engine.get_tensor_profile_shape(n, 0))  # profile 0
                self._profiles[n] = (lo, opt, hi)
                fixed = tuple(d if d >= 0 else (lo[i] if lo[i] == hi[i] else None) for i, d in enumerate(dims))
                self.inputs.append(TensorSpec(n, fixed, _numpy_dtype(self._dtypes[n])))
            else:
                self.outputs.append(TensorSpec(n, tuple(d if d >= 0 else None for d in dims),
                                               _numpy_dtype(self._dtypes[n])))

    def torch_dtype(self, name: str) -> torch.dtype:
        """The torch dtype of tensor `name`."""
        return self._dtypes[name]

    def profile(self, name: str) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """(min, opt, max) shapes of input `name` in the plan's optimization profile."""
        lo, opt, hi = self._profiles[name]
        return lo, opt, hi

    def output_shapes(self, input_shapes: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
        """Each output's shape for these input shapes (the context is set to them).

        Raises:
            ValueError: an input missing, or a shape outside the profile (named, with the profile).
        """
        with self.lock:
            context = self._set_input_shapes(input_shapes)
            shapes = {o.name: _dims(context.get_tensor_shape(o.name)) for o in self.outputs}
        unknown = [n for n, s in shapes.items() if any(d < 0 for d in s)]
        if unknown:
            raise ValueError(f"{self.path}: outputs {unknown} have data-dependent shapes, which this runner does not "
                             "bind; export the model with fixed-size outputs (a fixed number of boxes)")
        return shapes

    def take_turn(self, stream: Stream) -> None:
        """Order `stream` after the last call's stream (what used the context or an output there comes
        first). Call under `lock`."""
        if self._last_stream is not None and self._last_stream.cuda_stream != stream.cuda_stream:
            stream.wait_stream(self._last_stream)
        self._last_stream = stream

    def enqueue(self, inputs: dict[str, torch.Tensor], outputs: dict[str, torch.Tensor], stream: Stream) -> None:
        """Run the plan on `stream`: TensorRT reads `inputs` and writes `outputs` there; no synchronization.

        Args:
            inputs: every input by name: contiguous device tensors of the plan's dtypes, shapes in the
                profile.
            outputs: every output by name: contiguous device tensors of `output_shapes(...)` and the
                plan's dtypes, written in place.

        Raises:
            ValueError: a tensor missing, on another device, of another dtype (no implicit casts) or
                shape, not contiguous, or an input shape outside the profile.
            RuntimeError: TensorRT failed to enqueue, or the plan was closed.
        """
        with self.lock:
            self.take_turn(stream)
            shapes = self.output_shapes({n: tuple(int(d) for d in t.shape) for n, t in inputs.items()})
            context = self._live_context()
            for spec in self.inputs:
                self._check_tensor("input", spec.name, inputs[spec.name], None)
                context.set_tensor_address(spec.name, inputs[spec.name].data_ptr())
            for spec in self.outputs:
                if spec.name not in outputs:
                    raise ValueError(f"{self.path}: no buffer for output {spec.name!r}")
                self._check_tensor("output", spec.name, outputs[spec.name], shapes[spec.name])
                context.set_tensor_address(spec.name, outputs[spec.name].data_ptr())
            if not context.execute_async_v3(stream.cuda_stream):
                raise RuntimeError(f"TensorRT failed to enqueue {self.path} (inputs "
                                   f"{ {n: tuple(t.shape) for n, t in inputs.items()} }); see the TensorRT error logged")

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Host path: upload `feeds`, run, download every output (in the plan's order), synchronized.

        An input the plan takes in float16 may be given in float32: it is converted on the GPU (an
        explicit, documented conversion: FP16 engines take FP16 input); other dtypes must match. An
        input may also be a tensor already on the plan's device, written on `self.stream` (or
        before it): it is read in place (the detector's GPU letterbox).
        """
        rt = self._cuda
        missing = [s.name for s in self.inputs if s.name not in feeds]
        if missing:
            raise ValueError(f"{self.path}: no value for inputs {missing}")
        with self.lock, rt.use(self.stream), torch.inference_mode():
            device_inputs = {}
            for spec in self.inputs:
                host = feeds[spec.name]
                if isinstance(host, torch.Tensor) and rt.owns(host):
                    device_inputs[spec.name] = host  # enqueue checks its device, dtype and shape
                    continue
                if not isinstance(host, np.ndarray):
                    raise TypeError(f"input {spec.name!r}: expected a numpy array or a tensor on {self.device}, "
                                    f"got {type(host).__name__}")
                want = self._dtypes[spec.name]
                staged = torch.from_numpy(np.ascontiguousarray(host))
                if staged.dtype == torch.float32 and want == torch.float16:
                    dev = rt.empty(staged.shape, torch.float32, self.device)
                    rt.copy(dev, staged)
                    device_inputs[spec.name] = dev.to(torch.float16).contiguous()
                else:
                    dev = rt.empty(staged.shape, staged.dtype, self.device)
                    rt.copy(dev, staged)
                    device_inputs[spec.name] = dev
            shapes = self.output_shapes({n: tuple(t.shape) for n, t in device_inputs.items()})
            device_outputs = {o.name: rt.empty(shapes[o.name], self._dtypes[o.name], self.device) for o in self.outputs}
            self.enqueue(device_inputs, device_outputs, self.stream)
            host_outputs = []
            for o in self.outputs:
                out = torch.empty(shapes[o.name], dtype=self._dtypes[o.name])
                rt.copy(out, device_outputs[o.name])
                host_outputs.append(out)
            self.stream.synchronize()
        return [(t.float() if t.dtype == torch.bfloat16 else t).numpy() for t in host_outputs]

    def close(self) -> None:
        """Release the TensorRT objects (context, then engine, then runtime: TensorRT's order), after
        the work already queued on the device has finished. Idempotent."""
        if getattr(self, "_context", None) is not None:
            self._cuda.synchronize(self.device)
        self._context = None
        self._engine = None
        self._runtime = None

    def __del__(self) -> None:
        if hasattr(self, "_runtime"):
            self.close()

    # ----------------------------------------------------------------------------------------

    def _set_input_shapes(self, shapes: dict[str, tuple[int, ...]]) -> trt.IExecutionContext:
        context = self._live_context()
        for spec in self.inputs:
            if spec.name not in shapes:
                raise ValueError(f"{self.path}: no shape for input {spec.name!r}")
            shape = tuple(int(d) for d in shapes[spec.name])
            if self._bound.get(spec.name) == shape:
                continue
            if not context.set_input_shape(spec.name, shape):
                lo, _, hi = self._profiles[spec.name]
                raise ValueError(f"{self.path}: input {spec.name!r} of shape {shape} is outside the engine's "
                                 f"optimization profile {lo}..{hi}")
            self._bound[spec.name] = shape
        return context

    def _check_tensor(self, what: str, name: str, tensor: torch.Tensor, shape: tuple[int, ...] | None) -> None:
        if tensor.device != self.device:
            raise ValueError(f"{what} {name!r}: expected a tensor on {self.device}, got {tensor.device}")
        if tensor.dtype != self._dtypes[name]:
            raise ValueError(f"{what} {name!r}: the engine takes {self._dtypes[name]}, got {tensor.dtype} "
                             "(no implicit casts)")
        if shape is not None and tuple(tensor.shape) != shape:
            raise ValueError(f"{what} {name!r}: expected shape {shape}, got {tuple(tensor.shape)}")
        if not tensor.is_contiguous():
            raise ValueError(f"{what} {name!r}: expected a contiguous tensor (TensorRT reads dense memory)")

    def _live_context(self) -> trt.IExecutionContext:
        if self._context is None:
            raise RuntimeError(f"{self.path}: the engine was closed")
        return self._context

    def _unloadable(self, current: Platform, detail: str) -> str:
        built = self.sidecar.get("tensorrt_version", "an unknown TensorRT version")
        return (f"TensorRT {current.tensorrt_version} could not load {self.path} (built with {built}; {detail}): "
                f"rebuild it here with `{rebuild_command(self.sidecar, self.path)}`")


# --------------------------------------------------------------------------------------------
# the pose engine


class TensorRTEngine(Engine):
    """The pose model's TensorRT engine: a plan built by `vitpose-trt build` (crops -> heatmaps), run
    on a `TensorRTPlan` (which checks the sidecar and binds the tensors; see there for trust).

    `run_cuda` enqueues on the caller's stream and does not chunk: batches must lie in the plan's
    optimization profile (`min_batch`..`max_batch`), which the pipeline respects by chunking with
    `max_batch`. Calls share the plan's context and this engine's output buffer: they take turns (the
    host path `run` has a stream of its own, so it may be mixed with the GPU path's calls).

    Args:
        path: the .engine/.plan file; its sidecar `<path>.json` is read when present.
        device: the CUDA device (default: the current one).
        max_batch: most crops per call (default and upper bound: the profile's maximum).

    Attributes:
        plan: the `TensorRTPlan`.
        sidecar: the sidecar dict ({} when there is none).
        min_batch / max_batch: the optimization profile's batch range (crops, flip pairs included).
        input_dtype / output_dtype: torch dtypes of the engine's input and output.
        mode / flip_test: the pipeline options the engine was built for (from the sidecar).
    """

    name = "tensorrt"
    device = "cuda"

    def __init__(self, path: str | os.PathLike[str], *, device: int | str | torch.device | None = None,
                 max_batch: int | None = None) -> None:
        self.plan = TensorRTPlan(path, kind=KIND_POSE, device=device)
        self.path, self.sidecar = self.plan.path, self.plan.sidecar
        self._device = self.torch_device = self.plan.device
        self._read_io()
        lo, _opt, hi = self.plan.profile(self.input_name)
        self.min_batch, self.profile_max_batch = int(lo[0]), int(hi[0])
        # what the pipeline chunks by: the profile's maximum, or less when asked
        self.max_batch = (self.profile_max_batch if max_batch is None
                          else min(self.profile_max_batch, check_max_batch(max_batch, "cuda")))
        self._read_build()
        self._out = GrowBuffer(self.output_dtype, self.torch_device)
        if self.random_weights:
            warn_random_weights(f"{self.path} was built from RANDOM weights (not a trained model)")

    def _read_io(self) -> None:
        """The plan's one input and one output: names, dtypes, the crop size, K and the heatmap size."""
        inputs, outputs = self.plan.inputs, self.plan.outputs
        if len(inputs) != 1 or len(outputs) != 1:
            raise ValueError(f"{self.path}: expected one input and one output tensor, got inputs "
                             f"{[t.name for t in inputs]} and outputs {[t.name for t in outputs]}")
        self.input_name, self.output_name = inputs[0].name, outputs[0].name
        self.input_dtype = self.plan.torch_dtype(self.input_name)
        self.output_dtype = self.plan.torch_dtype(self.output_name)
        in_shape, out_shape = inputs[0].shape, outputs[0].shape
        if (len(in_shape) != 4 or in_shape[1] != 3 or len(out_shape) != 4
                or None in (*in_shape[1:], *out_shape[1:])):
            raise ValueError(f"{self.path}: expected (N, 3, H, W) -> (N, K, h, w), got {in_shape} -> {out_shape}")
        self.input_size = (int(in_shape[2] or 0), int(in_shape[3] or 0))
        self.num_keypoints = int(out_shape[1] or 0)
        self._heatmap_shape = (int(out_shape[2] or 0), int(out_shape[3] or 0))

    def _read_build(self) -> None:
        """What the plan was built as, from its sidecar: precision, random weights, mode, flip test."""
        # an INT8/FP8 plan says so in its sidecar (its I/O is FP16 like an FP16 plan's)
        self.precision = self.sidecar.get("precision") or ("fp16" if self.input_dtype == torch.float16 else "fp32")
        self.random_weights = bool(self.sidecar.get("random_weights", False))
        self.mode: str | None = self.sidecar.get("mode")
        self.flip_test = bool(self.sidecar.get("flip_test", False))

    @property
    def heatmap_size(self) -> tuple[int, int]:
        return self._heatmap_shape

    def _run_cuda(self, crops: torch.Tensor, stream: Stream) -> torch.Tensor:
        """Enqueue the engine on `stream` for a checked CUDA batch (see `Engine.run_cuda`).

        Returns (N, K, h, w) heatmaps (`output_dtype`) in a buffer owned by the engine, valid until
        the next call. TensorRT reads the crops and writes the output on `stream`; no synchronization.
        """
        n = int(crops.shape[0])
        if n < self.min_batch:
            raise ValueError(f"crops: batch {n} is below the engine's profile minimum {self.min_batch}; "
                             f"rebuild it with `{rebuild_command(self.sidecar, self.path)}` (its profile starts at 1)")
        k, (hh, hw) = self.num_keypoints, self._heatmap_shape
        with self.plan.lock:  # one context, scratch and output buffer: calls from any thread take turns
            self.plan.take_turn(stream)  # what used the output buffer on the last stream (a decode) comes first
            out = self._out.get(n, k, hh, hw, stream=stream)
            self.plan.enqueue({self.input_name: crops}, {self.output_name: out}, stream)
        return out

    def _run(self, crops: np.ndarray) -> np.ndarray:
        """Host path for one chunk: upload, convert to `input_dtype` on the GPU (FP16 engines take
        FP16 crops: an explicit, documented conversion), pad up to the profile's minimum, run, download."""
        rt, m, stream = self.plan._cuda, len(crops), self.plan.stream
        with self.plan.lock, rt.use(stream), torch.inference_mode():
            dev = rt.empty(crops.shape, torch.float32, self._device)
            rt.copy(dev, torch.from_numpy(crops))
            dev = dev.to(self.input_dtype)
            if m < self.min_batch:
                dev = torch.cat([dev, dev.new_zeros((self.min_batch - m, *dev.shape[1:]))])
            heatmaps = self._run_cuda(dev.contiguous(), stream)
            out = torch.empty((m, *heatmaps.shape[1:]), dtype=torch.float32)
            rt.copy(out, heatmaps[:m].float())
            stream.synchronize()
        return out.numpy()

    def close(self) -> None:
        """Release the plan (after the work already queued on the device has finished)."""
        self.plan.close()


def _dims(dims: trt.Dims) -> tuple[int, ...]:
    return tuple(int(dims[i]) for i in range(len(dims)))


def _torch_dtype(dtype: trt.DataType, tensor: str) -> torch.dtype:
    trt_types = trt.DataType
    # getattr: BF16 is new in TensorRT 9, INT64 in 10; engines built by the 8.x fallback must still load
    for trt_type, torch_type in ((trt_types.FLOAT, torch.float32), (trt_types.HALF, torch.float16),
                                 (getattr(trt_types, "BF16", None), torch.bfloat16),
                                 (trt_types.INT32, torch.int32), (getattr(trt_types, "INT64", None), torch.int64),
                                 (trt_types.BOOL, torch.bool)):
        if trt_type is not None and dtype == trt_type:
            return torch_type
    raise ValueError(f"tensor {tensor!r} has TensorRT dtype {dtype}; expected FLOAT, HALF, BF16, INT32, INT64 or BOOL")


def _numpy_dtype(dtype: torch.dtype) -> np.dtype:
    """The numpy dtype a host copy of a `dtype` tensor has (bfloat16, which numpy lacks: float32)."""
    names = {torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "float32", torch.int32: "int32",
             torch.int64: "int64", torch.bool: "bool"}
    return np.dtype(names[dtype])
