"""ONNX Runtime engine (CPU): runs an exported `model.onnx`."""

from __future__ import annotations

import os

import numpy as np

from vitpose_trt.engines.base import Engine


class OnnxRuntimeEngine(Engine):
    """Runs an ONNX ViTPose with ONNX Runtime's CPU execution provider.

    Args:
        path: the .onnx file (from `vitpose-trt export`).
        threads: intra-op threads (None: ONNX Runtime's default, one per core).
    """

    name = "onnxruntime"
    device = "cpu"

    def __init__(self, path: str | os.PathLike, threads: int | None = None) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(os.fspath(path), opts, providers=["CPUExecutionProvider"])
        inp, out = self.session.get_inputs()[0], self.session.get_outputs()[0]
        if len(inp.shape) != 4 or len(out.shape) != 4:
            raise ValueError(f"{path}: expected a (N, 3, H, W) -> (N, K, h, w) model, got {inp.shape} -> {out.shape}")
        if inp.type != "tensor(float)":
            raise ValueError(f"{path}: expected a float32 input, got {inp.type} (FP16 graphs are for TensorRT)")
        self.input_name = inp.name
        self.input_size = (int(inp.shape[2]), int(inp.shape[3]))
        if isinstance(out.shape[1], int):
            self.num_keypoints = out.shape[1]
        meta = self.session.get_modelmeta().custom_metadata_map
        self.random_weights = meta.get("random_weights", "false") == "true"
        if isinstance(inp.shape[0], int):
            self.max_batch = inp.shape[0]  # exported without a dynamic batch axis

    def run(self, crops: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(crops, dtype=np.float32)
        return self.session.run(None, {self.input_name: x})[0]
