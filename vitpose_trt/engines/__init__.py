"""Engines: a batch of normalized crops in, heatmaps out. One runner per framework, one interface.

`open_engine` picks the pose model's runner from what it is given:
    *.engine / *.plan   -> TensorRT (needs the tensorrt package and an NVIDIA GPU)
    *.onnx              -> ONNX Runtime (CPU)
    a checkpoint / None -> PyTorch: CUDA FP16 where a GPU is visible, else CPU FP32
`open_graph` opens any other model file (a person detector) by the same suffix rule (`is_plan`):
a plan on TensorRT (`TensorRTPlan`, which the pose engine runs on too), an .onnx on ONNX Runtime.
`describe(path) -> ModelInfo` reads what a model file records (variant, K, crop size, dataset)
without opening a runner: an .onnx's metadata (`vitpose_trt.model_info`) or a plan's sidecar.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vitpose_trt._lazy import lazy_module
from vitpose_trt.cuda_runtime import default_device
from vitpose_trt.engines.base import Engine, Graph
from vitpose_trt.engines.onnx_cache import cached_int8_onnx, cached_onnx
from vitpose_trt.engines.onnxruntime import OnnxRuntimeEngine, OnnxRuntimeGraph
from vitpose_trt.engines.sidecar import read_sidecar, rebuild_command, sidecar_path
from vitpose_trt.model_info import ModelInfo, info_from_onnx, load_onnx

if TYPE_CHECKING:
    import torch
else:  # lazy: the CLI imports this module for its --help, which must not import torch
    torch = lazy_module("torch")

log = logging.getLogger(__name__)

BACKENDS = ("auto", "tensorrt", "pytorch", "onnxruntime")
PRECISIONS = ("fp32", "fp16", "int8")
PLAN_SUFFIXES = (".engine", ".plan", ".trt")



def is_plan(path: str | os.PathLike[str]) -> bool:
    """True for a TensorRT plan by its file name (.engine, .plan, .trt): the one rule that sends a
    model file to TensorRT, for the pose model and the detector alike."""
    return Path(os.fspath(path)).suffix.lower() in PLAN_SUFFIXES


def open_graph(path: str | os.PathLike[str], *, kind: str, providers: list[str] | None = None,
               threads: int | None = None, device: str | int | None = None) -> Graph:
    """Open a model file that runs as it is (a person detector's) by its suffix, as `open_engine` does.

    Args:
        path: a TensorRT plan (.engine/.plan/.trt, built by `vitpose-trt build`) or an .onnx file.
        kind: what the caller runs (`sidecar.KIND_DETECTOR`): a plan whose sidecar says otherwise is
            refused by name.
        providers / threads: ONNX Runtime's execution providers and CPU threads (an .onnx only).
        device: the CUDA device of a plan (default: the current one).

    Raises:
        FileNotFoundError: no such file. ValueError: a file of another kind or type, or one that
        does not load (named). RuntimeError: a plan where no GPU is visible.
        TensorRTUnavailableError: a plan without TensorRT installed.
    """
    path = Path(os.fspath(path))
    if not path.is_file():
        raise FileNotFoundError(f"model not found: {path}")
    if is_plan(path):
        if providers is not None or threads is not None:
            log.debug("%s is a TensorRT plan: ONNX Runtime's providers and threads do not apply", path)
        from vitpose_trt.engines.tensorrt import TensorRTPlan  # lazy: imports torch (see _open_tensorrt)

        return TensorRTPlan(path, kind=kind, device=device)
    if path.suffix.lower() != ".onnx":
        raise ValueError(f"{path}: expected an .onnx graph or a TensorRT plan ({', '.join(PLAN_SUFFIXES)})")
    if device is not None:
        raise ValueError(f"device={device!r} picks the GPU of a TensorRT plan; for an .onnx choose ONNX Runtime's "
                         "providers instead")
    return OnnxRuntimeGraph(path, providers=providers, threads=threads)


def open_engine(source=None, *, backend: str = "auto", device: str | None = None, precision: str | None = None,
                threads: int | None = None, max_batch: int | None = None, dataset=None,
                expert: int | None = None) -> Engine:
    """Open an engine.

    Args:
        source: an Engine (returned as is), a path (.engine/.plan, .onnx, a checkpoint), an
            `nn.Module` (a `ViTPose` you built or loaded), or None for the random-weight ViTPose-B
            (benchmarks and tests; its outputs are labelled as such).
        backend: "auto", "tensorrt", "pytorch" or "onnxruntime". "auto" takes the file type, and for a
            checkpoint the machine: PyTorch on a GPU (CUDA FP16); ONNX Runtime on the CPU, from an
            ONNX export made once and cached (`vitpose_trt.engines.onnx_cache`; twice PyTorch's speed).
        device: "cpu", "cuda" or None (CUDA when available). A checkpoint on "cpu" runs in ONNX
            Runtime under "auto", in PyTorch with backend="pytorch".
        precision: "fp32" or "fp16" for PyTorch (None: fp16 on CUDA, fp32 on the CPU); "int8" runs a
            checkpoint or .onnx on the CPU through ONNX Runtime with its MatMuls dynamically
            quantized (`onnx_cache.cached_int8_onnx`, made once and checked against FP32). On a
            GPU, INT8/FP8 is a TensorRT engine built from a Q/DQ graph (`vitpose-trt quantize`).
        threads: CPU threads for ONNX Runtime and PyTorch on the CPU (None: their defaults).
        max_batch: most crops per engine call (None: `DEFAULT_MAX_BATCH` for the device, or the
            TensorRT profile's maximum).
        dataset / expert: for a checkpoint (or None): the keypoint dataset and ViTPose++ expert to
            load (see `load_model`); recorded as `engine.dataset`. Other sources record their own.

    Raises:
        FileNotFoundError: no such file. ValueError: a file the backend cannot run, or a bad option.
        RuntimeError: a CUDA device was asked for where there is none.
    """
    if isinstance(source, Engine):
        return source
    req = _request(source, backend=backend, device=device, precision=precision, threads=threads, max_batch=max_batch,
                   dataset=dataset, expert=expert)
    if req.plan or backend == "tensorrt":
        return _open_tensorrt(req)
    if precision == "int8":
        return _open_int8(req)
    if req.suffix == ".onnx" or backend == "onnxruntime":
        return _open_onnxruntime(req)
    return _open_torch(req)


@dataclass(frozen=True)
class _Request:
    """`open_engine`'s arguments, checked, with the source resolved to a path or a module."""

    path: Path | None  # a file (None: a module, or the random-weight model)
    module: Any  # an nn.Module given as the source, else None
    backend: str
    device: str | None
    precision: str | None
    threads: int | None
    max_batch: int | None
    dataset: Any
    expert: int | None

    @property
    def suffix(self) -> str:
        return self.path.suffix.lower() if self.path is not None else ""

    @property
    def plan(self) -> bool:
        return self.path is not None and is_plan(self.path)


def _request(source, **options: Any) -> _Request:
    """Check `open_engine`'s options and resolve its source (not an Engine) to a path or a module."""
    backend, precision, device = options["backend"], options["precision"], options["device"]
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: expected one of {BACKENDS}")
    if precision is not None and precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}: expected one of {PRECISIONS}")
    if device is not None and not isinstance(device, str):
        raise TypeError(f"device must be a string such as 'cpu' or 'cuda', got {type(device).__name__}")
    module = None
    path = None
    if source is not None and not isinstance(source, (str, os.PathLike)):
        if not isinstance(source, torch.nn.Module):
            raise TypeError(f"engine must be a path, an nn.Module, an Engine or None, got {type(source).__name__}")
        module = source
    elif source is not None:
        path = Path(os.fspath(source))
        if not path.exists():
            raise FileNotFoundError(f"engine, model or checkpoint not found: {path}")
    req = _Request(path, module, **options)
    if req.expert is not None and (module is not None or req.plan or req.suffix == ".onnx"):
        raise ValueError(f"expert={req.expert} picks a ViTPose++ expert when a checkpoint is loaded; "
                         f"{path or type(module).__name__} has one already (choose it at export / build time)")
    if req.plan and backend not in ("auto", "tensorrt"):
        raise ValueError(f"{path} is a TensorRT engine: it runs only with backend='tensorrt' (or 'auto')")
    return req


def _open_tensorrt(req: _Request) -> Engine:
    """A built plan on TensorRT (backend "tensorrt" runs nothing else)."""
    if not req.plan:
        raise ValueError(
            f"the TensorRT backend runs a built engine, not {req.path or 'a model'}; build one with "
            f"`{rebuild_command({'source': {'path': str(req.path)}} if req.path else None)}`"
        )
    # lazy: engines.tensorrt imports torch (and TensorRT on use); the CLI imports this module for its --help
    from vitpose_trt.engines.tensorrt import TensorRTEngine

    engine: Engine = TensorRTEngine(req.path, device=req.device, max_batch=req.max_batch)
    engine.dataset = (read_sidecar(req.path) or {}).get("dataset")
    if req.precision is not None and req.precision != engine.precision:
        raise ValueError(f"{req.path} is a {engine.precision} TensorRT engine, not {req.precision}: a plan's precision "
                         "is fixed when it is built")
    return engine


def _open_onnxruntime(req: _Request) -> Engine:
    """An .onnx file on ONNX Runtime (CPU)."""
    if req.suffix != ".onnx":
        raise ValueError(f"the onnxruntime backend needs an .onnx file, got {req.path or 'a model'}; export one "
                         "with `vitpose-trt export`")
    _check_cpu_device(req.device, "ONNX Runtime")
    return OnnxRuntimeEngine(req.path, threads=req.threads, max_batch=req.max_batch)


def _open_torch(req: _Request) -> Engine:
    """A checkpoint, module or the random-weight model: PyTorch, or under "auto" on the CPU a cached
    ONNX export on ONNX Runtime (see `open_engine`)."""
    # lazy: both import torch; the CLI imports this module for its --help
    from vitpose_trt.checkpoint import load_model
    from vitpose_trt.engines.pytorch import PyTorchEngine

    device = req.device if req.device is not None else default_device()
    if req.path is not None and req.backend == "auto" and device == "cpu" and req.precision in (None, "fp32"):
        onnx_path = cached_onnx(req.path, dataset=req.dataset, expert=req.expert)
        log.info("running %s with ONNX Runtime on the CPU (cached export %s; backend='pytorch' runs PyTorch)",
                 req.path, onnx_path)
        return OnnxRuntimeEngine(onnx_path, threads=req.threads, max_batch=req.max_batch)
    precision = req.precision or ("fp16" if device.startswith("cuda") else "fp32")
    if device.startswith("cuda"):
        log.info("TensorRT engine not given: running the PyTorch model on %s in %s", device, precision)
    module = req.module
    if module is None:
        module = load_model(req.path, dataset=req.dataset, expert=req.expert)
    engine = PyTorchEngine(module, device=device, precision=precision, max_batch=req.max_batch, threads=req.threads)
    engine.dataset = getattr(module, "dataset", None)
    return engine


def _open_int8(req: _Request) -> Engine:
    """precision="int8": a checkpoint or FP32 .onnx, dynamically quantized, on ONNX Runtime (CPU)."""
    build = rebuild_command({"source": {"path": "model.int8.onnx"}, "precision": "int8"})
    gpu_way = ("on a GPU, INT8 and FP8 are TensorRT engines: `vitpose-trt quantize MODEL -o model.int8.onnx "
               f"--calib IMAGES` then `{build}`")
    if req.backend not in ("auto", "onnxruntime"):
        raise ValueError(f"precision='int8' runs with ONNX Runtime on the CPU, not backend={req.backend!r}; {gpu_way}")
    if req.device is not None and req.device != "cpu":
        raise ValueError(f"precision='int8' runs on the CPU, not device={req.device!r}; {gpu_way}")
    if req.path is None:
        raise ValueError("precision='int8' needs a checkpoint or an .onnx file to quantize")
    fp32 = req.path if req.suffix == ".onnx" else cached_onnx(req.path, dataset=req.dataset, expert=req.expert)
    engine = OnnxRuntimeEngine(fp32, threads=req.threads, max_batch=req.max_batch)
    if engine.precision == "int8":  # quantized already (a Q/DQ graph, or a cached INT8 file)
        return engine
    engine.close()
    return OnnxRuntimeEngine(cached_int8_onnx(fp32), threads=req.threads, max_batch=req.max_batch)


def _check_cpu_device(device: str | None, runtime: str) -> None:
    if device is not None and device != "cpu":
        raise ValueError(f"{runtime} runs on the CPU here; device={device!r} needs a TensorRT engine or "
                         "backend='pytorch'")


__all__ = ["BACKENDS", "PRECISIONS", "Engine", "Graph", "ModelInfo", "describe", "is_plan", "open_engine", "open_graph"]


def describe(path: str | os.PathLike[str]) -> ModelInfo:
    """The pose model in an .onnx (its metadata; K and the crop size from its shapes where a graph
    exported elsewhere does not record them) or a TensorRT plan (its sidecar), without running it.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a plan without its sidecar, an .onnx whose shapes do not say K, or another kind
            of file (a checkpoint is described by loading it: `load_model`).
    """
    path = Path(os.fspath(path))
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return info_from_onnx(load_onnx(path, weights=False), path)
    if is_plan(path):
        return _info_from_sidecar(path)
    raise ValueError(f"{path}: describe() reads an .onnx or a TensorRT plan ({', '.join(PLAN_SUFFIXES)}); "
                     "a checkpoint is read by loading it (vitpose_trt.load_model)")


def _info_from_sidecar(path: Path) -> ModelInfo:
    """`describe` of a plan: the model entries of its sidecar."""
    sidecar = read_sidecar(path)
    if sidecar is None or "num_keypoints" not in sidecar:
        raise ValueError(f"{path}: the TensorRT plan's sidecar {sidecar_path(path).name} is missing or records no "
                         "model; it is written by `vitpose-trt build` next to the plan")
    size = sidecar.get("input_size") or (256, 192)
    return ModelInfo(str(sidecar.get("variant", "unknown")), int(sidecar["num_keypoints"]),
                     str(sidecar.get("decoder", "unknown")), (int(size[0]), int(size[1])),
                     bool(sidecar.get("random_weights", False)), sidecar.get("dataset"),
                     str(sidecar.get("precision", "fp32")))
