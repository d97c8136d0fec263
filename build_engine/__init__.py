"""Build-time tools: ONNX export now, TensorRT engine building (`build_engine.tensorrt_build`).

Imports torch and onnx; the inference path (`vitpose_trt`) never imports this package.
"""

from build_engine.onnx_export import ExportResult, export_onnx

__all__ = ["ExportResult", "export_onnx"]
