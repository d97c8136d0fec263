"""Engines: a batch of normalized crops in, heatmaps out. One runner per framework, one interface.

`open_engine` picks the runner from what it is given:
    *.engine / *.plan   -> TensorRT (needs the tensorrt package and an NVIDIA GPU)
    *.onnx              -> ONNX Runtime (CPU)
    a checkpoint / None -> PyTorch: CUDA FP16 where a GPU is visible, else CPU FP32
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from vitpose_trt.engines.base import Engine

log = logging.getLogger(__name__)

BACKENDS = ("auto", "tensorrt", "pytorch", "onnxruntime")
PLAN_SUFFIXES = (".engine", ".plan", ".trt")


def open_engine(source=None, *, backend: str = "auto", device: str | None = None,
                precision: str | None = None) -> Engine:
    """Open an engine.

    Args:
        source: an Engine (returned as is), a path (.engine/.plan, .onnx, a checkpoint), or None for
            the random-weight ViTPose-B (benchmarks and tests; its outputs are labelled as such).
        backend: "auto" (from the file type and the machine), "tensorrt", "pytorch" or "onnxruntime".
        device: for PyTorch: "cpu", "cuda" or None (CUDA when available).
        precision: for PyTorch: "fp32" or "fp16" (None: fp16 on CUDA, fp32 on the CPU).
    """
    if isinstance(source, Engine):
        return source
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: expected one of {BACKENDS}")
    path = None if source is None else Path(os.fspath(source))
    if path is not None and not path.exists():
        raise FileNotFoundError(f"engine, model or checkpoint not found: {path}")
    suffix = path.suffix.lower() if path is not None else ""

    if suffix in PLAN_SUFFIXES and backend not in ("auto", "tensorrt"):
        raise ValueError(f"{path} is a TensorRT engine: it runs only with backend='tensorrt' (or 'auto')")
    if suffix in PLAN_SUFFIXES or backend == "tensorrt":
        if suffix not in PLAN_SUFFIXES:
            raise ValueError(
                f"the TensorRT backend runs a built engine, not {path}; build one with "
                f"`vitpose-trt build {path or 'CHECKPOINT'} -o model.engine --fp16`"
            )
        from vitpose_trt.engines.tensorrt import TensorRTEngine

        return TensorRTEngine(path, device=device)
    if suffix == ".onnx" or backend == "onnxruntime":
        if suffix != ".onnx":
            raise ValueError(f"the onnxruntime backend needs an .onnx file, got {path}; export one with `vitpose-trt export`")
        from vitpose_trt.engines.onnxruntime import OnnxRuntimeEngine

        return OnnxRuntimeEngine(path)

    import torch

    from vitpose_trt.checkpoint import load_model
    from vitpose_trt.engines.torch_engine import TorchEngine

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if precision is None:
        precision = "fp16" if device.startswith("cuda") else "fp32"
        if device.startswith("cuda"):
            log.info("TensorRT engine not given: running the PyTorch model on %s in %s", device, precision)
    return TorchEngine(load_model(path), device=device, precision=precision)


__all__ = ["BACKENDS", "Engine", "open_engine"]
