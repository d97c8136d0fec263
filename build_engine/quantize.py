"""FP32 ONNX -> a Q/DQ ONNX graph for TensorRT's explicit INT8 or FP8 (strongly typed networks).

TensorRT 10/11 builds INT8 and FP8 engines from QuantizeLinear/DequantizeLinear pairs in the graph
(explicit quantization; strongly typed networks have no implicit INT8 calibration). This module
writes those pairs by one fixed recipe, and checks the result on the CPU, where ONNX Runtime runs
Q/DQ graphs:

    where   the two inputs of every MatMul: the encoder's Linear layers (qkv, proj, fc1, fc2) and
            the attention's two matmuls (q k^T, and softmax(.) v: the softmax output is quantized
            as it enters the matmul). Nothing else: LayerNorm, GELU, Softmax, the residual adds,
            the patch-embedding convolution and the heatmap head keep their precision (FP16 in the
            engine: `build_engine.fp16` converts the rest of the graph, Q/DQ scales included).
    int8    weights per output channel, symmetric, scale = max|w| / 127 (the weights stay float
            behind a Q/DQ pair; TensorRT folds it at build time). Activations per tensor,
            symmetric, scale = the 99.99th percentile of |x| over the calibration crops / 127:
            the max would let one outlier coarsen every other value.
    fp8     E4M3, per tensor, weights and activations, scale = max|.| / 448 (max calibration:
            E4M3's exponent covers the range that an INT8 grid would have to clip).

Published with a COCO AP gate (ViTPose++-L, NVIDIA L4, TensorRT 11): INT8 by this recipe AP 0.809
-> 0.804 at 1.74x FP16's throughput (batch 16); NVIDIA ModelOpt's ViT recipe is the FP8 one.

Why the pairs are written here, and not by ONNX Runtime's `quantize_static` or by ModelOpt:
    - ModelOpt's PyTorch quantizer exports FP8 as TensorRT-domain ops (`trt::TRT_FP8QuantizeLinear`)
      that ONNX Runtime cannot run, so no CPU check could judge them; its ONNX quantizer (the
      `[onnx]` extra) replaces our onnxruntime with onnxruntime-gpu and pins an older onnx.
    - ONNX Runtime's `quantize_static` offers FP8 only with its distribution-fit calibration (not
      the recipe's max), by default also quantizes MatMul outputs where they enter the Softmax and
      the residual Add, and its histogram calibration of ViTPose-S took 380 s for 118 crops on the
      2-core CI machine. The exact percentile here streams over the crops, keeping only each
      tensor's largest values.
The graph is opset 19, the first with FP8 and FP16 Q/DQ scales. The recipe, the calibration and
every activation scale are recorded in the ONNX metadata (`model_info.META_QUANTIZATION`), and from
there in the engine's sidecar.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper, version_converter

from vitpose_trt.agreement import QDQ_TOLERANCE, compare_graphs
from vitpose_trt.atomic import writable_target
from vitpose_trt.batching import chunks
from vitpose_trt.coco import image_id_from_name, load_detections
from vitpose_trt.crop import preprocess
from vitpose_trt.detect import make_detector
from vitpose_trt.engines.onnx_cache import checkpoint_digest
from vitpose_trt.model_info import META_PRECISION, META_QUANTIZATION, load_onnx
from vitpose_trt.export import export_onnx, save_onnx, staged_onnx
from vitpose_trt.options import with_options
from vitpose_trt.sources import ImageSource, open_sources

log = logging.getLogger(__name__)

QDQ_OPSET = 19  # FP8 Q/DQ and FP16 scales (the FP16 engine graph) need opset 19
_QMAX = {"int8": 127.0, "fp8": 448.0}  # the largest magnitude each grid holds (E4M3: 448)
_ZERO_POINT_TYPE = {"int8": TensorProto.INT8, "fp8": TensorProto.FLOAT8E4M3FN}


class QuantizationError(RuntimeError):
    """The quantized graph disagrees with the FP32 model by more than the tolerance."""


@dataclass(frozen=True)
class Recipe:
    """How a graph is quantized (see the module docstring for why).

    Attributes:
        mode: "int8" or "fp8".
        percentile: activations' scale from this percentile of |x| (None: the max).
        per_channel: weights per output channel (else per tensor).
        ops: the op types whose float inputs get a Q/DQ pair.
    """

    mode: str
    percentile: float | None
    per_channel: bool
    ops: tuple[str, ...] = ("MatMul",)

    def __post_init__(self) -> None:
        if self.mode not in _QMAX:
            raise ValueError(f"mode must be one of {tuple(_QMAX)}, got {self.mode!r}")
        if self.percentile is not None and not 50 <= self.percentile <= 100:
            raise ValueError(f"percentile must be in [50, 100], got {self.percentile}")


RECIPES = {"int8": Recipe("int8", 99.99, True), "fp8": Recipe("fp8", None, False)}


@dataclass
class QuantizeResult:
    """What `quantize_onnx` wrote and measured."""

    path: Path
    recipe: Recipe
    crops: str
    activations: int  # activation tensors given a Q/DQ pair
    weights: int  # weight tensors given a Q/DQ pair
    check: dict = field(default_factory=dict)  # the accuracy check against FP32 (Disagreement + verdict)


# --------------------------------------------------------------------------------------------
# which tensors


def quantized_inputs(model: onnx.ModelProto, ops: Sequence[str]) -> tuple[list[str], list[str]]:
    """(activations, weights): the distinct float tensors that feed the `ops` nodes, in graph order.

    A weight is an initializer (or an Identity/Constant of one, as exporters route shared weights);
    an activation's type comes from ONNX shape inference (shape tensors and indices are left out).
    """
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type
             for v in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]}
    inits = {t.name: t for t in model.graph.initializer}
    constants = {n.output[0] for n in model.graph.node if n.op_type == "Constant"}
    identity = {n.output[0]: n.input[0] for n in model.graph.node if n.op_type == "Identity"}
    float_types = {TensorProto.FLOAT, TensorProto.FLOAT16}
    activations: list[str] = []
    weights: list[str] = []
    for node in model.graph.node:
        if node.op_type not in ops:
            continue
        for name in node.input:
            source = name
            while source in identity:
                source = identity[source]
            if not name or name in activations or name in weights:
                continue
            if source in inits:
                if inits[source].data_type in float_types and len(inits[source].dims) >= 1:
                    weights.append(name)
            elif source not in constants and types.get(name) in float_types:
                activations.append(name)
    return activations, weights


# --------------------------------------------------------------------------------------------
# calibration


def calibrate(model: onnx.ModelProto, names: Sequence[str], crops: np.ndarray, percentile: float | None,
              batch: int = 2) -> dict[str, float]:
    """Each tensor's calibrated magnitude over the crops: the `percentile` of |x| (exact, numpy's
    linear interpolation), or the max when `percentile` is None.

    The graph runs in ONNX Runtime with the tensors as extra outputs, `batch` crops at a time; only
    each tensor's largest values are kept between batches (the percentile needs just the tail).
    """
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    known = {o.name for o in probe.graph.output}
    probe.graph.output.extend(helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in names
                              if n not in known)
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    tails: dict[str, np.ndarray] = {n: np.zeros(0, np.float32) for n in names}  # largest |x| so far
    totals: dict[str, int] = dict.fromkeys(names, 0)
    for lo, hi in chunks(len(crops), batch):
        chunk = np.ascontiguousarray(crops[lo:hi])
        for name, value in zip(names, session.run(list(names), {input_name: chunk})):
            flat = np.abs(np.asarray(value, dtype=np.float32)).ravel()
            totals[name] += flat.size
            # enough of the tail for all the crops (a tensor's size per crop does not change)
            keep = 1 if percentile is None else math.ceil(flat.size / len(chunk) * len(crops) * (1 - percentile / 100)) + 2
            tails[name] = _largest(np.concatenate([tails[name], _largest(flat, keep)]), keep)
    if percentile is None:
        return {n: float(tails[n].max(initial=0.0)) for n in names}
    return {n: _percentile_from_tail(tails[n], totals[n], percentile) for n in names}


def _largest(values: np.ndarray, k: int) -> np.ndarray:
    """The k largest values, in no order (all of them when there are not more)."""
    return values if values.size <= k else np.partition(values, values.size - k)[values.size - k:]


def _percentile_from_tail(tail: np.ndarray, total: int, percentile: float) -> float:
    """numpy's percentile (linear interpolation) of `total` values, of which `tail` are the largest."""
    ordered = np.sort(tail)[::-1]  # descending: ordered[j] is the (total - 1 - j)-th smallest value
    position = (total - 1) * percentile / 100.0
    lo, hi = math.floor(position), math.ceil(position)
    a, b = ordered[total - 1 - lo], ordered[total - 1 - hi]
    return float(a + (b - a) * (position - lo))


