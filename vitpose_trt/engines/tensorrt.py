"""TensorRT engine runner: a built `model.engine` (plan) plus its `model.engine.json` sidecar.

TensorRT is imported inside functions only, so `import vitpose_trt` works without it. A bare
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

from vitpose_trt.cuda_runtime import Stream, runtime
from vitpose_trt.engines.base import Engine, check_max_batch
from vitpose_trt.engines.sidecar import (
    EngineMismatchError,
    Platform,
    check_compatibility,
    read_sidecar,
    rebuild_command,
    sidecar_path,
)

if TYPE_CHECKING:
    import tensorrt as trt
    import torch

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
        import tensorrt
    except ImportError:
        return False
    return hasattr(tensorrt, "Builder") and hasattr(tensorrt, "Runtime")


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
        import tensorrt as trt

        # TensorRT severities 0..4 (internal error, error, warning, info, verbose). Build-time INFO
        # is dozens of lines per build, so it goes to DEBUG; VERBOSE below that.
        levels = {0: logging.CRITICAL, 1: logging.ERROR, 2: logging.WARNING, 3: logging.DEBUG, 4: 5}
        trt_log = logging.getLogger("tensorrt")

        class _LoggingBridge(trt.ILogger):
            def __init__(self) -> None:
                trt.ILogger.__init__(self)  # pybind11 trampolines need the explicit base __init__

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
    import tensorrt as trt

    rt = runtime()
    if not rt.available():
        return Platform(trt.__version__)
    name, capability = rt.describe(device if device is not None else rt.device(None))
    return Platform(trt.__version__, name, capability)


# --------------------------------------------------------------------------------------------
# the runner


class TensorRTEngine(Engine):
    """Runs a TensorRT plan built by `vitpose-trt build` (TensorRT 10/11 name-based I/O).

    The engine file is trusted code: a plan holds compiled CUDA kernels (and may hold plugin
    or host code) that run with this process's rights. Only load plans you built or got over a
    trusted channel; this class does not and cannot sandbox them.

    Before deserializing, the sidecar's TensorRT version and GPU compute capability are compared
    with this machine's: a mismatch raises `EngineMismatchError` with the rebuild command instead
    of TensorRT's deserialization error. `run_cuda` enqueues on the caller's stream and does not
    chunk: batches must lie in the plan's optimization profile (`min_batch`..`max_batch`), which
    the pipeline respects by chunking with `max_batch`. Calls share the execution context, the output
    buffer and TensorRT's scratch memory: they take turns under a lock, and a call on another stream
    than the last first waits for that stream's queued work (the host path `run` has a stream of its
    own, so it may be mixed with the GPU path's calls).

    Args:
        path: the .engine/.plan file; its sidecar `<path>.json` is read when present.
        device: the CUDA device (default: the current one).

    Attributes:
        sidecar: the sidecar dict ({} when there is none).
        min_batch / max_batch: the optimization profile's batch range (crops, flip pairs included).
        input_dtype / output_dtype: torch dtypes of the engine's input and output.
        mode / flip_test: the pipeline options the engine was built for (from the sidecar).
    """

    name = "tensorrt"
    device = "cuda"

    def __init__(self, path: str | os.PathLike[str], *, device: int | str | torch.device | None = None,
                 max_batch: int | None = None) -> None:
        import torch

        from vitpose_trt.cuda_memory import GrowBuffer

        rt = self._cuda = runtime()  # kept: the engine's memory and streams belong to this runtime
        self.path = Path(os.fspath(path))
        if not self.path.is_file():
            raise FileNotFoundError(f"TensorRT engine not found: {self.path}")
        require_tensorrt()
        import tensorrt as trt

        if not rt.available():
            raise RuntimeError("TensorRT engines need an NVIDIA GPU visible to PyTorch (torch.cuda.is_available() "
                               "is False: no GPU, or a CPU-only torch build)")
        self._device = self.torch_device = rt.device(device)
        sidecar = read_sidecar(self.path)
        self.sidecar: dict[str, Any] = sidecar or {}
        current = current_platform(self.torch_device)
        if sidecar is None:
            log.warning("%s has no sidecar %s: cannot check the TensorRT version and GPU it was built for",
                        self.path, sidecar_path(self.path).name)
        else:
            check_compatibility(sidecar, current, self.path)

        plan = self.path.read_bytes()
        # The host path (`run`) enqueues on a stream of its own: on the legacy default stream
        # TensorRT adds device-wide synchronizations and warns on every call.
        self._stream = rt.stream(self.torch_device)
        with rt.use(self._stream):  # the engine's device is current while TensorRT loads it
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

        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(inputs) != 1 or len(outputs) != 1:
            raise ValueError(f"{self.path}: expected one input and one output tensor, got inputs {inputs} "
                             f"and outputs {outputs}")
        self.input_name, self.output_name = inputs[0], outputs[0]
        self.input_dtype = _torch_dtype(engine.get_tensor_dtype(self.input_name), self.input_name)
        self.output_dtype = _torch_dtype(engine.get_tensor_dtype(self.output_name), self.output_name)
        in_shape = _dims(engine.get_tensor_shape(self.input_name))
        out_shape = _dims(engine.get_tensor_shape(self.output_name))
        if len(in_shape) != 4 or in_shape[1] != 3 or len(out_shape) != 4:
            raise ValueError(f"{self.path}: expected (N, 3, H, W) -> (N, K, h, w), got {in_shape} -> {out_shape}")
        self.input_size = (int(in_shape[2]), int(in_shape[3]))
        self.num_keypoints = int(out_shape[1])
        self._heatmap_shape = (int(out_shape[2]), int(out_shape[3]))
        lo, _opt, hi = engine.get_tensor_profile_shape(self.input_name, 0)  # (min, opt, max) of profile 0
        self.min_batch, self.profile_max_batch = int(lo[0]), int(hi[0])
        # what the pipeline chunks by: the profile's maximum, or less when asked
        self.max_batch = (self.profile_max_batch if max_batch is None
                          else min(self.profile_max_batch, check_max_batch(max_batch, "cuda")))
        # an INT8/FP8 plan says so in its sidecar (its I/O is FP16 like an FP16 plan's)
        self.precision = self.sidecar.get("precision") or ("fp16" if self.input_dtype == torch.float16 else "fp32")
        self.random_weights = bool(self.sidecar.get("random_weights", False))
        self.mode: str | None = self.sidecar.get("mode")
        self.flip_test = bool(self.sidecar.get("flip_test", False))

        self._bound_batch = -1  # the batch size the context's input shape is set to
        self._out = GrowBuffer(self.output_dtype, self.torch_device)
        self._lock = threading.RLock()  # one execution context: calls from threads take turns
        self._last_stream: Stream | None = None  # the stream of the last enqueue
        if self.random_weights:
            from vitpose_trt.model import warn_random_weights

            warn_random_weights(f"{self.path} was built from RANDOM weights (not a trained model)")

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
                             "rebuild it with the default --min-batch 1")
        k, (hh, hw) = self.num_keypoints, self._heatmap_shape
        with self._lock:  # one context, scratch and output buffer: calls from any thread take turns
            context = self._live_context()
            if self._last_stream is not None and self._last_stream.cuda_stream != stream.cuda_stream:
                stream.wait_stream(self._last_stream)  # what used the output there (a decode) comes first
            self._last_stream = stream
            out = self._out.get(n, k, hh, hw, stream=stream)
            if n != self._bound_batch:
                if not context.set_input_shape(self.input_name, tuple(int(s) for s in crops.shape)):
                    raise ValueError(f"TensorRT rejected input shape {tuple(crops.shape)} for {self.path}")
                self._bound_batch = n
            context.set_tensor_address(self.input_name, crops.data_ptr())
            context.set_tensor_address(self.output_name, out.data_ptr())
            if not context.execute_async_v3(stream.cuda_stream):
                raise RuntimeError(f"TensorRT failed to enqueue {self.path} (batch {n}); see the TensorRT error logged")
        return out

    def _run(self, crops: np.ndarray) -> np.ndarray:
        """Host path for one chunk: upload, convert to `input_dtype` on the GPU (FP16 engines take
        FP16 crops: an explicit, documented conversion), pad up to the profile's minimum, run, download."""
        import torch

        rt, m = self._cuda, len(crops)
        with self._lock, rt.use(self._stream), torch.inference_mode():
            dev = rt.empty(crops.shape, torch.float32, self._device)
            rt.copy(dev, torch.from_numpy(crops))
            dev = dev.to(self.input_dtype)
            if m < self.min_batch:
                dev = torch.cat([dev, dev.new_zeros((self.min_batch - m, *dev.shape[1:]))])
            heatmaps = self._run_cuda(dev.contiguous(), self._stream)
            out = torch.empty((m, *heatmaps.shape[1:]), dtype=torch.float32)
            rt.copy(out, heatmaps[:m].float())
            self._stream.synchronize()
        return out.numpy()

    def close(self) -> None:
        """Release the TensorRT objects (context, then engine, then runtime: TensorRT's order), after
        the work already queued on the device has finished."""
        if getattr(self, "_context", None) is not None:
            self._cuda.synchronize(self._device)
        self._context = None
        self._engine = None
        self._runtime = None

    def __del__(self) -> None:
        if hasattr(self, "_runtime"):
            self.close()

    # ----------------------------------------------------------------------------------------

    def _live_context(self) -> trt.IExecutionContext:
        if self._context is None:
            raise RuntimeError(f"{self.path}: the engine was closed")
        return self._context

    def _unloadable(self, current: Platform, detail: str) -> str:
        built = self.sidecar.get("tensorrt_version", "an unknown TensorRT version")
        return (f"TensorRT {current.tensorrt_version} could not load {self.path} (built with {built}; {detail}): "
                f"rebuild it here with `{rebuild_command(self.sidecar, self.path)}`")


def _dims(dims: trt.Dims) -> tuple[int, ...]:
    return tuple(int(dims[i]) for i in range(len(dims)))


def _torch_dtype(dtype: trt.DataType, tensor: str) -> torch.dtype:
    import tensorrt as trt
    import torch

    # getattr: BF16 is new in TensorRT 9; engines built by the 8.x fallback must still load
    for trt_type, torch_type in ((trt.DataType.FLOAT, torch.float32), (trt.DataType.HALF, torch.float16),
                                 (getattr(trt.DataType, "BF16", None), torch.bfloat16)):
        if trt_type is not None and dtype == trt_type:
            return torch_type
    raise ValueError(f"tensor {tensor!r} has TensorRT dtype {dtype}; expected FLOAT, HALF or BF16")
