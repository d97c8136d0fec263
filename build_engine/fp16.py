"""FP32 ONNX -> the mixed-precision ONNX graph that a strongly typed TensorRT network is built from.

A strongly typed TensorRT network (`NetworkDefinitionCreationFlag.STRONGLY_TYPED`) runs every
layer in the dtype its ONNX tensors have: no builder heuristics, no silent FP16 LayerNorm. So
the precision decisions live here, in the graph, where they can be inspected and tested:

* FP16 weights and activations everywhere (tensor cores, half the memory traffic),
* except every LayerNormalization, which gets FP32 inputs, FP32 scale/bias and an FP32 output
  (Cast nodes around it). Its mean/variance reduction over D = 768..1280 channels overflows or
  loses all precision in FP16: the most reported failure of ViT/ViTPose TensorRT FP16 engines
  (NaN or garbage heatmaps). LayerNorm is a small, memory-bound part of the model, so FP32
  costs little.
* optionally Softmax too (`fp32_softmax`). Off by default, for two measured reasons:
  accuracy does not move (ONNX Runtime on the CPU, random-weight ViTPose-B, 32 real COCO crops:
  mean argmax disagreement with FP32 0.062 px with FP16 softmax vs 0.049 px with FP32 softmax,
  the same 1 keypoint in 544 flipping between near-tied maxima either way; with attention
  logits scaled x64 to mimic a trained model's sharp attention the mean relative heatmap error
  is 8.47e-2 both ways: the error comes from rounding q and k, which an FP32 softmax cannot
  undo), and Cast nodes around the softmax would split the QK^T-softmax-V chain that TensorRT
  fuses into one attention kernel. Caveat: ONNX Runtime's CPU provider runs many FP16 ops in
  FP32 internally (it inserts Casts), so these numbers measure FP16 rounding of weights and of
  tensors between ops, not FP16 arithmetic; the build-time check on the GPU measures the rest.

Graph I/O (an explicit decision, recorded in the engine sidecar as `io`):

* input float16: the GPU pipeline's warp kernel writes FP16 crops straight into the engine
  input, halving the largest upload/activation of the pipeline; the crop is built from 8-bit
  pixels, so FP16's 11-bit mantissa loses nothing.
* output float32: the heatmaps the decoder sees have the dtype every other engine returns (the
  host path and `postprocess` work unchanged); the DARK-UDP step takes the log of the blurred
  heatmap and a Newton step on it, which is where precision matters. The extra Cast touches
  N*K*64*48 values once (0.4 M for 8 crops), and TensorRT may fuse it into the last convolution.

Why onnxconverter-common's `convert_float_to_float16` (with `op_block_list`):
    - it rewrites the ONNX graph itself, so the result is a plain file that ONNX Runtime can
      run and the tests can inspect node by node on a CPU-only machine;
    - NVIDIA ModelOpt AutoCast (NVIDIA's suggested route for TensorRT 11) picks the FP32 nodes
      by heuristics (activation-magnitude thresholds, optionally on calibration data) and is a
      large dependency from NVIDIA's own package index; our rule is a fixed one (LayerNorm,
      optionally Softmax), which a block list states exactly and reproducibly;
    - exporting from PyTorch in FP16 (`model.half()`) bakes FP16 into every op, LayerNorm
      included (the ONNX LayerNormalization would then take FP16 inputs, and a strongly typed
      network honours that); keeping LayerNorm FP32 would need casts in the readable model.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx
from onnx import TensorProto, helper

from vitpose_trt import export as onnx_export
from vitpose_trt.export import save_onnx

log = logging.getLogger(__name__)

FP32_OPS = ("LayerNormalization",)  # always FP32: FP16 LayerNorm overflows (see the module docstring)
SOFTMAX_OP = "Softmax"
DEFAULT_FP32_SOFTMAX = False  # measured: FP32 softmax buys no accuracy (see the module docstring)
INPUT_DTYPE = "float16"  # default graph input dtype (the warp kernel writes FP16 crops)
OUTPUT_DTYPE = "float32"  # default graph output dtype (heatmaps)

_DTYPES: dict[str, int] = {"float16": TensorProto.FLOAT16, "float32": TensorProto.FLOAT}
_DTYPE_NAMES: dict[int, str] = {v: k for k, v in _DTYPES.items()}


@dataclass(frozen=True)
class Fp16Graph:
    """The result of `convert_to_fp16`.

    Attributes:
        model: the converted ModelProto.
        fp32_ops: op types kept in FP32 (always LayerNormalization, maybe Softmax).
        input_dtype: "float16" or "float32", the graph input dtype.
        output_dtype: "float16" or "float32", the graph output dtype.
        clamped_weights: how many weight tensors had values outside FP16's range that were
            clamped (tiny magnitudes to +-1e-7, huge ones to +-1e4); logged, not an error.
    """

    model: onnx.ModelProto
    fp32_ops: tuple[str, ...]
    input_dtype: str
    output_dtype: str
    clamped_weights: int


def fp32_ops_for(fp32_softmax: bool) -> tuple[str, ...]:
    """The op types kept in FP32: LayerNormalization always, Softmax when asked."""
    return FP32_OPS + ((SOFTMAX_OP,) if fp32_softmax else ())


def convert_to_fp16(model: onnx.ModelProto | str | os.PathLike[str], *, fp32_softmax: bool = DEFAULT_FP32_SOFTMAX,
                    input_dtype: str = INPUT_DTYPE, output_dtype: str = OUTPUT_DTYPE) -> Fp16Graph:
    """Convert an FP32 ViTPose ONNX graph to FP16 with LayerNorm (and optionally Softmax) in FP32.

    Args:
        model: the FP32 ModelProto, or a path to it (from `vitpose_trt.export.export_onnx`).
        fp32_softmax: keep Softmax in FP32 as well.
        input_dtype: "float16" (default) or "float32" for the graph input.
        output_dtype: "float32" (default) or "float16" for the graph output.

    Returns:
        An `Fp16Graph`; its model passes `onnx.checker.check_model(full_check=True)`.

    Raises:
        ValueError: the graph is not FP32 (already converted), or a dtype name is unknown.
    """
    for what, name in (("input_dtype", input_dtype), ("output_dtype", output_dtype)):
        if name not in _DTYPES:
            raise ValueError(f"{what} must be one of {sorted(_DTYPES)}, got {name!r}")
    model = onnx.load(os.fspath(model)) if not isinstance(model, onnx.ModelProto) else _copy(model)
    io = list(model.graph.input) + list(model.graph.output)
    not_fp32 = [v.name for v in io if v.type.tensor_type.elem_type != TensorProto.FLOAT]
    if not_fp32:
        raise ValueError(f"expected an FP32 ONNX graph (from `vitpose-trt export`); these inputs/outputs are not "
                         f"float32: {not_fp32}. The builder makes the FP16 graph itself.")

    blocked = fp32_ops_for(fp32_softmax)
    _untie_initializers(model.graph, blocked)
    shape_kwargs: dict[str, bool] = {}
    # read at call time from its one home, vitpose_trt.export (protobuf's 2 GB limit, with headroom)
    if sum(len(t.raw_data) for t in model.graph.initializer) > onnx_export.EXTERNAL_DATA_BYTES:
        # Over protobuf's 2 GB (ViTPose-H in FP32) the converter's in-memory shape inference fails:
        # infer by path instead, and tell the converter the shapes are there (I/O dtypes are checked above).
        model = _infer_shapes_by_path(model)
        shape_kwargs = {"disable_shape_infer": True, "check_fp16_ready": False}
    # keep_io_types=False: the converter then makes input and output FP16; the output dtype
    # is set afterwards (it only knows "both FP32" or "both FP16").
    converted, clamped = _run_converter(model, blocked, keep_io_types=False, **shape_kwargs)
    if clamped:
        log.info("FP16 conversion clamped values of %d weight tensors into the FP16 range", clamped)

    if input_dtype == "float32":
        _cast_graph_inputs_to_fp32(converted.graph)
    if output_dtype == "float32":
        _cast_graph_outputs_to_fp32(converted.graph)
    _remove_unused_initializers(converted.graph)
    meta = {"precision": "fp16", "fp32_ops": ",".join(blocked), "input_dtype": input_dtype,
            "output_dtype": output_dtype}
    _set_metadata(converted, meta)
    onnx.checker.check_model(converted, full_check=True)
    return Fp16Graph(converted, blocked, input_dtype, output_dtype, clamped)


def convert_detector_to_fp16(model: onnx.ModelProto | str | os.PathLike[str]) -> Fp16Graph:
    """Convert an FP32 person-detector graph to FP16, its inputs and outputs kept as they are.

    The same converter as the pose graph's, with its default block list (NonMaxSuppression, TopK,
    Resize, Range, ... stay FP32) and LayerNormalization kept FP32. Detector I/O stays FP32 (an
    image in, boxes and scores out; integer outputs such as mmdeploy's labels untouched): box
    coordinates leave the graph as FP32, although the head computes them in FP16, as Ultralytics'
    own half-precision TensorRT export does (at most 0.25 px of rounding at 512-1024 px of input).

    Two repairs that exporters' graphs need (found on Ultralytics' YOLOv8/YOLO11 exports, whose
    converted graphs otherwise do not load in ONNX Runtime):
      - the graph's stored `value_info` is dropped first and re-inferred by the converter: stale
        entries made it declare the outputs of FP32-kept Resize nodes FP16;
      - Cast nodes are left as they are (node block list): the converter retypes a Cast to FLOAT as
        FLOAT16 while its consumers keep expecting FLOAT.

    Raises:
        ValueError: 16-bit inputs, outputs or weights (the graph is converted already).
    """
    model = onnx.load(os.fspath(model)) if not isinstance(model, onnx.ModelProto) else _copy(model)
    io = list(model.graph.input) + list(model.graph.output)
    half = [v.name for v in io if v.type.tensor_type.elem_type in (TensorProto.FLOAT16, TensorProto.BFLOAT16)]
    half += [t.name for t in model.graph.initializer if t.data_type in (TensorProto.FLOAT16, TensorProto.BFLOAT16)]
    if half:
        raise ValueError(f"expected an FP32 detector graph; it holds 16-bit tensors already ({', '.join(half[:3])}"
                         f"{', ...' if len(half) > 3 else ''}). The builder makes the FP16 graph itself")
    blocked = FP32_OPS
    _untie_initializers(model.graph, blocked)
    del model.graph.value_info[:]
    casts = [n.name for n in model.graph.node if n.op_type == "Cast"]
    if len(set(casts)) != len(casts) or "" in casts:  # the block list goes by node name
        raise ValueError("the detector graph has unnamed or duplicate Cast node names; name its nodes uniquely")
    converted, clamped = _run_converter(model, blocked, keep_io_types=True, node_block_list=casts)
    _remove_unused_initializers(converted.graph)
    _set_metadata(converted, {"precision": "fp16", "fp32_ops": ",".join(blocked)})
    onnx.checker.check_model(converted, full_check=True)
    return Fp16Graph(converted, blocked, "float32", "float32", clamped)


def graph_io_dtypes(model: onnx.ModelProto) -> dict[str, dict[str, str]]:
    """{"input": {"name": ..., "dtype": "float16"}, "output": {...}} for a one-input one-output graph."""
    def one(values: Sequence[onnx.ValueInfoProto], what: str) -> dict[str, str]:
        if len(values) != 1:
            raise ValueError(f"expected one graph {what}, got {[v.name for v in values]}")
        elem = values[0].type.tensor_type.elem_type
        return {"name": values[0].name, "dtype": _DTYPE_NAMES.get(elem, TensorProto.DataType.Name(elem).lower())}

    return {"input": one(list(model.graph.input), "input"), "output": one(list(model.graph.output), "output")}


def _run_converter(model: onnx.ModelProto, blocked: Sequence[str], **kwargs: Any) -> tuple[onnx.ModelProto, int]:
    """onnxconverter-common's FP16 conversion with `blocked` op types kept in FP32; the converted graph
    and how many weight tensors the converter clamped into FP16's range."""
    from onnxconverter_common import float16

    with warnings.catch_warnings(record=True) as caught:
        # The converter warns once per tensor whose values it clamps into FP16 range (values
        # below 1e-7 in magnitude, typically exact-zero-ish weights): informative, not a problem.
        warnings.simplefilter("always")
        # op_block_list replaces the converter's default list (which keeps Resize, TopK, Range, ...
        # in FP32, e.g. the simple decoder's bilinear Resize), so ours is added to it, not substituted.
        block_list = list(dict.fromkeys([*float16.DEFAULT_OP_BLOCK_LIST, *blocked]))
        converted = float16.convert_float_to_float16(model, op_block_list=block_list, **kwargs)
    clamped = sum(1 for w in caught if "truncated" in str(w.message))
    for w in caught:
        if "truncated" not in str(w.message):
            log.warning("FP16 conversion: %s", w.message)
    return converted, clamped