# --------------------------------------------------------------------------------------------
# the graph


def insert_qdq(model: onnx.ModelProto, amax: dict[str, float], recipe: Recipe) -> onnx.ModelProto:
    """A copy of the (opset >= 19) graph with a QuantizeLinear -> DequantizeLinear pair on every
    input of the recipe's ops: activations with the calibrated magnitudes, weights from their values.

    Returns:
        the new ModelProto (the input is not modified).
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    inits = {t.name: t for t in graph.initializer}
    identity = {n.output[0]: n.input[0] for n in graph.node if n.op_type == "Identity"}
    activations, weights = quantized_inputs(out, recipe.ops)
    qmax, zp_type = _QMAX[recipe.mode], _ZERO_POINT_TYPE[recipe.mode]
    replacement: dict[str, str] = {}
    new_nodes: list[onnx.NodeProto] = []
    for name in [*activations, *weights]:
        if name in weights:
            source = name
            while source in identity:
                source = identity[source]
            w = numpy_helper.to_array(inits[source]).astype(np.float32)
            axis = w.ndim - 1 if recipe.per_channel else None  # MatMul(x, W): W's last axis is its output
            magnitude = (np.abs(w).max(axis=tuple(range(w.ndim - 1))) if axis is not None
                         else np.float32(np.abs(w).max()))
        else:
            axis, magnitude = None, np.float32(amax[name])
        scale = np.where(magnitude > 0, magnitude / qmax, 1.0).astype(np.float32)  # an all-zero tensor stays 0
        safe = name.replace("/", "_").replace(":", "_")
        scale_name, zp_name = f"{safe}_qdq_scale", f"{safe}_qdq_zero_point"
        graph.initializer.append(numpy_helper.from_array(scale, scale_name))
        graph.initializer.append(helper.make_tensor(zp_name, zp_type, list(scale.shape), np.zeros(scale.size).tolist()))
        q = helper.make_node("QuantizeLinear", [name, scale_name, zp_name], [f"{safe}_q"], name=f"{safe}_QuantizeLinear")
        dq = helper.make_node("DequantizeLinear", [f"{safe}_q", scale_name, zp_name], [f"{safe}_dq"],
                              name=f"{safe}_DequantizeLinear")
        if axis is not None:  # per channel
            for node in (q, dq):
                node.attribute.append(helper.make_attribute("axis", axis))
        new_nodes += [q, dq]
        replacement[name] = f"{safe}_dq"
    for node in graph.node:
        if node.op_type in recipe.ops:
            for i, name in enumerate(node.input):
                if name in replacement:
                    node.input[i] = replacement[name]
    # Q/DQ pairs go right before their first consumer: the graph stays topologically sorted
    nodes = list(graph.node)
    first_use: dict[str, int] = {}
    for index, node in enumerate(nodes):
        for name in node.input:
            first_use.setdefault(name, index)
    placed: dict[int, list[onnx.NodeProto]] = {}
    for q, dq in zip(new_nodes[::2], new_nodes[1::2]):
        placed.setdefault(first_use[dq.output[0]], []).extend([q, dq])
    del graph.node[:]
    for index, node in enumerate(nodes):
        graph.node.extend(placed.get(index, []))
        graph.node.append(node)
    return out


def recipe_metadata(recipe: Recipe, amax: dict[str, float], crops: str, weights: int, check: dict,
                    source: dict) -> str:
    """The ONNX metadata entry: recipe, calibration, each activation's scale, the check, the FP32 source."""
    qmax = _QMAX[recipe.mode]
    return json.dumps({"recipe": asdict(recipe), "calibration": {"crops": crops, "method": (
        "max" if recipe.percentile is None else f"percentile {recipe.percentile}")},
        "activation_scales": {name: value / qmax for name, value in amax.items()}, "weights": weights,
        "check": check, "source": source})


