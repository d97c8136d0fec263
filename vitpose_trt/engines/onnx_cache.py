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

import hashlib
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

CACHE_ENV = "VITPOSE_TRT_CACHE_DIR"


def cache_dir() -> Path:
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env)
    import platformdirs

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


def cached_onnx(checkpoint: str | os.PathLike[str], directory: str | os.PathLike[str] | None = None, *,
                dataset=None, expert: int | None = None) -> Path:
    """The ONNX export of `checkpoint` (with the ViTPose++ expert of `dataset` / `expert`, see
    `load_model`), exported (and checked against PyTorch) on first use."""
    import torch

    import vitpose_trt
    from vitpose_trt.checkpoint import load_model
    from vitpose_trt.export import export_onnx

    from vitpose_trt.datasets import get

    name = get(dataset).name if dataset is not None else None
    key = hashlib.sha256(f"{checkpoint_digest(checkpoint)}|{vitpose_trt.__version__}|{torch.__version__}|{name}|"
                         f"{expert}".encode()).hexdigest()[:24]
    root = Path(directory) if directory is not None else cache_dir()
    out = root / f"{Path(os.fspath(checkpoint)).stem}-{key}.onnx"
    if out.is_file():
        log.debug("ONNX cache hit: %s", out)
        return out
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RuntimeError(f"cannot create the ONNX cache folder {root} ({e.strerror}); set ${CACHE_ENV} to a "
                           "writable folder, or run PyTorch with backend='pytorch'") from None
    log.info("exporting %s to ONNX once for ONNX Runtime on the CPU (cached in %s)", checkpoint, root)
    export_onnx(load_model(checkpoint, dataset=dataset, expert=expert), out)
    return out