def _infer_shapes_by_path(model: onnx.ModelProto) -> onnx.ModelProto:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.onnx", Path(tmp) / "shapes.onnx"
        save_onnx(model, src)
        onnx.shape_inference.infer_shapes_path(os.fspath(src), os.fspath(dst))
        return onnx.load(os.fspath(dst))


# --------------------------------------------------------------------------------------------
# graph surgery


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    return out


def _untie_initializers(graph: onnx.GraphProto, blocked_ops: Iterable[str]) -> None:
    """Give FP32-kept nodes their own copies of weights they share with FP16 nodes.

    The TorchScript exporter deduplicates equal initializers (all-ones LayerNorm scales, all-zero
    biases: every random-init model, and trained ones now and then) and routes the duplicates
    through `Identity` nodes. The converter then keeps a shared tensor FP32 for the LayerNorm
    and FP16 for the others at once, and the graph no longer type-checks. Folding
    Identity(initializer) into a copy and copying any initializer shared between a blocked and
    a converted node makes every weight belong to one precision. The copies are small (LayerNorm
    and bias vectors).
    """
    blocked = set(blocked_ops)
    inits = {t.name: t for t in graph.initializer}
    for node in list(graph.node):
        if node.op_type == "Identity" and len(node.input) == 1 and node.input[0] in inits:
            copy = TensorProto()
            copy.CopyFrom(inits[node.input[0]])
            copy.name = node.output[0]
            graph.initializer.append(copy)
            inits[copy.name] = copy
            graph.node.remove(node)

    users: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            if name in inits:
                users.setdefault(name, []).append(node)
    for name, nodes in users.items():
        kinds = {n.op_type in blocked for n in nodes}
        if kinds != {True, False}:
            continue
        copy_name = f"{name}__fp32"
        copy = TensorProto()
        copy.CopyFrom(inits[name])
        copy.name = copy_name
        graph.initializer.append(copy)
        for n in nodes:
            if n.op_type in blocked:
                for i, x in enumerate(n.input):
                    if x == name:
                        n.input[i] = copy_name
    _remove_unused_initializers(graph)