def read_quantization(model: onnx.ModelProto) -> dict | None:
    """The "quantization" metadata a Q/DQ graph from `quantize_onnx` carries (None: not one of ours)."""
    meta = {p.key: p.value for p in model.metadata_props}
    return json.loads(meta[META_QUANTIZATION]) if META_QUANTIZATION in meta else None


def has_qdq(model: onnx.ModelProto) -> bool:
    return any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node)


# --------------------------------------------------------------------------------------------
# the check, and the whole step


def quantize_onnx(fp32_onnx: str | os.PathLike[str], output: str | os.PathLike[str], crops: np.ndarray,
                  recipe: Recipe, *, crops_from: str = "", mode: str = "udp", verify: bool = True,
                  source: str | os.PathLike[str] | None = None) -> QuantizeResult:
    """Calibrate on `crops`, write the Q/DQ graph to `output`, check it against the FP32 graph.

    Args:
        fp32_onnx: the FP32 export (`vitpose-trt export`); converted to opset 19 when older.
        output: the .onnx to write (whole or not at all).
        crops: (N, 3, H, W) float32 calibration crops, real people (`calibration_crops`).
        recipe: `RECIPES["int8"]` or `RECIPES["fp8"]` (or another, for experiments).
        crops_from: where the crops came from (recorded).
        mode: "udp" or "classic", for decoding in the check.
        verify: raise `QuantizationError` (writing nothing) when the check fails.
        source: the FP32 model the graph stands for (default `fp32_onnx`), recorded with its digest:
            the TensorRT build judges the engine against it where it is still found unchanged.

    Returns:
        what was written and measured.
    """
    fp32 = load_onnx(fp32_onnx)
    if any(o.domain in ("", "ai.onnx") and o.version < QDQ_OPSET for o in fp32.opset_import):
        fp32 = version_converter.convert_version(fp32, QDQ_OPSET)
    if has_qdq(fp32):
        raise ValueError(f"{fp32_onnx} is already quantized: give the FP32 export")
    activations, weights = quantized_inputs(fp32, recipe.ops)
    log.info("calibrating %d activation tensors on %s (%s)", len(activations), crops_from or f"{len(crops)} crops",
             "max" if recipe.percentile is None else f"percentile {recipe.percentile}")
    amax = calibrate(fp32, activations, crops, recipe.percentile)
    quantized = insert_qdq(fp32, amax, recipe)
    d, problems = compare_graphs(fp32, quantized, crops, mode, tolerance=QDQ_TOLERANCE)
    check = {"metric": d.as_dict(), "tolerance": asdict(QDQ_TOLERANCE), "enforced": bool(verify and d.counted),
             "passed": not problems}
    log.info("%s Q/DQ graph vs FP32 on %s: %d clear peaks; median %.3f, p99 %.3f heatmap px, mean score "
             "difference %.4f of the peak", recipe.mode, crops_from or "the crops", d.counted, d.heatmap_px.median,
             d.heatmap_px.p99, d.score.mean)
    if verify and problems:
        raise QuantizationError(f"the {recipe.mode} graph disagrees with FP32 over {d.counted} clear peaks: "
                                f"{'; '.join(problems)} (nothing written; verify=False, the CLI's --no-verify, "
                                "keeps it anyway)")
    if not d.counted:
        log.warning("no keypoint of %s has a clear peak: the %s graph was not judged", crops_from or "the crops",
                    recipe.mode)
    meta = {p.key: p.value for p in quantized.metadata_props}
    origin = Path(os.fspath(source if source is not None else fp32_onnx)).resolve()
    meta.update({META_PRECISION: recipe.mode,
                 META_QUANTIZATION: recipe_metadata(recipe, amax, crops_from, len(weights), check,
                                                    {"path": str(origin), "digest": checkpoint_digest(origin)})})
    onnx.helper.set_model_props(quantized, meta)
    with staged_onnx(output) as staged:
        save_onnx(quantized, staged)
    return QuantizeResult(Path(os.fspath(output)), recipe, crops_from, len(activations), len(weights), check)


