"""ViTPose -> ONNX (opset >= 17, dynamic batch), checked with onnx.checker and against PyTorch.

Opset 17 is the first with LayerNormalization, so every LayerNorm stays one node: TensorRT can then
keep it in FP32 inside an FP16 engine (the FP16 LayerNorm overflow ViT users hit otherwise).
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)

INPUT_NAME, OUTPUT_NAME = "input", "heatmaps"
MIN_OPSET = 17
MAX_ABS_DIFF = 1e-4  # fp32 ONNX Runtime vs fp32 PyTorch: summation order only
EXTERNAL_DATA_BYTES = 1_800_000_000  # protobuf cannot hold a message over 2 GB (ViTPose-H in FP32 is 2.5 GB)


def save_onnx(model, path: str | os.PathLike) -> Path:
    """Save a ModelProto; over ~1.8 GB of weights they go to one `<name>.data` file beside it."""
    import onnx

    path = Path(os.fspath(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    if sum(len(t.raw_data) for t in model.graph.initializer) > EXTERNAL_DATA_BYTES:
        onnx.save_model(model, os.fspath(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=path.name + ".data")
    else:
        onnx.save_model(model, os.fspath(path))
    return path


@dataclass
class ExportResult:
    path: Path
    max_abs_diff: float  # largest heatmap difference ONNX Runtime vs PyTorch on the check batch
    random_weights: bool


def export_onnx(model=None, path: str | os.PathLike = "model.onnx", *, opset: int = MIN_OPSET,
                dynamic_batch: bool = True, check: bool = True, atol: float = MAX_ABS_DIFF) -> ExportResult:
    """Export a ViTPose model to ONNX and verify it.

    Args:
        model: an nn.Module, a checkpoint path, or None (random-weight ViTPose-B).
        path: where to write the .onnx file.
        opset: ONNX opset, at least 17.
        dynamic_batch: make the batch axis dynamic (needed for TensorRT optimization profiles).
        check: run the numeric check against PyTorch through ONNX Runtime.
        atol: the largest heatmap difference the check accepts.

    Raises:
        ValueError: opset < 17, or the ONNX model disagrees with PyTorch by more than `atol`.
    """
    import onnx

    if opset < MIN_OPSET:
        raise ValueError(f"opset must be >= {MIN_OPSET} (LayerNormalization), got {opset}")
    if not isinstance(model, torch.nn.Module):
        from vitpose_trt.checkpoint import load_model

        model = load_model(model)
    model = model.eval().float().cpu()
    config = model.config
    path = Path(path)
    dummy = torch.zeros(1, 3, *config.input_size)
    axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        # The TorchScript exporter is "legacy" since torch 2.9 but gives the plain, well-trodden
        # graph TensorRT parses best, and it needs no onnxscript. Its deprecation notice is noise here.
        warnings.simplefilter("ignore", DeprecationWarning)
        raw = Path(tmp) / "model.onnx"  # over 2 GB torch writes one loose file per weight here
        torch.onnx.export(model, (dummy,), str(raw), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          dynamic_axes=axes, opset_version=opset, dynamo=False, do_constant_folding=True)
        proto = onnx.load(str(raw))
    random_weights = bool(getattr(model, "random_weights", False))
    meta = {
        "variant": config.variant,
        "decoder": config.decoder,
        "num_keypoints": str(config.num_keypoints),
        "input_size": f"{config.input_size[0]}x{config.input_size[1]}",
        "random_weights": "true" if random_weights else "false",
        "producer": "vitpose_trt",
    }
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, str(value)
    save_onnx(proto, path)
    onnx.checker.check_model(str(path))  # by path: works past 2 GB

    diff = float("nan")
    if check:
        diff = _compare_with_torch(model, path, config.input_size)
        log.info("ONNX Runtime vs PyTorch: max heatmap difference %.3g", diff)
        if not diff <= atol:
            raise ValueError(f"{path}: ONNX Runtime differs from PyTorch by {diff:.3g} > {atol:g}")
    if random_weights:
        log.warning("%s was exported from RANDOM weights (not a trained model)", path)
    return ExportResult(path=path, max_abs_diff=diff, random_weights=random_weights)


def _compare_with_torch(model: torch.nn.Module, path: Path, input_size) -> float:
    import onnxruntime as ort

    x = np.random.default_rng(0).standard_normal((2, 3, *input_size)).astype(np.float32)
    with torch.inference_mode():
        ref = model(torch.from_numpy(x)).numpy()
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {INPUT_NAME: x})[0]
    return float(np.abs(got - ref).max())
