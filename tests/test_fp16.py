"""The FP16 graph of build_engine/fp16.py without TensorRT: its structure (LayerNorm kept FP32, I/O dtypes),
and its accuracy, executed with ONNX Runtime's CPU provider instead of TensorRT."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto

from build_engine.fp16 import DEFAULT_FP32_SOFTMAX, convert_to_fp16, graph_io_dtypes
from vitpose_trt.agreement import clear_peaks, compare_heatmaps
from vitpose_trt.export import export_onnx, save_onnx


# --------------------------------------------------------------------------------------------
# models and crops (the inline tiny net, `tiny_net_onnx`, is in conftest.py: the builder tests use it too)


@pytest.fixture(scope="module")
def tiny_vitpose_onnx(tiny_model, tmp_path_factory: pytest.TempPathFactory):
    path = tmp_path_factory.mktemp("vitpose") / "vitpose_tiny.onnx"
    export_onnx(tiny_model, path, opset=17, dynamic_batch=True)
    return tiny_model, path


@pytest.fixture(scope="module")
def real_crops(coco_sample) -> np.ndarray:
    """Up to 24 crops of the real photos cut by the real detector boxes (most confident first)."""
    from vitpose_trt import preprocess

    crops = []
    for _, frame, boxes in coco_sample:
        boxes = boxes[np.argsort(-boxes[:, 4])][:6]
        crops.append(preprocess(frame, boxes[:, :4], mode="udp")[0])
    return np.concatenate(crops)


def ort_run(path: Path, crops: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    dtype = np.float16 if inp.type == "tensor(float16)" else np.float32
    return sess.run(None, {inp.name: crops.astype(dtype)})[0].astype(np.float32)


def argmax_xy(heatmaps: np.ndarray) -> np.ndarray:
    n, k, h, w = heatmaps.shape
    idx = heatmaps.reshape(n, k, h * w).argmax(-1)
    return np.stack([idx % w, idx // w], axis=-1).astype(np.float64)


def relative_margin(heatmaps: np.ndarray) -> np.ndarray:
    """(top-1 - top-2) / |top-1| per heatmap: how far the peak stands above its nearest rival."""
    flat = np.sort(heatmaps.reshape(*heatmaps.shape[:2], -1), axis=-1)
    return (flat[..., -1] - flat[..., -2]) / np.maximum(np.abs(flat[..., -1]), 1e-30)


# --------------------------------------------------------------------------------------------
# the FP16 graph: structure


def _producers(graph: onnx.GraphProto) -> dict[str, onnx.NodeProto]:
    return {o: n for n in graph.node for o in n.output}


def _consumers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    out: dict[str, list[onnx.NodeProto]] = {}
    for n in graph.node:
        for i in n.input:
            out.setdefault(i, []).append(n)
    return out


def _cast_to(node: onnx.NodeProto) -> int:
    return next(a.i for a in node.attribute if a.name == "to")


def assert_fp32_island(model: onnx.ModelProto, op_type: str) -> int:
    """Every `op_type` node reads FP32 (Casts or FP32 weights) and its output is cast back to FP16."""
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    producers, consumers = _producers(graph), _consumers(graph)
    nodes = [n for n in graph.node if n.op_type == op_type]
    for node in nodes:
        for name in node.input:
            if not name:
                continue
            if name in inits:
                assert inits[name].data_type == TensorProto.FLOAT, f"{node.name}: weight {name} is not FP32"
            else:
                src = producers[name]
                assert src.op_type == "Cast" and _cast_to(src) == TensorProto.FLOAT, \
                    f"{node.name}: input {name} comes from {src.op_type}, not a Cast to FP32"
        for user in consumers[node.output[0]]:
            assert user.op_type == "Cast" and _cast_to(user) == TensorProto.FLOAT16, \
                f"{node.name}: output feeds {user.op_type}, not a Cast to FP16"
    return len(nodes)


def assert_fp16_weights(model: onnx.ModelProto, fp32_ops: tuple[str, ...]) -> None:
    """Every float initializer is FP16, except those that only feed an FP32-kept op."""
    consumers = _consumers(model.graph)
    for t in model.graph.initializer:
        if t.data_type not in (TensorProto.FLOAT, TensorProto.FLOAT16):
            continue  # shapes, indices
        users = {n.op_type for n in consumers.get(t.name, [])}
        want = TensorProto.FLOAT if users and users <= set(fp32_ops) else TensorProto.FLOAT16
        assert t.data_type == want, f"{t.name} (used by {users}) is {TensorProto.DataType.Name(t.data_type)}"


@pytest.mark.parametrize("fp32_softmax", [False, True])
def test_fp16_graph_keeps_layernorm_fp32(tiny_net_onnx, fp32_softmax):
    _, path = tiny_net_onnx
    graph = convert_to_fp16(path, fp32_softmax=fp32_softmax)
    model = graph.model
    onnx.checker.check_model(model, full_check=True)  # strict type inference: every edge type-checks
    assert assert_fp32_island(model, "LayerNormalization") == 1
    softmax_inputs = _producers(model.graph)[next(n for n in model.graph.node if n.op_type == "Softmax").input[0]]
    if fp32_softmax:
        assert assert_fp32_island(model, "Softmax") == 1
        assert graph.fp32_ops == ("LayerNormalization", "Softmax")
    else:
        assert softmax_inputs.op_type != "Cast"  # Softmax computes in FP16
        assert graph.fp32_ops == ("LayerNormalization",)
    assert_fp16_weights(model, graph.fp32_ops)
    # I/O: FP16 crops in (the warp kernel writes them), FP32 heatmaps out
    io = graph_io_dtypes(model)
    assert io == {"input": {"name": "input", "dtype": "float16"}, "output": {"name": "heatmaps", "dtype": "float32"}}
    assert (graph.input_dtype, graph.output_dtype) == ("float16", "float32")
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["precision"] == "fp16" and meta["fp32_ops"] == ",".join(graph.fp32_ops)


def test_fp16_graph_io_dtypes_are_selectable(tiny_net_onnx):
    _, path = tiny_net_onnx
    graph = convert_to_fp16(path, input_dtype="float32", output_dtype="float16")
    onnx.checker.check_model(graph.model, full_check=True)
    assert graph_io_dtypes(graph.model)["input"]["dtype"] == "float32"
    assert graph_io_dtypes(graph.model)["output"]["dtype"] == "float16"
    with pytest.raises(ValueError, match="input_dtype"):
        convert_to_fp16(path, input_dtype="int8")


def test_fp16_graph_refuses_an_fp16_graph(tiny_net_onnx, tmp_path):
    _, path = tiny_net_onnx
    fp16 = save_onnx(convert_to_fp16(path).model, tmp_path / "fp16.onnx")
    with pytest.raises(ValueError, match="expected an FP32 ONNX graph"):
        convert_to_fp16(fp16)


def test_fp16_graph_of_vitpose_with_shared_weights(tiny_vitpose_onnx):
    """The exporter routes equal weights (all-ones LayerNorm scales, zero biases) through Identity
    nodes shared by LayerNorm and FP16 ops; the converter alone makes an ill-typed graph of that."""
    model, path = tiny_vitpose_onnx
    source = onnx.load(str(path))
    assert any(n.op_type == "Identity" for n in source.graph.node), "expected the exporter's deduplicated weights"
    graph = convert_to_fp16(path)
    onnx.checker.check_model(graph.model, full_check=True)
    depth = len(model.backbone.blocks)
    assert assert_fp32_island(graph.model, "LayerNormalization") == 2 * depth + 1  # norm1, norm2, last_norm
    assert_fp16_weights(graph.model, graph.fp32_ops)
    assert not DEFAULT_FP32_SOFTMAX


# --------------------------------------------------------------------------------------------
# the FP16 graph: accuracy with ONNX Runtime (which can run it on the CPU)


def _check_fp16_argmax(reference: np.ndarray, fp16: np.ndarray) -> None:
    """FP16 may only move an argmax whose runner-up is within FP16 noise of it.

    Heatmap error bound: FP16 rounds to 2^-11 (5e-4) relative; the spatial softmax of the inline
    net turns a logit's rounding into a relative error of |logit| * 5e-4, about 1e-2 for its
    logits of up to ~20 (measured 4.9e-3; ViTPose's plain heatmaps: 7.5e-4), hence 2e-2.
    Argmax: a peak that stands >= 2 % above its nearest rival must not move. Random weights give
    near-ties too (about 1 keypoint in 400 here), which may flip to a far rival, so for all
    keypoints only 99 % must agree exactly: a mean-pixel bound would measure those ties, not FP16.
    """
    assert np.isfinite(fp16).all()
    assert np.abs(fp16 - reference).max() <= 2e-2 * np.abs(reference).max()
    dist = np.linalg.norm(argmax_xy(fp16) - argmax_xy(reference), axis=-1)
    clear = relative_margin(reference) >= 0.02
    assert clear.mean() > 0.5, "too few clear peaks for a meaningful test"
    assert dist[clear].max() == 0.0, f"{int((dist[clear] > 0).sum())} clear peaks moved"
    assert (dist == 0).mean() >= 0.99


def test_fp16_graph_accuracy_tiny_net(tiny_net_onnx, real_crops, tmp_path):
    model, path = tiny_net_onnx
    with torch.inference_mode():
        reference = model(torch.from_numpy(real_crops)).numpy()
    fp16_path = save_onnx(convert_to_fp16(path).model, tmp_path / "tiny.fp16.onnx")
    _check_fp16_argmax(reference, ort_run(fp16_path, real_crops))


@pytest.mark.parametrize("fp32_softmax", [False, True])
def test_fp16_graph_accuracy_vitpose(tiny_vitpose_onnx, real_crops, tmp_path, fp32_softmax):
    model, path = tiny_vitpose_onnx
    with torch.inference_mode():
        reference = model(torch.from_numpy(real_crops)).numpy()
    fp16_path = save_onnx(convert_to_fp16(path, fp32_softmax=fp32_softmax).model, tmp_path / "vitpose.fp16.onnx")
    fp16 = ort_run(fp16_path, real_crops)
    _check_fp16_argmax(reference, fp16)
    # the build's metric (decode-based, heatmap pixels) sees the same: only near-tied maps differ
    d = compare_heatmaps(reference, fp16, "udp")
    assert d.keypoints == reference.shape[0] * reference.shape[1]
    counted = clear_peaks(reference)
    moved = np.linalg.norm(argmax_xy(fp16) - argmax_xy(reference), axis=-1) > 0
    assert d.counted == counted.sum() > 0
    assert d.heatmap_px.mean <= d.heatmap_px.max * moved[counted].mean() + 1e-3


# --------------------------------------------------------------------------------------------
# graphs over protobuf's 2 GB


def test_fp16_conversion_of_a_graph_over_the_protobuf_limit(tiny_model, tmp_path, monkeypatch):
    pytest.importorskip("onnxconverter_common")
    import build_engine.fp16 as fp16
    import vitpose_trt.export as onnx_export

    by_path = []  # calls of ONNX's shape inference by path: the route taken over the limit
    infer_shapes_path = onnx.shape_inference.infer_shapes_path
    monkeypatch.setattr(onnx.shape_inference, "infer_shapes_path",
                        lambda *a, **kw: by_path.append(a) or infer_shapes_path(*a, **kw))
    path = export_onnx(tiny_model, tmp_path / "tiny.onnx").path
    small = fp16.convert_to_fp16(path).model
    assert not by_path
    # the limit's one home is vitpose_trt.export: fp16.py reads it there when it converts
    monkeypatch.setattr(onnx_export, "EXTERNAL_DATA_BYTES", 0)  # takes the shape-inference-by-path route
    big = fp16.convert_to_fp16(path).model
    assert len(by_path) == 1
    assert [n.op_type for n in big.graph.node] == [n.op_type for n in small.graph.node]
    assert fp16.graph_io_dtypes(big) == fp16.graph_io_dtypes(small)
