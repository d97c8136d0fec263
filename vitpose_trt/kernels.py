"""The `vitpose_trt._C` kernels, one Python function per op (pytorch/extension-cpp's dispatch).

    warp(frame, inv, out, flip)                       -> the batched crop (preprocess), or a detector's
                                                         letterbox (normalize=, letterbox=: detect)
    decode(heatmaps, transforms, out, mode, ...)      -> argmax + refinement + flip merge (postprocess)

Each picks the CPU or the CUDA kernel from where `out` lives (a numpy array or a CUDA tensor) and,
on CUDA, enqueues on the current torch stream of `out`'s device: callers choose the stream with
`torch.cuda.stream(...)`, as with any PyTorch op, and never pass raw stream handles. This module is
the only one that calls `_C` (loading it once, with an error that says how to build it).
"""

from __future__ import annotations

import functools
from types import ModuleType

import numpy as np

IMPLS = ("numpy", "cpp", "cuda")


@functools.cache
def _load() -> ModuleType | None:
    # lazy: the extension is optional (None when not built); loaded once, on first use
    try:
        from vitpose_trt import _C
    except ImportError:
        return None
    return _C


def extension() -> ModuleType:
    """The `_C` module, or ImportError naming the fix."""
    mod = _load()
    if mod is None:
        raise ImportError(
            "vitpose_trt._C (the C++/CUDA pre/post-processing extension) is not built; "
            "reinstall with `pip install -e .` (needs CMake and a C++ compiler; nvcc for the CUDA kernels)"
        )
    return mod


def has_cpp() -> bool:
    return _load() is not None


def has_cuda_kernels() -> bool:
    """True when the extension was built with CUDA and a GPU is visible."""
    mod = _load()
    return mod is not None and bool(mod.cuda_available())


def check_impl(impl: str) -> str:
    if impl not in IMPLS:
        raise ValueError(f"unknown impl {impl!r}: expected one of {IMPLS}")
    return impl


def default_cpu_impl() -> str:
    """"cpp" where the extension is built, else the numpy reference."""
    return "cpp" if has_cpp() else "numpy"


def _stream_of(out) -> int | None:
    """The current torch stream's handle on `out`'s device, or None when `out` is host memory."""
    if isinstance(out, np.ndarray):
        return None
    import torch  # lazy: only a CUDA `out` needs torch; the numpy kernels must not import it

    if not isinstance(out, torch.Tensor) or out.device.type != "cuda":
        raise TypeError(f"out must be a numpy array or a CUDA torch tensor, got {type(out).__name__}"
                        f"{' on ' + str(out.device) if isinstance(out, torch.Tensor) else ''}")
    return torch.cuda.current_stream(out.device).cuda_stream


def _threads_kw(threads: int | None) -> dict:
    return {} if threads is None else {"threads": int(threads)}


def warp(frame, inv, out, flip: bool = False, *, threads: int | None = None, normalize: str = "imagenet",
         letterbox: tuple[int, int, int, int, int] | None = None) -> None:
    """Crop every box: out[i] = normalized RGB crop of `frame` through inv[i] (see csrc/warp.h).

    Args:
        frame: (H, W, 3) uint8 BGR: numpy for a numpy `out`, a CUDA array for a CUDA `out`.
        inv: (N, 2, 3) float64 crop -> frame matrices, on the same side as `out`.
        out: (N or 2N, 3, h, w) float32 (or float16 on CUDA), written in place.
        flip: also write the mirrored crops at out[N:].
        threads: CPU threads (None: the extension's default); ignored on CUDA.
        normalize: "imagenet" (the pose crop), or a detector family's: "yolo", "yolox", "rtmdet".
        letterbox: None (a crop), or (x0, y0, x1, y1, pad): the image region of the output, the
            level everywhere else, and the frame's edge repeated inside it (a detector's letterbox).
    """
    stream = _stream_of(out)
    if stream is None:
        extension().warp_cpu(frame, inv, out, flip, normalize=normalize, letterbox=letterbox, **_threads_kw(threads))
    else:
        extension().warp_cuda(frame, inv, out, flip, stream, normalize=normalize, letterbox=letterbox)


def decode(heatmaps, transforms, out, mode: str, flipped=None, flip_index=None, *,
           threads: int | None = None) -> None:
    """Keypoints from heatmaps into `out` (N, K, 3) (see csrc/decode.h); CPU or CUDA by `out`."""
    stream = _stream_of(out)
    if stream is None:
        extension().decode_cpu(heatmaps, transforms, out, mode, flipped, flip_index, **_threads_kw(threads))
    else:
        extension().decode_cuda(heatmaps, transforms, out, mode, flipped, flip_index, stream)
