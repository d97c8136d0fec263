"""Test-only stand-ins for what CI cannot run: a CUDA device (cuda.py) and TensorRT (tensorrt.py).

They live here, never in the package: the package has one seam for them
(`vitpose_trt.cuda_runtime.use_runtime`, and `sys.modules["tensorrt"]` for TensorRT).
"""
