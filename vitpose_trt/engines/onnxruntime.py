"""ONNX Runtime engine (CPU): runs an exported `model.onnx`."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from vitpose_trt.engines.base import Engine, check_max_batch


class OnnxRuntimeEngine(Engine):
    """Runs an ONNX ViTPose with ONNX Runtime's CPU execution provider.

    Args:
        path: the .onnx file (from `vitpose-trt export`).
        threads: intra-op threads (None: ONNX Runtime's default, one per core).
        max_batch: most crops per session run (default: `DEFAULT_MAX_BATCH["cpu"]`; a graph exported
            with a fixed batch runs exactly that many).

    Raises:
        FileNotFoundError: no such file. ValueError: the file is not a loadable ONNX model, or not a
        float32 (N, 3, H, W) -> (N, K, h, w) graph with fixed H and W.
    """

    name = "onnxruntime"
    device = "cpu"

    def __init__(self, path: str | os.PathLike, threads: int | None = None, max_batch: int | None = None) -> None:
        import onnxruntime as ort

        path = Path(os.fspath(path))
        if not path.is_file():
            raise FileNotFoundError(f"ONNX model not found: {path}")
        opts = ort.SessionOptions()
        # No spin-waiting between runs: a real-time app shares the CPU (video decoding, a detector,
        # PyTorch), and threads that spin after each run take it from them. Measured on the 2-core
        # machine, ViTPose-B, 1 crop: idle 230-234 ms either way; beside a busy process and a busy
        # thread, 604 ms spinning vs 550-567 ms not.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads is not None:
            if threads < 1:
                raise ValueError(f"threads must be >= 1, got {threads}")
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        self.path = path
        try:
            self.session = ort.InferenceSession(os.fspath(path), opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # ONNX Runtime raises its own classes (Fail, InvalidGraph, ...) for bad files
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ValueError(f"{path}: not a loadable ONNX model ({first})") from None
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ValueError(f"{path}: expected one input and one output, got {len(inputs)} and {len(outputs)}")
        inp, out = inputs[0], outputs[0]
        if len(inp.shape) != 4 or len(out.shape) != 4:
            raise ValueError(f"{path}: expected a (N, 3, H, W) -> (N, K, h, w) model, got {inp.shape} -> {out.shape}")
        if inp.type != "tensor(float)":
            raise ValueError(f"{path}: expected a float32 input, got {inp.type} (FP16 graphs are for TensorRT)")
        if inp.shape[1] != 3:
            raise ValueError(f"{path}: expected 3 input channels (RGB crops), got input shape {inp.shape}")
        if not all(isinstance(d, int) for d in inp.shape[2:]):
            raise ValueError(f"{path}: the input's height and width must be fixed numbers, got {inp.shape} "
                             "(export with a fixed crop size, as `vitpose-trt export` does)")
        self.input_name = inp.name
        self.input_size = (int(inp.shape[2]), int(inp.shape[3]))
        if isinstance(out.shape[1], int):
            self.num_keypoints = out.shape[1]
        if all(isinstance(d, int) for d in out.shape[2:]):
            self._heatmap_size = (int(out.shape[2]), int(out.shape[3]))
        else:
            self._heatmap_size = (self.input_size[0] // 4, self.input_size[1] // 4)
        from vitpose_trt.export import read_metadata

        meta = read_metadata(self.session.get_modelmeta().custom_metadata_map)
        self.random_weights, self.dataset = meta["random_weights"], meta["dataset"]
        self.precision = meta["precision"]  # "int8": a quantized graph (engines/onnx_cache.py, build_engine/quantize.py)
        self.fixed_batch = inp.shape[0] if isinstance(inp.shape[0], int) else None  # exported without a batch axis
        self.max_batch = self.fixed_batch or check_max_batch(max_batch, "cpu")

    @property
    def heatmap_size(self) -> tuple[int, int]:
        return self._heatmap_size

    def _run(self, crops: np.ndarray) -> np.ndarray:
        n = len(crops)
        if self.fixed_batch is not None and n < self.fixed_batch:  # pad a fixed-batch graph
            crops = np.concatenate([crops, np.zeros((self.fixed_batch - n, *crops.shape[1:]), np.float32)])
        return self.session.run(None, {self.input_name: crops})[0][:n]

    def close(self) -> None:
        self.session = None
