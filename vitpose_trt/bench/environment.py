"""What the benchmark ran on: GPU, driver, CPU, load, library versions, and whether the machine
was busy enough to make the numbers noisy."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib.metadata import version
from typing import Any

import cv2
import numpy as np
import torch

from vitpose_trt import __version__, kernels
from vitpose_trt.cuda_runtime import default_device, runtime


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def loadavg() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (None where the OS has none)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def _version(module: str) -> str | None:
    try:
        return version(module)
    except Exception:
        return None


def tensorrt_version() -> str | None:
    """TensorRT's version, or None where it is not installed (the `tensorrt-stubs` typing package
    alone leaves an empty `tensorrt` namespace package, which does not count)."""
    try:
        import tensorrt  # lazy: TensorRT is optional (and slow to import); only its version is read
    except ImportError:
        return None
    return getattr(tensorrt, "__version__", None)


def extension_status() -> tuple[bool, bool]:
    """(C++ kernels built, CUDA kernels usable): whether `vitpose_trt._C` imports and sees a GPU."""
    return kernels.has_cpp(), kernels.has_cuda_kernels()


def cuda_reason() -> str:
    """Why the CUDA rows cannot run here ("" when they can)."""
    if default_device() != "cuda":
        return "no CUDA GPU visible (torch.cuda.is_available() is False)"
    return ""


def environment() -> dict[str, Any]:
    """GPU, driver, CPU and library versions, and the load average now."""
    cpp, cuda_kernels = extension_status()
    env: dict[str, Any] = {
        "vitpose_trt": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "onnxruntime": _version("onnxruntime"),
        "transformers": _version("transformers"),
        "tensorrt": tensorrt_version(),
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "extension_cpp": cpp,
        "extension_cuda": cuda_kernels,
        "gpu": None,
        "driver": None,
        "load_average": loadavg(),  # other processes competing for the CPU make CPU rows slower
    }
    if default_device() == "cuda":
        rt = runtime()
        env["gpu"], env["gpu_capability"] = rt.describe(rt.device(None))
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=20, check=True)
            env["driver"] = out.stdout.strip().splitlines()[0]
        except (OSError, subprocess.SubprocessError, IndexError):
            pass
    return env


def load_warning(env: dict[str, Any]) -> str | None:
    """A warning when the 1-minute load average at the start or the end of the run was above the
    core count (other processes competed for the CPU), else None."""
    cores = env.get("cpu_cores") or 0
    readings = [(when, load[0]) for when, load in (("start", env.get("load_average")),
                                                   ("end", env.get("load_average_end"))) if load]
    busy = [f"{load:g} at the {when}" for when, load in readings if cores and load > cores]
    if not busy:
        return None
    return (f"WARNING: the machine was loaded (1-minute load average {' and '.join(busy)} on {cores} cores): "
            "other processes competed for the CPU, so CPU timings and the 'x base' ratios are noisy; "
            "rerun on an idle machine to compare rows")