def _remove_unused_initializers(graph: onnx.GraphProto) -> None:
    used = {x for n in graph.node for x in n.input} | {o.name for o in graph.output}
    keep = [t for t in graph.initializer if t.name in used]
    if len(keep) != len(graph.initializer):
        del graph.initializer[:]
        graph.initializer.extend(keep)


def _cast_graph_inputs_to_fp32(graph: onnx.GraphProto) -> None:
    """FP32 graph inputs: the graph input becomes float32 and feeds a Cast to FP16."""
    for value in graph.input:
        if value.type.tensor_type.elem_type != TensorProto.FLOAT16:
            continue
        inner = f"{value.name}__fp16"
        for node in graph.node:
            for i, x in enumerate(node.input):
                if x == value.name:
                    node.input[i] = inner
        graph.node.insert(0, helper.make_node("Cast", [value.name], [inner], to=TensorProto.FLOAT16,
                                              name=f"{value.name}_cast_to_fp16"))
        value.type.tensor_type.elem_type = TensorProto.FLOAT


def _cast_graph_outputs_to_fp32(graph: onnx.GraphProto) -> None:
    """FP32 graph outputs: the last FP16 tensor is renamed and a Cast to FP32 produces the output."""
    for value in graph.output:
        if value.type.tensor_type.elem_type != TensorProto.FLOAT16:
            continue
        inner = f"{value.name}__fp16"
        for node in graph.node:
            for i, x in enumerate(node.output):
                if x == value.name:
                    node.output[i] = inner
            for i, x in enumerate(node.input):
                if x == value.name:
                    node.input[i] = inner
        graph.node.append(helper.make_node("Cast", [inner], [value.name], to=TensorProto.FLOAT,
                                           name=f"{value.name}_cast_to_fp32"))
        value.type.tensor_type.elem_type = TensorProto.FLOAT


def _set_metadata(model: onnx.ModelProto, values: dict[str, str]) -> None:
    existing = {p.key: p for p in model.metadata_props}
    for key, value in values.items():
        entry = existing.get(key)
        if entry is None:
            entry = model.metadata_props.add()
            entry.key = key
        entry.value = value
