"""The engine sidecar (vitpose_trt/engines/sidecar.py): its content, reading and writing, and the checks
that refuse an engine built for another TensorRT or GPU, with the command that rebuilds it."""

from __future__ import annotations

import json
import logging

import pytest

from build_engine.tensorrt_build import default_timing_cache_path, profile_shapes
from vitpose_trt.model_info import ModelInfo
from vitpose_trt.engines.sidecar import (
    EngineMismatchError,
    Platform,
    PlanRecord,
    check_compatibility,
    make_sidecar,
    read_sidecar,
    rebuild_command,
    sidecar_path,
    write_sidecar,
)


# --------------------------------------------------------------------------------------------
# content, reading and writing


def sample_sidecar(**overrides):
    """The sidecar of an FP16 ViTPose-B plan built on an H100; `overrides` replace any plan, platform or
    model entry by name."""
    plan = dict(
        profile=profile_shapes((256, 192), flip_test=True), precision="fp16", fp32_ops=("LayerNormalization",),
        strongly_typed=True, source_path="vitpose-b.pth", source_onnx_sha256="ab" * 32,
        build_args={"fp16": True, "max_batch": 64, "opt_batch": 8, "min_batch": 1, "flip_test": True,
                    "mode": "udp", "fp32_softmax": False, "workspace_gb": None},
        built_at="2025-01-01T00:00:00+00:00",
    )
    platform = dict(tensorrt_version="10.13.0.35", gpu_name="NVIDIA H100 80GB HBM3", compute_capability="9.0")
    model = dict(
        model=ModelInfo("vitpose-b", 17, "classic", (256, 192), False), mode="udp", flip_test=True,
        io={"input": {"name": "input", "dtype": "float16"}, "output": {"name": "heatmaps", "dtype": "float32"}},
    )
    for key, value in overrides.items():
        next(d for d in (plan, platform, model) if key in d)[key] = value
    return make_sidecar(PlanRecord(platform=Platform(**platform), **plan), **model)


def test_sidecar_content_and_round_trip(tmp_path):
    import vitpose_trt

    sidecar = sample_sidecar()
    assert sidecar["variant"] == "vitpose-b" and sidecar["num_keypoints"] == 17
    assert sidecar["input_size"] == [256, 192] and sidecar["mode"] == "udp" and sidecar["flip_test"] is True
    assert sidecar["batch"] == {"min": 1, "opt": 16, "max": 128}
    assert sidecar["precision"] == "fp16" and sidecar["fp32_ops"] == ["LayerNormalization"]
    assert sidecar["io"]["input"]["dtype"] == "float16" and sidecar["io"]["output"]["dtype"] == "float32"
    assert sidecar["tensorrt_version"] == "10.13.0.35"
    assert sidecar["gpu"] == {"name": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0"}
    assert sidecar["source"] == {"path": "vitpose-b.pth", "onnx_sha256": "ab" * 32}
    assert sidecar["built_at"] == "2025-01-01T00:00:00+00:00"
    assert sidecar["vitpose_trt_version"] == vitpose_trt.__version__
    assert sidecar["random_weights"] is False

    engine = tmp_path / "model.engine"
    written = write_sidecar(engine, sidecar)
    assert written == tmp_path / "model.engine.json" == sidecar_path(engine)
    assert read_sidecar(engine) == json.loads(written.read_text()) == sidecar
    assert read_sidecar(tmp_path / "other.engine") is None
    assert default_timing_cache_path(engine) == tmp_path / "model.engine.timing.cache"


def test_sidecar_build_date_defaults_to_now():
    sidecar = sample_sidecar(built_at=None)
    assert sidecar["built_at"].endswith("+00:00") and sidecar["built_at"][:2] == "20"


def test_read_sidecar_rejects_garbage(tmp_path):
    (tmp_path / "model.engine.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_sidecar(tmp_path / "model.engine")


# --------------------------------------------------------------------------------------------
# engine / machine mismatch


H100 = Platform("10.13.0.35", "NVIDIA H100 80GB HBM3", "9.0")


def test_matching_engine_passes():
    check_compatibility(sample_sidecar(), H100)


def test_other_tensorrt_version_is_refused_with_the_rebuild_command():
    with pytest.raises(EngineMismatchError) as err:
        check_compatibility(sample_sidecar(tensorrt_version="10.3.0.26"), H100, "models/pose.engine")
    message = str(err.value)
    assert "\n" not in message
    assert "TensorRT 10.3.0.26" in message and "10.13.0.35" in message
    assert "`vitpose-trt build vitpose-b.pth -o models/pose.engine --fp16 --flip-test`" in message


def test_other_gpu_architecture_is_refused():
    sidecar = sample_sidecar(gpu_name="NVIDIA L4", compute_capability="8.9", source_path=None)
    with pytest.raises(EngineMismatchError) as err:
        check_compatibility(sidecar, H100, "model.engine")
    message = str(err.value)
    assert "8.9" in message and "9.0" in message and "NVIDIA L4" in message
    assert message.endswith("`vitpose-trt build CHECKPOINT -o model.engine --fp16 --flip-test`")


def test_same_architecture_other_gpu_only_warns(caplog):
    sidecar = sample_sidecar(gpu_name="NVIDIA H100 PCIe")
    with caplog.at_level(logging.WARNING, logger="vitpose_trt.engines.tensorrt"):
        check_compatibility(sidecar, H100)
    assert "NVIDIA H100 PCIe" in caplog.text and "may be slower" in caplog.text


def test_sidecar_without_platform_keys_is_not_judged():
    check_compatibility({"variant": "vitpose-b"}, H100)


def test_rebuild_command_carries_the_build_options():
    sidecar = {"precision": "fp16", "source": {"path": "my model.pth"},
               "build_args": {"max_batch": 32, "opt_batch": 8, "mode": "classic", "flip_test": False}}
    assert rebuild_command(sidecar, "out/model.engine") == \
        "vitpose-trt build 'my model.pth' -o out/model.engine --fp16 --max-batch 32 --mode classic"
    assert rebuild_command(None) == "vitpose-trt build CHECKPOINT -o model.engine --fp16"
