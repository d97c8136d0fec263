"""ONNX Runtime: the pose engine (CPU) for an exported `model.onnx`, and any other graph run as it is
(a person detector, on the CPU or ONNX Runtime's GPU providers)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vitpose_trt._lazy import lazy_module
from vitpose_trt.engines.base import Engine, TensorSpec, check_max_batch, check_threads
from vitpose_trt.model_info import read_metadata

if TYPE_CHECKING:
    import onnxruntime as ort
else:  # lazy: the engines package (and so the CLI's --help) imports this module
    ort = lazy_module("onnxruntime")

# ONNX Runtime's tensor type strings -> numpy dtypes (the types the package's graphs use)
_NUMPY_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int32)": np.int32,
                "tensor(int64)": np.int64, "tensor(bool)": np.bool_, "tensor(uint8)": np.uint8}



def _load_session(path: Path, options: Any, providers: list[str]) -> Any:
    """An InferenceSession, or ValueError naming the file (ONNX Runtime raises its own classes, Fail,
    InvalidGraph, ..., for corrupt or unsupported files)."""
    try:
        return ort.InferenceSession(os.fspath(path), options, providers=providers)
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"{path}: not a loadable ONNX model ({first})") from None


def _spec(value: Any) -> TensorSpec:
    shape = tuple(d if isinstance(d, int) and d >= 0 else None for d in value.shape)
    return TensorSpec(value.name, shape, np.dtype(_NUMPY_TYPES.get(value.type, np.float32)))


class OnnxRuntimeGraph:
    """Any ONNX graph run as it is with ONNX Runtime (a `Graph`): a person detector's, for one.

    Args:
        path: the .onnx file.
        providers: ONNX Runtime execution providers in order of preference (default: TensorRT and
            CUDA where this ONNX Runtime has them, then the CPU).
        threads: intra-op threads of the CPU provider (None: one per core).

    Raises:
        FileNotFoundError: no such file. ValueError: not a loadable ONNX graph (named).
    """

    name = "onnxruntime"

    def __init__(self, path: str | os.PathLike[str], *, providers: list[str] | None = None,
                 threads: int | None = None) -> None:
        self.path = Path(os.fspath(path))
        if not self.path.is_file():
            raise FileNotFoundError(f"ONNX model not found: {self.path}")
        if providers is None:
            available = ort.get_available_providers()
            providers = [p for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider") if p in available]
            providers.append("CPUExecutionProvider")
        options = ort.SessionOptions()
        threads = check_threads(threads)
        if threads is not None:
            options.intra_op_num_threads = threads
        self.session = _load_session(self.path, options, providers)
        self.inputs = [_spec(v) for v in self.session.get_inputs()]
        self.outputs = [_spec(v) for v in self.session.get_outputs()]
        self.metadata: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map or {})
        self.sidecar: dict[str, Any] = {}
        self.providers: list[str] = list(self.session.get_providers())

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """One session run: {input name: array} -> the outputs in the graph's order."""
        if self.session is None:
            raise RuntimeError(f"{self.path}: the graph was closed")
        return list(self.session.run(None, feeds))

    def close(self) -> None:
        self.session = None


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
        path = Path(os.fspath(path))
        if not path.is_file():
            raise FileNotFoundError(f"ONNX model not found: {path}")
        opts = ort.SessionOptions()
        # No spin-waiting between runs: a real-time app shares the CPU (video decoding, a detector,
        # PyTorch), and threads that spin after each run take it from them. Measured on the 2-core
        # machine, ViTPose-B, 1 crop: idle 230-234 ms either way; beside a busy process and a busy
        # thread, 604 ms spinning vs 550-567 ms not.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        threads = check_threads(threads)
        if threads is not None:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        self.path = path
        self.session = _load_session(path, opts, ["CPUExecutionProvider"])
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
