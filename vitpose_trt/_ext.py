"""Loads the compiled `vitpose_trt._C` extension once, with an error that says how to build it."""

from __future__ import annotations

import functools
from types import ModuleType

IMPLS = ("numpy", "cpp", "cuda")


@functools.cache
def _load() -> ModuleType | None:
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
