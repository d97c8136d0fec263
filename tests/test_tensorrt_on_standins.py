"""The TensorRT code run for real in CI: `vitpose-trt build --fp16`, `TensorRTEngine` and the GPU path
around it, the sidecar's checks and the Triton repository, on the TensorRT stand-in
(tests/standins/tensorrt.py: ONNX Runtime executes the plan's FP16 graph) over the CUDA stand-in.

What this proves: the builder and the runner call TensorRT's API in a working order with working
arguments (profile, shapes, addresses, streams), the plan's I/O dtypes meet the kernels', batches are
chunked within the profile, and every check around TensorRT (version, GPU, verification) fires.
What it cannot prove: anything about TensorRT's own kernels, speed or FP16 accuracy on a GPU.
"""

from __future__ import annotations

import json
import logging
import re
import sys

import numpy as np
import pytest

from tests.standins import tensorrt as standin_trt
from tests.standins.cuda import CudaStandIn
from vitpose_trt import VitPoseTRT, cli
from vitpose_trt.cuda_runtime import use_runtime
from vitpose_trt.engines.sidecar import EngineMismatchError, read_sidecar, sidecar_path
from vitpose_trt.engines.tensorrt import TensorRTEngine
from vitpose_trt.gpu_path import GpuPath


def install(monkeypatch: pytest.MonkeyPatch, rt: CudaStandIn) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", standin_trt)
    monkeypatch.setattr(standin_trt, "FAULT", None)


@pytest.fixture
def standins(monkeypatch):
    """The TensorRT stand-in as `tensorrt`, over a CUDA stand-in; a race fails the test."""
    rt = CudaStandIn()
    install(monkeypatch, rt)
    with use_runtime(rt):
        yield rt
    assert not rt.races, "\n".join(rt.races)


@pytest.fixture(scope="module")
def plan(sample_checkpoint, coco_sample, tmp_path_factory):
    """`vitpose-trt build FIXTURE -o model.engine --fp16 --max-batch 4`, run once on the stand-ins."""
    out = tmp_path_factory.mktemp("plan") / "model.engine"
    with pytest.MonkeyPatch.context() as mp, use_runtime(CudaStandIn()) as rt:
        install(mp, rt)
        assert cli.main(["build", str(sample_checkpoint), "-o", str(out), "--fp16", "--max-batch", "4"]) == 0
    return out


@pytest.fixture(scope="module")
def photo(coco_sample):
    """One photo and its 10 most confident detector boxes (10 > the plan's batch of 4)."""
    _, frame, boxes = coco_sample[0]
    return frame, boxes[np.argsort(-boxes[:, 4])][:10, :4]


# --------------------------------------------------------------------------------------------
# vitpose-trt build --fp16


def test_build_writes_plan_sidecar_and_timing_cache(plan, sample_checkpoint):
    sidecar = read_sidecar(plan)
    assert sidecar is not None and plan.read_bytes().startswith(standin_trt.PLAN_MAGIC)
    assert sidecar["tensorrt_version"] == standin_trt.__version__
    assert sidecar["gpu"] == {"name": "Stand-in GPU (CPU)", "compute_capability": "9.0"}
    assert sidecar["precision"] == "fp16" and sidecar["strongly_typed"] is True
    assert sidecar["fp32_ops"] == ["LayerNormalization"]
    assert sidecar["io"] == {"input": {"name": "input", "dtype": "float16"},
                             "output": {"name": "heatmaps", "dtype": "float32"}}
    assert sidecar["batch"] == {"min": 1, "opt": 4, "max": 4}
    assert sidecar["variant"] == "vitpose-s" and sidecar["random_weights"] is False
    assert sidecar["source"]["path"] == str(sample_checkpoint)
    check = sidecar["verification"]
    assert check["enforced"] is True and check["reference"] == "PyTorch FP32"
    assert check["metric"]["counted"] > 0.8 * check["metric"]["keypoints"]  # the fixture's real peaks
    from build_engine.tensorrt_build import VERIFY_TOLERANCE

    assert check["tolerance"] == vars(VERIFY_TOLERANCE)  # numbers read back as numbers (median_px: inf)
    assert check["metric"]["heatmap_px"]["max"] < 0.05  # FP16 graph vs FP32 model
    cache = plan.with_name(plan.name + ".timing.cache").read_bytes()
    assert cache.startswith(standin_trt.CACHE_MAGIC) and len(json.loads(cache[len(standin_trt.CACHE_MAGIC):])["entries"]) == 1
    assert not list(plan.parent.glob(".vitpose-trt-build-*")), "the temporary export folder was left behind"