# --------------------------------------------------------------------------------------------
# from a user's photos


def calibration_crops(images: Sequence[str | os.PathLike[str]], *, dets: str | os.PathLike[str] | None = None,
                      detector=None, max_crops: int = 256, mode: str = "udp",
                      input_size: tuple[int, int] = (256, 192)) -> tuple[np.ndarray, str]:
    """Crops of real people for calibration, cut by this package's own pipeline.

    Boxes come from `dets` (COCO detections JSON, matched by file name or image id), else from
    `detector` (an .onnx person detector or a callable), else OpenCV's HOG (weak: few people). The
    most confident boxes over all images are taken, up to `max_crops`.

    Returns:
        (crops (M, 3, H, W) float32, a description of where they came from).

    Raises:
        ValueError: no image, or no person box in any of them.
    """
    if max_crops < 1:
        raise ValueError(f"max_crops (quantize's calib_crops=, the CLI's --calib-crops) must be >= 1, got {max_crops}")
    sources = open_sources([os.fspath(i) for i in images])
    for s in sources:
        s.close()
    photos = [s for s in sources if isinstance(s, ImageSource)]
    others = [s.name for s in sources if not isinstance(s, ImageSource)]
    if others:
        raise ValueError(f"the calibration images (calib=, the CLI's --calib) must be still images, not {', '.join(others)}")
    found = load_detections(dets) if dets is not None else None
    find = make_detector(detector) if found is None else None
    picked: list[tuple[float, int, np.ndarray]] = []  # (score, image, box)
    frames: list[np.ndarray] = []
    for frame in photos[0]:
        if found is not None:
            boxes = found["by_name"].get(frame.name)
            if boxes is None:
                boxes = found["by_id"].get(image_id_from_name(frame.name or ""), np.zeros((0, 5)))
        else:
            assert find is not None
            boxes = find(frame.image)
        picked += [(float(b[4]), len(frames), b[:4]) for b in np.asarray(boxes, np.float64).reshape(-1, 5)]
        frames.append(frame.image)
    picked.sort(key=lambda p: -p[0])
    picked = picked[:max_crops]
    if not picked:
        raise ValueError(f"no person box in the {len(frames)} calibration image(s) "
                         f"({'none in ' + str(dets) if dets else 'the detector found none'})")
    crops = [preprocess(frames[i], box[None], mode, input_size=input_size)[0] for _, i, box in picked]
    where = (f"{len(picked)} person crops of {len({i for _, i, _ in picked})} images, boxes from "
             f"{Path(os.fspath(dets)).name if dets else 'the detector'}")
    return np.concatenate(crops), where


