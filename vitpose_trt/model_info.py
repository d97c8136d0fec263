"""What a model file says about the model in it: the facts (`ModelInfo`) and their one set of keys.

`vitpose-trt export` writes these facts into the .onnx (`metadata_props`, the keys below), the
TensorRT builder copies them into a plan's sidecar (`engines/sidecar.py`), and everything that
opens a model file without loading the network reads them back: `read_metadata(props)` and
`info_from_onnx(proto)` here, and `vitpose_trt.engines.describe(path)` for any .onnx or plan.
Light (no torch; onnx only when a file is loaded), so the export below and the engines above share it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# The .onnx metadata keys (`metadata_props`), written by `export.export_onnx` and the quantizers.
META_VARIANT = "variant"
META_DECODER = "decoder"
META_NUM_KEYPOINTS = "num_keypoints"
META_INPUT_SIZE = "input_size"  # "256x192"
META_RANDOM_WEIGHTS = "random_weights"  # "true" / "false"
META_DATASET = "dataset"  # a vitpose_trt.datasets name
META_PRODUCER = "producer"  # "vitpose_trt"
META_PRECISION = "precision"  # written by the quantizers: "int8" (the CPU's dynamic INT8), "int8"/"fp8" (Q/DQ)
META_QUANTIZATION = "quantization"  # JSON {"recipe": ..., ...}: how a quantized graph was made


@dataclass(frozen=True)
class ModelInfo:
    """What a model file records about the model (a sidecar's model entries, an .onnx's metadata).

    Attributes:
        variant: "vitpose-b" etc.; "unknown" for a graph exported elsewhere.
        num_keypoints: K, the heatmaps' channels.
        decoder: "classic" / "simple" / "unknown".
        input_size: (height, width) of the crops.
        random_weights: built from the random model (its keypoints mean nothing).
        dataset: the keypoint dataset of the head (a `vitpose_trt.datasets` name), None when unrecorded.
        precision: "fp32", or what a quantizer made ("int8", "fp8"); a plan's build precision.
    """

    variant: str = "unknown"
    num_keypoints: int = 17
    decoder: str = "unknown"
    input_size: tuple[int, int] = (256, 192)
    random_weights: bool = False
    dataset: str | None = None
    precision: str = "fp32"

    @classmethod
    def of_model(cls, model: Any) -> ModelInfo:
        """What a loaded `ViTPose` is: its config, and its `random_weights` / `dataset` attributes."""
        config = model.config
        return cls(str(config.variant), int(config.num_keypoints), str(config.decoder),
                   (int(config.input_size[0]), int(config.input_size[1])),
                   bool(getattr(model, "random_weights", False)), getattr(model, "dataset", None))


def metadata_props(info: ModelInfo) -> dict[str, str]:
    """The `metadata_props` an export writes for `info` (read back by `read_metadata`)."""
    props = {
        META_VARIANT: info.variant,
        META_DECODER: info.decoder,
        META_NUM_KEYPOINTS: str(info.num_keypoints),
        META_INPUT_SIZE: f"{info.input_size[0]}x{info.input_size[1]}",
        META_RANDOM_WEIGHTS: "true" if info.random_weights else "false",
        META_PRODUCER: "vitpose_trt",
    }
    if info.dataset:
        props[META_DATASET] = info.dataset
    return props


def read_metadata(props: Mapping[str, str]) -> dict[str, Any]:
    """What an .onnx records (its `metadata_props` as a dict): {"variant", "decoder", "num_keypoints"
    (None when absent: a file exported elsewhere), "input_size" (None when absent), "random_weights",
    "dataset" (None when absent), "precision" ("fp32" unless a quantizer wrote "int8" / "fp8")}."""
    k = props.get(META_NUM_KEYPOINTS)
    size = props.get(META_INPUT_SIZE, "")
    h, _, w = size.partition("x")
    return {"variant": props.get(META_VARIANT, "unknown"), "decoder": props.get(META_DECODER, "unknown"),
            "num_keypoints": int(k) if k else None,
            "input_size": (int(h), int(w)) if h.isdigit() and w.isdigit() else None,
            "random_weights": props.get(META_RANDOM_WEIGHTS, "false") == "true",
            "dataset": props.get(META_DATASET) or None, "precision": props.get(META_PRECISION, "fp32")}


def load_onnx(path: str | os.PathLike[str], *, weights: bool = True) -> Any:
    """`onnx.load`, with a file that is not an ONNX model (truncated, another format) refused by name
    (ValueError) rather than as protobuf's DecodeError; `weights=False` leaves external weights unread."""
    import onnx  # lazy: heavy, and the engines package and the CLI import this module
    from google.protobuf.message import DecodeError  # protobuf: onnx's own dependency

    try:
        return onnx.load(os.fspath(path), load_external_data=weights)
    except DecodeError as e:
        raise ValueError(f"{os.fspath(path)}: not a loadable ONNX model (it does not parse: {e})") from None


def info_from_onnx(proto: Any, path: str | os.PathLike[str] = "model.onnx") -> ModelInfo:
    """What a loaded `onnx.ModelProto` records (its weights need not be loaded; `engines.describe`)."""
    meta = read_metadata({p.key: p.value for p in proto.metadata_props})
    dims = [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim] if proto.graph.input else []
    out = [d.dim_value for d in proto.graph.output[0].type.tensor_type.shape.dim] if proto.graph.output else []
    k = meta["num_keypoints"] or (out[1] if len(out) == 4 and out[1] else None)
    if k is None:
        raise ValueError(f"{os.fspath(path)}: cannot tell the number of keypoints (no metadata, output shape {out})")
    size = meta["input_size"] or ((dims[2], dims[3]) if len(dims) == 4 and dims[2] and dims[3] else (256, 192))
    return ModelInfo(meta["variant"], int(k), meta["decoder"], (int(size[0]), int(size[1])), meta["random_weights"],
                     meta["dataset"], meta["precision"])
