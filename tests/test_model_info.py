"""`model_info`: what a model file records, read back by one reader (`describe`)."""

from __future__ import annotations

import json

import onnx
import pytest

from vitpose_trt.engines import ModelInfo, describe
from vitpose_trt.model_info import META_NUM_KEYPOINTS, metadata_props, read_metadata


def test_metadata_round_trip():
    info = ModelInfo("vitpose-l", 133, "simple", (384, 288), True, "coco_wholebody")
    props = metadata_props(info)
    assert props[META_NUM_KEYPOINTS] == "133" and props["input_size"] == "384x288"
    meta = read_metadata(props)
    assert (meta["variant"], meta["num_keypoints"], meta["decoder"], meta["input_size"], meta["random_weights"],
            meta["dataset"], meta["precision"]) == ("vitpose-l", 133, "simple", (384, 288), True, "coco_wholebody",
                                                    "fp32")


def test_read_metadata_of_a_graph_from_elsewhere():
    meta = read_metadata({})
    assert meta["num_keypoints"] is None and meta["input_size"] is None and meta["variant"] == "unknown"
    assert read_metadata({"input_size": "x192"})["input_size"] is None  # malformed: unknown, not a crash


def test_describe_an_export(tiny_model, tmp_path):
    from vitpose_trt.export import export_onnx

    path = export_onnx(tiny_model, tmp_path / "tiny.onnx", check=False).path
    info = describe(path)
    config = tiny_model.config
    assert info == ModelInfo(config.variant, config.num_keypoints, config.decoder, tuple(config.input_size),
                             bool(getattr(tiny_model, "random_weights", False)), getattr(tiny_model, "dataset", None))

    # A graph exported elsewhere records nothing: K and the crop size come from its shapes.
    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(proto, str(bare))
    info = describe(bare)
    assert info.variant == "unknown" and info.num_keypoints == config.num_keypoints
    assert info.input_size == tuple(config.input_size)


def test_describe_a_plan_by_its_sidecar(tmp_path):
    from vitpose_trt.engines.sidecar import write_sidecar

    plan = tmp_path / "m.engine"
    plan.write_bytes(b"not read")
    write_sidecar(plan, {"kind": "pose", "variant": "vitpose-b", "decoder": "classic", "num_keypoints": 133,
                         "input_size": [256, 192], "random_weights": False, "dataset": "coco_wholebody",
                         "precision": "fp16"})
    assert describe(plan) == ModelInfo("vitpose-b", 133, "classic", (256, 192), False, "coco_wholebody", "fp16")


def test_describe_refuses_what_it_cannot_read(tmp_path):
    with pytest.raises(FileNotFoundError, match="model file not found"):
        describe(tmp_path / "absent.onnx")
    plan = tmp_path / "m.plan"
    plan.write_bytes(b"x")
    with pytest.raises(ValueError, match="sidecar m.plan.json is missing"):
        describe(plan)
    (tmp_path / "m.plan.json").write_text(json.dumps({"kind": "detector"}))
    with pytest.raises(ValueError, match="records no model"):
        describe(plan)
    ckpt = tmp_path / "m.pth"
    ckpt.write_bytes(b"x")
    with pytest.raises(ValueError, match="load_model"):
        describe(ckpt)


def test_a_file_that_is_not_onnx_is_refused_by_name(tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00\xffnot a protobuf" * 7)
    with pytest.raises(ValueError, match="junk.onnx: not a loadable ONNX model"):
        describe(junk)
