"""The CPU's default engine for a checkpoint: its ONNX export, made once and cached.

ONNX Runtime runs ViTPose about twice as fast as PyTorch eager on the CPU (docs/BENCHMARKS.md), so
`open_engine(checkpoint)` on a machine without a GPU exports the checkpoint once (checked against
PyTorch by `export_onnx`) and reuses the file. The cache key is the checkpoint's content (SHA-256
of its bytes; every file of a Hugging Face folder) plus the versions of this package and of torch
(the exporter), so a changed file or an upgrade exports anew.

Where: $VITPOSE_TRT_CACHE_DIR, else the user's cache directory (platformdirs: ~/.cache/vitpose_trt
on Linux). Safe with concurrent processes: the file is written to a temporary name and renamed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import platformdirs

import vitpose_trt
from vitpose_trt.agreement import INT8_DYNAMIC_TOLERANCE, compare_graphs, sample_crops
from vitpose_trt.datasets import get
from vitpose_trt.model_info import META_PRECISION, META_QUANTIZATION, read_metadata

log = logging.getLogger(__name__)

CACHE_ENV = "VITPOSE_TRT_CACHE_DIR"


def cache_dir() -> Path:
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env)
    return Path(platformdirs.user_cache_dir("vitpose_trt", appauthor=False))


def checkpoint_digest(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a checkpoint file, or of every file of a checkpoint folder (names and bytes)."""
    path = Path(os.fspath(path))
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        digest.update(str(f.relative_to(path) if path.is_dir() else f.name).encode())
        update_digest(digest, f)
    return digest.hexdigest()


def update_digest(digest, path: str | os.PathLike[str]) -> None:
    """Feed a file's bytes to a hashlib digest in 1 MiB blocks (any size, bounded memory)."""
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)


def _heavy(*, quantizer: bool = False) -> SimpleNamespace:
    """torch, onnx, onnxruntime and the package modules that import them (checkpoint, export); with
    `quantizer`, onnxruntime.quantization too."""
    # lazy: detect and the engines' chooser import this module, which must stay light; these load only
    # when a checkpoint is exported or a graph quantized
    import onnx
    import onnxruntime
    import torch

    from vitpose_trt import checkpoint, export

    if quantizer:
        import onnxruntime.quantization
    return SimpleNamespace(onnx=onnx, onnxruntime=onnxruntime, torch=torch, checkpoint=checkpoint, export=export)


def cached_onnx(checkpoint: str | os.PathLike[str], directory: str | os.PathLike[str] | None = None, *,
                dataset=None, expert: int | None = None) -> Path:
    """The ONNX export of `checkpoint` (with the ViTPose++ expert of `dataset` / `expert`, see
    `load_model`), exported (and checked against PyTorch) on first use."""
    heavy = _heavy()  # checkpoint.load_model looked up on use (the tests replace it)
    name = get(dataset).name if dataset is not None else None
    out = _entry(directory, Path(os.fspath(checkpoint)).stem, ".onnx", checkpoint_digest(checkpoint),
                 vitpose_trt.__version__, heavy.torch.__version__, name, expert)
    if out.is_file():
        log.debug("ONNX cache hit: %s", out)
        return out
    _make_dir(out.parent)
    log.info("exporting %s to ONNX once for ONNX Runtime on the CPU (cached in %s)", checkpoint, out.parent)
    heavy.export.export_onnx(heavy.checkpoint.load_model(checkpoint, dataset=dataset, expert=expert), out)
    return out


INT8_KEY = "int8-dynamic: MatMul weights int8 per output channel, activations quantized per call"


