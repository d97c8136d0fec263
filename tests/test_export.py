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
    from vitpose_trt.model import build_random_model

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


def test_export_check_passes_the_fixture_and_catches_a_1_percent_weight_change(sample_model, coco_sample, tmp_path):
    """The self-check is relative to the heatmap scale, so on a model with real peaks (~1.0) it can
    fail: the same file checked against the model with ONE weight changed by 1% is refused."""
    import copy

    from vitpose_trt import preprocess
    from vitpose_trt.export import MAX_REL_DIFF, check_onnx_against_torch

    model = copy.deepcopy(sample_model)
    _, frame, boxes = coco_sample[0]
    crops = preprocess(frame, boxes[:2], "udp")[0]
    res = export_onnx(model, tmp_path / "s.onnx")
    assert res.max_rel_diff <= MAX_REL_DIFF and not res.random_weights
    assert check_onnx_against_torch(model, res.path, crops=crops) <= MAX_REL_DIFF
    w = model.keypoint_head.final_layer.weight
    with torch.no_grad():
        i = int(w.abs().argmax())
        w.view(-1)[i] *= 1.01
    with pytest.raises(ValueError, match="differs from PyTorch by .* of the heatmap scale"):
        check_onnx_against_torch(model, res.path, crops=crops)


def test_export_without_dynamic_batch_passes_its_own_check(tiny_model, tmp_path):
    res = export_onnx(tiny_model, tmp_path / "fixed.onnx", dynamic_batch=False)
    assert res.max_rel_diff <= 1e-4


def test_export_refuses_unwritable_targets_and_leaves_nothing(tiny_model, tmp_path):
    with pytest.raises(IsADirectoryError):
        export_onnx(tiny_model, tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        export_onnx(tiny_model, tmp_path / "missing" / "m.onnx")
    existing = tmp_path / "keep.onnx"
    existing.write_bytes(b"previous")
    with pytest.raises(ValueError, match="opset"):
        export_onnx(tiny_model, existing, opset=11)
    assert existing.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.onnx"]  # no temporary left behind


def test_cli_export_errors_are_one_line(tmp_path, capsys):
    from vitpose_trt.cli import main

    assert main(["export", "-o", str(tmp_path), "--variant", "s", "--no-check"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is a directory" in err[0]
    assert main(["export", "-o", str(tmp_path / "no" / "m.onnx"), "--variant", "s", "--no-check"]) == 2
    assert "does not exist" in capsys.readouterr().err
