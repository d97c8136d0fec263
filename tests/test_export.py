"""ONNX export: opset, LayerNormalization kept whole, dynamic batch, metadata, numeric check."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from vitpose_trt.export import export_onnx


def test_tiny_export_structure_and_dynamic_batch(tiny_model, tmp_path):
    res = export_onnx(tiny_model, tmp_path / "tiny.onnx")
    assert res.max_rel_diff <= 1e-4 and res.random_weights
    proto = onnx.load(str(res.path))
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("LayerNormalization") == 2 * tiny_model.config.depth + 1  # norm1, norm2 per block + last
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["random_weights"] == "true" and meta["num_keypoints"] == "17"
    x = np.random.default_rng(0).standard_normal((3, 3, 256, 192)).astype(np.float32)
    got = ort.InferenceSession(str(res.path), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    with torch.inference_mode():
        np.testing.assert_allclose(got, tiny_model(torch.from_numpy(x)).numpy(), atol=1e-4)


def test_opset_below_17_is_refused(tiny_model, tmp_path):
    with pytest.raises(ValueError, match="opset"):
        export_onnx(tiny_model, tmp_path / "m.onnx", opset=16)


@pytest.mark.parametrize("decoder", ["classic", "simple"])
def test_vitpose_b_onnx_equals_pytorch(decoder, tmp_path):
    from vitpose_trt.checkpoint import build_random_model

    model = build_random_model("b", decoder=decoder)
    res = export_onnx(model, tmp_path / f"b-{decoder}.onnx")
    assert res.max_rel_diff <= 1e-4


def test_weights_over_the_protobuf_limit_go_to_one_data_file(tiny_model, tmp_path, monkeypatch):
    # ViTPose-H in FP32 is 2.5 GB, over protobuf's 2 GB; pretend the tiny model is that big.
    import vitpose_trt.export as onnx_export

    monkeypatch.setattr(onnx_export, "EXTERNAL_DATA_BYTES", 0)
    res = export_onnx(tiny_model, tmp_path / "big.onnx")
    assert res.max_rel_diff <= 1e-4  # ONNX Runtime read the external weights
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.onnx", "big.onnx.data"]


def test_fp16_conversion_of_a_graph_over_the_protobuf_limit(tiny_model, tmp_path, monkeypatch):
    pytest.importorskip("onnxconverter_common")
    import build_engine.fp16 as fp16

    path = export_onnx(tiny_model, tmp_path / "tiny.onnx").path
    small = fp16.convert_to_fp16(path).model
    monkeypatch.setattr(fp16, "EXTERNAL_DATA_BYTES", 0)  # takes the shape-inference-by-path route
    big = fp16.convert_to_fp16(path).model
    assert [n.op_type for n in big.graph.node] == [n.op_type for n in small.graph.node]
    assert fp16.graph_io_dtypes(big) == fp16.graph_io_dtypes(small)
