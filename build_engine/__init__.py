"""Build-time tools: the FP16 ONNX graph (`build_engine.fp16`) and the TensorRT engine builder
(`build_engine.tensorrt_build`).

Depends on `vitpose_trt` (ONNX export lives there: `vitpose_trt.export`), never the reverse: only
the CLI's `build` command loads this package, lazily.
"""