def test_rebuild_reuses_the_timing_cache_and_a_foreign_one_is_replaced(standins, plan, tmp_path, caplog):
    again = tmp_path / "again.engine"
    cache = tmp_path / "again.engine.timing.cache"
    cache.write_bytes(plan.with_name(plan.name + ".timing.cache").read_bytes())
    from build_engine import build

    with caplog.at_level(logging.DEBUG):
        build(read_sidecar(plan)["source"]["path"], again, max_batch=4, verify=False)
    assert "using the timing cache" in caplog.text and "timing cache hit" in caplog.text
    caplog.clear()
    with use_runtime(CudaStandIn(capability="8.9", gpu_name="NVIDIA L4")), caplog.at_level(logging.DEBUG):
        build(read_sidecar(plan)["source"]["path"], again, max_batch=4, verify=False)
    assert "does not fit this TensorRT/GPU; starting a new one" in caplog.text
    assert json.loads(cache.read_bytes()[len(standin_trt.CACHE_MAGIC):])["gpu"] == "8.9"


def test_the_build_verification_removes_a_wrong_engine(standins, sample_checkpoint, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(standin_trt, "FAULT", "shift")  # every heatmap one pixel to the right
    out = tmp_path / "wrong.engine"
    assert cli.main(["build", str(sample_checkpoint), "-o", str(out), "--fp16", "--max-batch", "4"]) == 2
    err = capsys.readouterr().err
    assert "disagrees with PyTorch FP32" in err and "mean distance" in err and "were removed" in err
    assert not out.exists() and not sidecar_path(out).exists()


def test_a_static_batch_onnx_fails_to_build_as_with_tensorrt(standins, tiny_model, tmp_path):
    """An ONNX export with a fixed batch of 1 cannot take the profile's batches 1..4: TensorRT's
    builder refuses it (here its stand-in), and `build` says so without leaving files behind."""
    from build_engine import build
    from vitpose_trt.export import export_onnx

    static = tmp_path / "static.onnx"
    export_onnx(tiny_model, static, dynamic_batch=False, check=False)
    out = tmp_path / "static.engine"
    with pytest.raises(RuntimeError, match="TensorRT failed to build an engine from model.fp16.onnx"):
        build(static, out, max_batch=4, verify=False)
    assert not out.exists() and not sidecar_path(out).exists()


# --------------------------------------------------------------------------------------------
# the plan on the GPU path


def test_tensorrt_on_the_gpu_path_equals_its_cpu_path(standins, plan, photo):
    """10 boxes through a plan whose profile holds 4: the GPU path chunks 4 + 4 + 2 and its FP16 crops
    come from the warp kernel; the CPU path (same engine, host crops converted to FP16) agrees bit for bit."""
    frame, boxes = photo
    pose = VitPoseTRT(str(plan))
    assert isinstance(pose.path, GpuPath) and pose.engine.max_batch == 4 and pose.engine.min_batch == 1
    got = pose.infer(frame, boxes)
    batches = [op for op in standins.ops if op.name == "tensorrt"]
    assert len(batches) == 3 and {op.stream for op in batches} == {pose.stream}
    with use_runtime(CudaStandIn(kernels=False)):
        cpu = VitPoseTRT(str(plan))
        assert cpu.impl == "cpp"
        np.testing.assert_array_equal(got, cpu.infer(frame, boxes))
    assert (got[..., 2] > 0.5).mean() > 0.3, "real peaks: the fixture model knows these people"
    many = pose.infer_many([frame, frame[:, ::-1]], [boxes[:3], np.zeros((0, 4))])
    np.testing.assert_array_equal(many[0], cpu_infer(plan, frame, boxes[:3]))


def cpu_infer(plan, frame, boxes):
    with use_runtime(CudaStandIn(kernels=False)):
        return VitPoseTRT(str(plan)).infer(frame, boxes)


def test_the_host_path_and_the_gpu_path_share_one_engine_in_order(standins, plan, photo):
    """engine.run (its own stream) while a GPU-path call is still in flight: the shared output buffer
    is written only after that call's decode read it (the standins fixture fails on a race)."""
    from vitpose_trt.crop import preprocess

    frame, boxes = photo
    pose = VitPoseTRT(str(plan))
    want = pose.infer(frame, boxes)
    crops, _ = preprocess(frame, boxes[:2], "udp", impl="cpp")
    alone = pose.engine.run(crops)
    pending = pose.infer_async(frame, boxes)
    np.testing.assert_array_equal(pose.engine.run(crops), alone)
    np.testing.assert_array_equal(pending.result(), want)


def test_tensorrt_engine_profile_limits_and_smaller_chunks(standins, plan, photo):
    import torch

    engine = TensorRTEngine(plan, max_batch=2)
    assert (engine.input_dtype, engine.output_dtype) == (torch.float16, torch.float32)
    assert engine.profile_max_batch == 4 and engine.max_batch == 2 and engine.mode == "udp"
    frame, boxes = photo
    pose = VitPoseTRT(engine)
    pose.infer(frame, boxes)
    assert len([op for op in standins.ops if op.name == "tensorrt"]) == 5  # 10 boxes, 2 per call
    too_many = standins.empty((5, 3, 256, 192), torch.float16, standins.device())
    with pytest.raises(ValueError, match=r"batch 5 is outside \[1, 2\]"):
        engine.run_cuda(too_many, standins.current_stream())
    wrong = standins.empty((1, 3, 256, 192), torch.float32, standins.device())
    with pytest.raises(ValueError, match="the engine takes torch.float16, got torch.float32"):
        engine.run_cuda(wrong, standins.current_stream())
    engine.close()
    with pytest.raises(RuntimeError, match="the engine was closed"):
        pose.infer(frame, boxes)


def test_flip_test_plan(standins, sample_checkpoint, photo, tmp_path):
    out = tmp_path / "flip.engine"
    assert cli.main(["build", str(sample_checkpoint), "-o", str(out), "--fp16", "--max-batch", "2", "--flip-test",
                     "--no-verify"]) == 0
    assert read_sidecar(out)["batch"] == {"min": 1, "opt": 4, "max": 4}  # 2 boxes and their mirrors
    frame, boxes = photo
    pose = VitPoseTRT(str(out), flip_test=True)
    got = pose.infer(frame, boxes[:5])
    with use_runtime(CudaStandIn(kernels=False)):
        np.testing.assert_array_equal(got, VitPoseTRT(str(out), flip_test=True).infer(frame, boxes[:5]))


# --------------------------------------------------------------------------------------------
# the sidecar's checks, and a plan without one


def test_a_plan_for_another_gpu_or_tensorrt_is_refused_with_the_rebuild_command(plan, monkeypatch):
    install(monkeypatch, CudaStandIn())
    with use_runtime(CudaStandIn(capability="8.9", gpu_name="NVIDIA L4")):
        with pytest.raises(EngineMismatchError, match=r"compute capability 9\.0 / Stand-in GPU \(CPU\) \(this GPU is 8\.9 / NVIDIA L4\).*"
                                                      r"`vitpose-trt build .*vitpose-s-coco-sample.pth -o .* --fp16"
                                                      r" --max-batch 4`"):
            VitPoseTRT(str(plan))
    monkeypatch.setattr(standin_trt, "__version__", "11.5.0.1")
    with use_runtime(CudaStandIn()):
        with pytest.raises(EngineMismatchError, match=r"TensorRT 11\.4\.0\.106 \(this machine has 11\.5\.0\.1\)"):
            VitPoseTRT(str(plan))


def test_a_plan_without_sidecar_is_checked_by_tensorrt_itself(plan, tmp_path, monkeypatch, caplog):
    bare = tmp_path / "bare.engine"
    bare.write_bytes(plan.read_bytes())
    install(monkeypatch, CudaStandIn())
    with use_runtime(CudaStandIn()), caplog.at_level(logging.WARNING):
        assert VitPoseTRT(str(bare)).num_keypoints == 17
    assert "has no sidecar" in caplog.text
    with use_runtime(CudaStandIn(capability="8.9")):
        with pytest.raises(EngineMismatchError, match="could not load .* rebuild it here with"):
            TensorRTEngine(bare)
    (tmp_path / "junk.engine").write_bytes(b"not a plan")
    with use_runtime(CudaStandIn()), pytest.raises(EngineMismatchError, match="could not load"):
        TensorRTEngine(tmp_path / "junk.engine")


# --------------------------------------------------------------------------------------------
# Triton


class _Tensor:
    def __init__(self, name, array):
        self.name, self.array = name, np.asarray(array)

    @classmethod
    def from_dlpack(cls, name, tensor):
        return cls(name, tensor.numpy())

    def shape(self):
        return self.array.shape

    def __dlpack__(self, **kw):
        return self.array.__dlpack__(**kw)

    def __dlpack_device__(self):
        return self.array.__dlpack_device__()


class PbUtils:
    """The few names of Triton's `triton_python_backend_utils` that the backend model uses."""

    Tensor = _Tensor

    class Logger:
        @staticmethod
        def log_info(message):
            pass

    class TritonError:
        def __init__(self, message):
            self.message = message

    class InferenceResponse:
        def __init__(self, output_tensors, error=None):
            self.output_tensors, self.error = output_tensors, error

    @staticmethod
    def get_input_tensor_by_name(request, name):
        return request.get(name)


def test_triton_repository_with_a_plan_serves_on_the_standins(standins, plan, photo, tmp_path, monkeypatch):
    from vitpose_trt.triton import backend
    from vitpose_trt.triton.repository import write_repository

    info = write_repository(tmp_path / "repo", plan, instances=2, max_batch_crops=3)
    version = tmp_path / "repo" / "vitpose" / "1"
    assert (version / plan.name).read_bytes() == plan.read_bytes()
    assert read_sidecar(version / plan.name) == read_sidecar(plan)
    assert "{ count: 2 kind: KIND_GPU }" in info.config and (info.variant, info.num_keypoints) == ("vitpose-s", 17)
    params = dict(re.findall(r'key: "(\w+)" value: \{ string_value: "([^"]*)" \}', info.config))
    monkeypatch.setattr(backend, "pb_utils", PbUtils)
    model = backend.TritonPythonModel()
    model.initialize({"model_config": json.dumps({"parameters": {k: {"string_value": v} for k, v in params.items()}}),
                      "model_repository": str(tmp_path / "repo" / "vitpose"), "model_version": "1",
                      "model_instance_kind": "GPU", "model_instance_device_id": "0"})
    assert isinstance(model.pose.path, GpuPath)
    frame, boxes = photo
    request = {"image": _Tensor("image", frame[None]), "boxes": _Tensor("boxes", boxes[None].astype(np.float32))}
    bad = {"image": _Tensor("image", frame[None].astype(np.float32)), "boxes": request["boxes"]}
    good, refused = model.execute([request, bad])
    assert refused.error is not None and "uint8" in refused.error.message
    got = good.output_tensors[0].array[0]
    want = VitPoseTRT(str(plan), max_batch=3).infer(frame, boxes.astype(np.float32))  # the wire carries float32
    np.testing.assert_array_equal(got, want)
