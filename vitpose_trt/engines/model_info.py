"""What a model file says about the model in it: one reader, one set of keys.

`vitpose-trt export` writes these facts into the .onnx (`metadata_props`, the keys below), the
TensorRT builder copies them into a plan's sidecar (`sidecar.py`), and everything that opens a
model file without loading the network (the engines, the builder, the Triton repository writer)
reads them back here: `describe(path) -> ModelInfo` for an .onnx or a plan, `read_metadata(props)`
for a graph already open.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vitpose_trt.engines.sidecar import read_sidecar, sidecar_path

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


def describe(path: str | os.PathLike[str]) -> ModelInfo:
    """The pose model in an .onnx (its metadata; K and the crop size from its shapes where a graph
    exported elsewhere does not record them) or a TensorRT plan (its sidecar), without running it.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a plan without its sidecar, an .onnx whose shapes do not say K, or another kind
            of file (a checkpoint is described by loading it: `load_model`).
    """
    from vitpose_trt.engines import PLAN_SUFFIXES, is_plan  # lazy: a cycle (the engines package imports this module)

    path = Path(os.fspath(path))
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return info_from_onnx(load_onnx(path, weights=False), path)
    if is_plan(path):
        return _info_from_sidecar(path)
    raise ValueError(f"{path}: describe() reads an .onnx or a TensorRT plan ({', '.join(PLAN_SUFFIXES)}); "
                     "a checkpoint is read by loading it (vitpose_trt.load_model)")


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
    """`describe` of an loaded `onnx.ModelProto` (its weights need not be loaded)."""
    meta = read_metadata({p.key: p.value for p in proto.metadata_props})
    dims = [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim] if proto.graph.input else []
    out = [d.dim_value for d in proto.graph.output[0].type.tensor_type.shape.dim] if proto.graph.output else []
    k = meta["num_keypoints"] or (out[1] if len(out) == 4 and out[1] else None)
    if k is None:
        raise ValueError(f"{os.fspath(path)}: cannot tell the number of keypoints (no metadata, output shape {out})")
    size = meta["input_size"] or ((dims[2], dims[3]) if len(dims) == 4 and dims[2] and dims[3] else (256, 192))
    return ModelInfo(meta["variant"], int(k), meta["decoder"], (int(size[0]), int(size[1])), meta["random_weights"],
                     meta["dataset"], meta["precision"])


def _info_from_sidecar(path: Path) -> ModelInfo:
    sidecar = read_sidecar(path)
    if sidecar is None or "num_keypoints" not in sidecar:
        raise ValueError(f"{path}: the TensorRT plan's sidecar {sidecar_path(path).name} is missing or records no "
                         "model; it is written by `vitpose-trt build` next to the plan")
    size = sidecar.get("input_size") or (256, 192)
    return ModelInfo(str(sidecar.get("variant", "unknown")), int(sidecar["num_keypoints"]),
                     str(sidecar.get("decoder", "unknown")), (int(size[0]), int(size[1])),
                     bool(sidecar.get("random_weights", False)), sidecar.get("dataset"),
                     str(sidecar.get("precision", "fp32")))