@dataclass(frozen=True)
class QuantizeConfig:
    """The settings of `quantize`: `vitpose-trt quantize`'s options, by the same names.

    Attributes:
        calib: image files, folders or globs with people in them.
        dets / detector: where the calibration boxes come from (see `calibration_crops`).
        mode: "int8" or "fp8" (the recipes in the module docstring).
        calib_crops: most calibration crops (the most confident boxes).
        pipeline: "udp" or "classic", how crops are cut and heatmaps decoded.
        verify: refuse (write nothing) when the graph disagrees with FP32 beyond `QDQ_TOLERANCE`.
    """

    calib: Sequence[str]
    dets: str | os.PathLike[str] | None = None
    detector: Any = None
    mode: str = "int8"
    calib_crops: int = 256
    pipeline: str = "udp"
    verify: bool = True


def quantize(source: str | os.PathLike[str], output: str | os.PathLike[str], config: QuantizeConfig | None = None,
             **options: Any) -> QuantizeResult:
    """`vitpose-trt quantize`: a checkpoint or FP32 .onnx -> a checked Q/DQ .onnx for TensorRT.

    Args:
        source: a checkpoint (exported to ONNX at opset 19 first) or an FP32 .onnx.
        output: the Q/DQ .onnx to write.
        config: the settings; without one, `options` make it (`calib` is then required).
        **options: `QuantizeConfig` fields by name, replacing `config`'s
            (`quantize(src, out, calib=["photos/"], mode="fp8")`).

    Raises:
        TypeError: an option that is no `QuantizeConfig` field, or no `calib`.
        ValueError: an unknown mode, or no person box in the calibration images.
        FileNotFoundError: `source` is missing.
    """
    config = with_options(QuantizeConfig, config, options)
    if config.mode not in RECIPES:
        raise ValueError(f"mode= (the CLI's --mode) must be one of {tuple(RECIPES)}, got {config.mode!r}")
    writable_target(output)
    source = Path(os.fspath(source))
    if not source.exists():
        raise FileNotFoundError(f"model not found: {source}")
    with tempfile.TemporaryDirectory(prefix="vitpose-trt-quantize-") as tmp:
        fp32 = source
        if source.suffix.lower() != ".onnx":
            fp32 = export_onnx(source, Path(tmp) / "model.onnx", opset=QDQ_OPSET).path
        size = _input_size(load_onnx(fp32, weights=False))
        crops, where = calibration_crops(config.calib, dets=config.dets, detector=config.detector,
                                         max_crops=config.calib_crops, mode=config.pipeline, input_size=size)
        return quantize_onnx(fp32, output, crops, RECIPES[config.mode], crops_from=where, mode=config.pipeline,
                             verify=config.verify, source=source)


def _input_size(model: onnx.ModelProto) -> tuple[int, int]:
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    if len(dims) != 4 or not dims[2] or not dims[3]:
        raise ValueError(f"expected a (N, 3, H, W) ViTPose graph with a fixed H and W, got input dims {dims}")
    return dims[2], dims[3]
