"""Build-time tools: the FP16 ONNX graph (`fp16`), the INT8/FP8 Q/DQ graph (`quantize`), and the
TensorRT engine builder for the pose model (`tensorrt_build`) and for a person detector
(`detector_build`, on the same builder). `build` picks which from the source.

Depends on `vitpose_trt` (ONNX export lives there: `vitpose_trt.export`), never the reverse: the
CLI's `build` and `quantize` commands load it when they run. Importing any of its modules loads them
all, with torch and onnx.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from build_engine.detector_build import build_detector, is_detector_source
from build_engine.tensorrt_build import BuildConfig, build_pose
from vitpose_trt.engines.tensorrt import require_tensorrt
from vitpose_trt.options import with_options

if TYPE_CHECKING:
    import torch

__all__ = ["BuildConfig", "build"]


def build(source: str | os.PathLike[str] | torch.nn.Module | None, output: str | os.PathLike[str],
          config: BuildConfig | None = None, **options: Any) -> Path:
    """Build a TensorRT engine and its sidecar (`vitpose-trt build`): a pose model's
    (`tensorrt_build.build_pose`), or a person detector's (`detector_build.build_detector`) for an
    .onnx without ViTPose metadata whose outputs `vitpose_trt.detect.Detector` reads, or any .onnx
    when `detector_format` / `detector_family` is named.

    Args:
        source: a checkpoint, an FP32 or Q/DQ .onnx, an nn.Module, None (random-weight ViTPose-B),
            or a detector's .onnx.
        output: the plan path, e.g. "model.engine"; the sidecar goes to "model.engine.json".
        config / **options: the settings (`BuildConfig`; fields by name replace `config`'s).

    Raises:
        TensorRTUnavailableError: TensorRT is not installed (before any work).
        TypeError: an option that is no `BuildConfig` field.
        ValueError: pose options (batch sizes, mode, flip test) given for a detector; and what the
            two builders raise.
    """
    config = with_options(BuildConfig, config, options)
    require_tensorrt()  # before the minutes of export, with the one-line install hint
    if not is_detector_source(source, config.detector_format, config.detector_family):
        return build_pose(source, output, config)
    given = config.pose_options_given()
    if given:
        raise ValueError(f"{source} is a person detector: {', '.join(given)} are options of the pose model's "
                         "engine (a detector's engine takes one image, batch 1)")
    assert isinstance(source, (str, os.PathLike))  # is_detector_source: an .onnx path
    return build_detector(source, output, config)
