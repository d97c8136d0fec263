"""vitpose_trt: ViTPose 2D human pose estimation without mmpose, fast on NVIDIA GPUs.

    frame + boxes -> crop (affine warp, normalize) -> engine (TensorRT / PyTorch / ONNX Runtime)
                  -> decode (argmax + DARK-UDP) -> keypoints (N, K, 3): x, y, score

Public API: `VitPoseTRT` (its settings: `PoseConfig`), `load_model`, `preprocess` (crop.py), `postprocess` (decode.py), `open_engine`, `export_onnx`;
for video, `PoseTracker` (detector -> pose -> ids -> smoothing) and `Detector` (ONNX person detectors; its settings: `DetectorConfig`).
Heavy modules (torch, onnxruntime, tensorrt) load on first use.
"""

from __future__ import annotations

from vitpose_trt._lazy import lazy_attributes

__version__ = "0.1.0"

_LAZY = {
    "VitPoseTRT": "vitpose_trt.pipeline",
    "PoseConfig": "vitpose_trt.pipeline",
    "PendingResult": "vitpose_trt.batching",
    "load_model": "vitpose_trt.checkpoint",
    "build_random_model": "vitpose_trt.model",
    "ViTPose": "vitpose_trt.model",
    "ViTPoseConfig": "vitpose_trt.model",
    "open_engine": "vitpose_trt.engines",
    "export_onnx": "vitpose_trt.export",
    "Engine": "vitpose_trt.engines",
    "PoseTracker": "vitpose_trt.pose_tracker",
    "Person": "vitpose_trt.pose_tracker",
    "Detector": "vitpose_trt.detect",
    "DetectorConfig": "vitpose_trt.detect",
    "TrackingConfig": "vitpose_trt.pose_tracker",
    "VideoConfig": "vitpose_trt.video",
    "preprocess": "vitpose_trt.crop",  # the crop stage (module crop.py)
    "postprocess": "vitpose_trt.decode",  # the decode stage (module decode.py)
}

__all__ = sorted(_LAZY) + ["__version__"]

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, __all__)
