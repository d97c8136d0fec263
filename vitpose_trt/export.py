"""ViTPose -> ONNX (opset >= 17, dynamic batch), checked with onnx.checker and against PyTorch.

Opset 17 is the first with LayerNormalization, so every LayerNorm stays one node: TensorRT can then
keep it in FP32 inside an FP16 engine (the FP16 LayerNorm overflow ViT users hit otherwise).
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from vitpose_trt.atomic import writable_target
from vitpose_trt.checkpoint import load_model
from vitpose_trt.model_info import ModelInfo, metadata_props
from vitpose_trt.model import warn_random_weights

log = logging.getLogger(__name__)

INPUT_NAME, OUTPUT_NAME = "input", "heatmaps"
MIN_OPSET = 17
# FP32 ONNX Runtime vs FP32 PyTorch differ by summation order only: ~1e-6 of the heatmap scale
# (the largest |heatmap|) on ViTPose-S/B. 1e-4 leaves that 100x headroom and still catches one weight
# of a trained model changed by 1% (tests/test_export.py).
MAX_REL_DIFF = 1e-4
EXTERNAL_DATA_BYTES = 1_800_000_000  # protobuf cannot hold a message over 2 GB (ViTPose-H in FP32 is 2.5 GB)


def save_onnx(model, path: str | os.PathLike) -> Path:
    """Save a ModelProto; over ~1.8 GB of weights they go to one `<name>.data` file beside it."""
    path = Path(os.fspath(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    if sum(len(t.raw_data) for t in model.graph.initializer) > EXTERNAL_DATA_BYTES:
        onnx.save_model(model, os.fspath(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=path.name + ".data")
    else:
        onnx.save_model(model, os.fspath(path))
    return path


@contextlib.contextmanager
def staged_onnx(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a path in a temporary folder beside `path` to save an .onnx (and its .data) to; on
    success they are renamed into place, the .data first and the .onnx last (whoever sees the .onnx
    sees it whole); on error nothing is left behind and an existing file is not replaced."""
    path = Path(os.fspath(path))
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.name}.") as staging:
        yield Path(staging) / path.name
        for f in sorted(Path(staging).iterdir(), key=lambda f: f.suffix == ".onnx"):
            os.replace(f, path.parent / f.name)


@dataclass
class ExportResult:
    path: Path
    max_rel_diff: float  # largest |ONNX - PyTorch| heatmap difference / largest |PyTorch heatmap|
    random_weights: bool


def export_onnx(model=None, path: str | os.PathLike = "model.onnx", *, opset: int = MIN_OPSET,
                dynamic_batch: bool = True, check: bool = True, atol: float = MAX_REL_DIFF) -> ExportResult:
    """Export a ViTPose model to ONNX and verify it.

    Args:
        model: an nn.Module, a checkpoint path, or None (random-weight ViTPose-B).
        path: where to write the .onnx file.
        opset: ONNX opset, at least 17.
        dynamic_batch: make the batch axis dynamic (needed for TensorRT optimization profiles).
        check: run the numeric check against PyTorch through ONNX Runtime.
        atol: the largest heatmap difference the check accepts, relative to the heatmap scale.

    Raises:
        ValueError: opset < 17, or the ONNX model disagrees with PyTorch by more than `atol`.
        FileNotFoundError / PermissionError / IsADirectoryError: `path` cannot be written; nothing
            is written unless the export and its check succeed.
    """
    if opset < MIN_OPSET:
        raise ValueError(f"opset must be >= {MIN_OPSET} (LayerNormalization), got {opset}")
    path = writable_target(path)
    if not isinstance(model, torch.nn.Module):
        model = load_model(model)
    model = model.eval().float().cpu()
    # Everything is written beside `path`, checked, then renamed into place: a failed export or check
    # leaves nothing behind and never replaces an existing file by half a one.
    with staged_onnx(path) as staged:
        proto = _torch_export(model, opset=opset, dynamic_batch=dynamic_batch)
        for key, value in _metadata(model).items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, str(value)
        save_onnx(proto, staged)
        onnx.checker.check_model(str(staged))  # by path: works past 2 GB

        diff = float("nan")
        if check:
            diff = check_onnx_against_torch(model, staged, batch=2 if dynamic_batch else 1, atol=atol)
    random_weights = bool(getattr(model, "random_weights", False))
    if random_weights:
        warn_random_weights(f"{path} was exported from RANDOM weights (not a trained model)")
    return ExportResult(path=path, max_rel_diff=diff, random_weights=random_weights)


def _torch_export(model: torch.nn.Module, *, opset: int, dynamic_batch: bool) -> onnx.ModelProto:
    """The model's graph from torch's TorchScript exporter, loaded as an `onnx.ModelProto`."""
    config = model.config
    dummy = torch.zeros(1, 3, *config.input_size)
    axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        # The TorchScript exporter is "legacy" since torch 2.9 but gives the plain, well-trodden
        # graph TensorRT parses best, and it needs no onnxscript. Its deprecation notice is noise here.
        warnings.simplefilter("ignore", DeprecationWarning)
        raw = Path(tmp) / "model.onnx"  # over 2 GB torch writes one loose file per weight here
        torch.onnx.export(model, (dummy,), str(raw), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          dynamic_axes=axes, opset_version=opset, dynamo=False, do_constant_folding=True)
        return onnx.load(str(raw))


def _metadata(model: torch.nn.Module) -> dict[str, str]:
    """The metadata_props `export_onnx` writes for `model` (read back by `model_info.read_metadata`)."""
    return metadata_props(ModelInfo.of_model(model))


def check_onnx_against_torch(model: torch.nn.Module, path: str | os.PathLike, *, batch: int = 2,
                             atol: float = MAX_REL_DIFF, crops: np.ndarray | None = None) -> float:
    """The export self-check: ONNX Runtime's heatmaps vs PyTorch's on the same crops.

    The difference is measured relative to the heatmaps' own scale (the largest |value| PyTorch
    gives), so the check means the same for a trained model (peaks ~1) and random weights (~1e-4).

    Args:
        model: the FP32 PyTorch model the file should equal.
        path: the .onnx file.
        batch: crops per run (1 for a graph exported without a dynamic batch axis).
        atol: the largest accepted difference, as a fraction of the heatmap scale.
        crops: (batch, 3, H, W) float32 crops; default seeded random ones.

    Returns:
        max |ONNX - PyTorch| / max |PyTorch|.

    Raises:
        ValueError: the difference is above `atol` (the message gives both numbers).
    """
    if crops is None:
        crops = np.random.default_rng(0).standard_normal((batch, 3, *model.config.input_size)).astype(np.float32)
    with torch.inference_mode():
        ref = model(torch.from_numpy(crops)).numpy()
    sess = ort.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {INPUT_NAME: crops})[0]
    scale = float(np.abs(ref).max())
    rel = float(np.abs(got - ref).max()) / scale if scale > 0 else float(np.abs(got - ref).max())
    log.info("ONNX Runtime vs PyTorch: max heatmap difference %.3g of the heatmap scale %.3g", rel, scale)
    if not rel <= atol:
        raise ValueError(f"{path}: ONNX Runtime differs from PyTorch by {rel:.3g} of the heatmap scale "
                         f"(largest |heatmap| {scale:.3g}) > {atol:g}")
    return rel