def cached_int8_onnx(fp32_onnx: str | os.PathLike[str], directory: str | os.PathLike[str] | None = None,
                     mode: str = "udp") -> Path:
    """The CPU's INT8 engine: `fp32_onnx` with its MatMuls dynamically quantized, made once and cached.

    ONNX Runtime's dynamic quantization: the MatMuls with a weight (the Linear layers) take INT8
    weights per output channel and activations quantized per call from their own range (no
    calibration); the attention's two activation-by-activation MatMuls and every other op stay
    FP32. Measured on the 2-core CPU: ~1.5x FP32's speed, keypoints within
    `INT8_DYNAMIC_TOLERANCE` of FP32 (see docs/BENCHMARKS.md). When made, it is checked against the
    FP32 graph on real crops (`agreement.sample_crops`); with no clear peak there, or random weights
    (whose "clear" peaks are as deep as the noise), nothing is judged.

    Raises:
        RuntimeError: the INT8 graph disagrees with FP32 beyond `INT8_DYNAMIC_TOLERANCE` (nothing
            is cached), or the cache folder cannot be written.
    """
    heavy = _heavy(quantizer=True)
    onnx, onnxruntime, export = heavy.onnx, heavy.onnxruntime, heavy.export
    fp32 = Path(os.fspath(fp32_onnx))
    digest = hashlib.sha256()
    update_digest(digest, fp32)
    out = _entry(directory, fp32.stem, ".int8.onnx", digest.hexdigest(), vitpose_trt.__version__,
                 onnxruntime.__version__, INT8_KEY)
    if out.is_file():
        log.debug("INT8 cache hit: %s", out)
        return out
    _make_dir(out.parent)
    log.info("quantizing %s to INT8 once for ONNX Runtime on the CPU (cached in %s)", fp32, out.parent)
    with export.staged_onnx(out) as staged, _quiet_onnxruntime_quantizer():
        quantization = onnxruntime.quantization
        quantization.quantize_dynamic(fp32, staged, op_types_to_quantize=["MatMul"], per_channel=True,
                                      weight_type=quantization.QuantType.QInt8,
                                      use_external_data_format=fp32.stat().st_size > export.EXTERNAL_DATA_BYTES)
        model = onnx.load(os.fspath(staged), load_external_data=False)
        size = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim][2:]
        crops, where = sample_crops(size, mode, max_crops=16)
        d, problems = compare_graphs(fp32, staged, crops, mode, tolerance=INT8_DYNAMIC_TOLERANCE)
        random = read_metadata({p.key: p.value for p in model.metadata_props})["random_weights"]
        if problems and random:  # random heatmaps' "clear" peaks are noise-deep: nothing to judge (benchmarks)
            log.warning("INT8 of RANDOM weights: not judged (%s)", "; ".join(problems))
        elif problems:
            raise RuntimeError(f"the INT8 graph of {fp32} disagrees with FP32 on {where} over {d.counted} clear "
                               f"peaks: {'; '.join(problems)}; run it in FP32")
        log.info("INT8 vs FP32 on %s: %d clear peaks, median %.3f, p99 %.3f heatmap px", where, d.counted,
                 d.heatmap_px.median, d.heatmap_px.p99)
        props = {p.key: p.value for p in model.metadata_props}
        props.update({META_PRECISION: "int8", META_QUANTIZATION: json.dumps({"recipe": INT8_KEY, "check": {
            "crops": where, "counted": d.counted, "median_px": d.heatmap_px.median, "p99_px": d.heatmap_px.p99}})})
        onnx.helper.set_model_props(model, props)
        onnx.save_model(model, os.fspath(staged))  # the metadata only: external weights stay where they are
    return out


@contextlib.contextmanager
def _quiet_onnxruntime_quantizer() -> Iterator[None]:
    """ONNX Runtime's quantizer logs a line per tensor on the root logger at INFO ("Ignore MatMul due
    to non constant B", ...): dropped for the call, its warnings kept."""

    def keep(record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or "onnxruntime" not in record.pathname

    root = logging.getLogger()
    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)


def _entry(directory: str | os.PathLike[str] | None, stem: str, suffix: str, *key_parts) -> Path:
    """The cache file for what `key_parts` identify: `<stem>-<24 hex of their SHA-256><suffix>`
    in `directory` (default: `cache_dir()`)."""
    key = hashlib.sha256("|".join(str(p) for p in key_parts).encode()).hexdigest()[:24]
    return (Path(directory) if directory is not None else cache_dir()) / f"{stem}-{key}{suffix}"


def _make_dir(root: Path) -> None:
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RuntimeError(f"cannot create the ONNX cache folder {root} ({e.strerror}); set ${CACHE_ENV} to a "
                           "writable folder, or run PyTorch with backend='pytorch'") from None
