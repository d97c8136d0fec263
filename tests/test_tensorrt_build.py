"""The TensorRT build tools without TensorRT: FP16 graph, profile, sidecar, metric, error paths.

TensorRT itself cannot run here (no GPU, no library): what is tested is everything around it,
and the FP16 graph is executed with ONNX Runtime's CPU provider instead.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import subprocess
import sys
import types
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto

from build_engine.fp16 import DEFAULT_FP32_SOFTMAX, convert_to_fp16, graph_io_dtypes
from build_engine.tensorrt_build import (
    EngineVerificationError,
    ModelInfo,
    build,
    default_timing_cache_path,
    judge_verification,
    onnx_sha256,
    profile_shapes,
    verification_crops,
)
from vitpose_trt.agreement import clear_peaks, compare_heatmaps
from vitpose_trt.coco import sample_dir
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
from vitpose_trt.engines.tensorrt import INSTALL_HINT, TensorRTEngine, TensorRTUnavailableError, tensorrt_available
from vitpose_trt.export import save_onnx

REPO = Path(__file__).resolve().parents[1]
K = 5  # keypoints of the inline tiny model


# --------------------------------------------------------------------------------------------
# models and crops


class TinyHeatmapNet(torch.nn.Module):
    """Conv -> LayerNorm -> MatMul -> spatial Softmax: the op mix of ViTPose in a few kB.

    (N, 3, 256, 192) -> (N, K, 64, 48) heatmaps; the spatial softmax gives each map one peak.
    """

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 16, kernel_size=4, stride=4)
        self.norm = torch.nn.LayerNorm(16)
        self.proj = torch.nn.Parameter(torch.randn(16, K))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.conv(x)  # (B, 16, 64, 48)
        b, c, h, w = f.shape
        t = self.norm(f.flatten(2).transpose(1, 2))  # (B, h*w, 16)
        logits = torch.matmul(t, self.proj).transpose(1, 2) * 4.0  # (B, K, h*w)
        return torch.softmax(logits, dim=-1).reshape(-1, K, h, w)


def export_inline(model: torch.nn.Module, path: Path) -> Path:
    """The exporter call `vitpose_trt.export.export_onnx` makes, for models without a config."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter is "legacy"
        torch.onnx.export(model.eval(), (torch.zeros(1, 3, 256, 192),), str(path), input_names=["input"],
                          output_names=["heatmaps"], dynamic_axes={"input": {0: "batch"}, "heatmaps": {0: "batch"}},
                          opset_version=17, dynamo=False, do_constant_folding=True)
    return path


@pytest.fixture(scope="module")
def tiny_net_onnx(tmp_path_factory: pytest.TempPathFactory) -> tuple[TinyHeatmapNet, Path]:
    model = TinyHeatmapNet().eval()
    return model, export_inline(model, tmp_path_factory.mktemp("tiny") / "tiny.onnx")


@pytest.fixture(scope="module")
def tiny_vitpose_onnx(tiny_model, tmp_path_factory: pytest.TempPathFactory):
    from vitpose_trt.export import export_onnx

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
# optimization profile


def test_profile_shapes():
    p = profile_shapes((256, 192))
    assert (p.min, p.opt, p.max) == ((1, 3, 256, 192), (8, 3, 256, 192), (64, 3, 256, 192))
    assert p.batch_range == {"min": 1, "opt": 8, "max": 64}


def test_profile_shapes_flip_test_doubles_opt_and_max():
    p = profile_shapes((256, 192), min_batch=1, opt_batch=8, max_batch=64, flip_test=True)
    assert p.batch_range == {"min": 1, "opt": 16, "max": 128}


def test_profile_shapes_clamps_opt_and_rejects_bad_ranges():
    assert profile_shapes((256, 192), opt_batch=8, max_batch=4).batch_range == {"min": 1, "opt": 4, "max": 4}
    assert profile_shapes((256, 192), min_batch=4, opt_batch=2, max_batch=8).batch_range["opt"] == 4
    with pytest.raises(ValueError, match="larger than max_batch"):
        profile_shapes((256, 192), min_batch=9, max_batch=8)
    with pytest.raises(ValueError, match=">= 1"):
        profile_shapes((256, 192), max_batch=0)


# --------------------------------------------------------------------------------------------
# sidecar


def _sidecar(**overrides):
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

    sidecar = _sidecar()
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
    sidecar = _sidecar(built_at=None)
    assert sidecar["built_at"].endswith("+00:00") and sidecar["built_at"][:2] == "20"


def test_read_sidecar_rejects_garbage(tmp_path):
    (tmp_path / "model.engine.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_sidecar(tmp_path / "model.engine")


def test_onnx_sha256_is_the_file_hash(tiny_net_onnx):
    _, path = tiny_net_onnx
    assert onnx_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------------------------
# the verification metric


def gaussian_heatmaps(centers: np.ndarray, size=(64, 48), sigma=2.0, peak=0.9) -> np.ndarray:
    """(N, K, 2) x, y centers -> (N, K, h, w) Gaussian heatmaps, as the training targets look."""
    h, w = size
    ys, xs = np.mgrid[0:h, 0:w]
    d2 = (xs - centers[..., 0, None, None]) ** 2 + (ys - centers[..., 1, None, None]) ** 2
    return (peak * np.exp(-d2 / (2 * sigma**2))).astype(np.float32)


def test_keypoint_disagreement_identical_is_zero():
    hm = gaussian_heatmaps(np.array([[[10.0, 20.0], [30.0, 40.0]]]))
    d = compare_heatmaps(hm, hm.copy())
    assert (d.heatmap_px.max, d.heatmap_px.mean, d.keypoints, d.max_abs) == (0.0, 0.0, 2, 0.0)


@pytest.mark.parametrize("mode", ["udp", "classic"])
def test_keypoint_disagreement_measures_shifts_in_heatmap_pixels(mode):
    centers = np.array([[[10.0, 20.0], [30.0, 40.0], [24.0, 12.0]]])
    shift = np.array([[[1.0, 0.0], [0.0, 2.0], [0.0, 0.0]]])
    d = compare_heatmaps(gaussian_heatmaps(centers), gaussian_heatmaps(centers + shift), mode)
    # integer shifts of a Gaussian: argmax moves exactly; DARK (udp) refines both to the center
    assert d.heatmap_px.max == pytest.approx(2.0, abs=0.02)
    assert d.heatmap_px.mean == pytest.approx(1.0, abs=0.02)


def test_keypoint_disagreement_subpixel_with_dark():
    centers = np.array([[[20.3, 30.0]]])
    d = compare_heatmaps(gaussian_heatmaps(centers), gaussian_heatmaps(centers + [[[0.25, 0.0]]]), "udp")
    assert d.heatmap_px.mean == pytest.approx(0.25, abs=0.03)  # DARK resolves what argmax cannot


def test_keypoint_disagreement_counts_only_clear_peaks():
    """The shared tie rule: a keypoint whose reference heatmap has two near-equal maxima (an
    occluded or left/right-confused joint) is not counted, however far its argmax jumps."""
    centers = np.array([[[10.0, 20.0], [20.0, 40.0]]])
    rival = gaussian_heatmaps(np.array([[[40.0, 40.0]]]))[0, 0]  # 20 px to the right
    ref = gaussian_heatmaps(centers)
    ref[0, 1] = np.maximum(ref[0, 1], 0.99 * rival)  # a tie
    cand = ref.copy()
    cand[0, 1] = np.maximum(0.99 * gaussian_heatmaps(centers)[0, 1], rival)  # it flips
    every = compare_heatmaps(ref, cand)
    assert every.max_heatmap_px_all == pytest.approx(20.0, abs=0.05) and every.flipped_ties == 1
    assert (every.counted, every.heatmap_px.max) == (1, 0.0)
    flat = np.full_like(ref, 0.5)
    assert compare_heatmaps(flat, flat + 0.1).counted == 0


def test_keypoint_disagreement_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="same"):
        compare_heatmaps(np.zeros((1, 2, 64, 48), np.float32), np.zeros((1, 3, 64, 48), np.float32))


# --------------------------------------------------------------------------------------------
# the verification verdict, fed right and deliberately wrong engines


@pytest.fixture(scope="module")
def fixture_verification(sample_model):
    """(real crops, the fixture model's FP32 heatmaps of them): a model with real peaks."""
    crops, _ = verification_crops((256, 192), "udp", max_crops=16, coco_dir=sample_dir())
    with torch.inference_mode():
        return crops, sample_model(torch.from_numpy(crops)).numpy()


def test_verification_passes_the_model_itself(fixture_verification):
    crops, reference = fixture_verification
    result = judge_verification(reference, reference.copy(), crops="16 real crops")
    assert result["enforced"] is True and result["metric"]["counted"] > 200  # of 272
    assert result["metric"]["heatmap_px"]["max"] == 0.0


def test_verification_fails_a_model_with_one_weight_off_by_one_percent(sample_model, fixture_verification):
    crops, reference = fixture_verification
    wrong = copy.deepcopy(sample_model)
    with torch.no_grad():
        wrong.keypoint_head.final_layer.weight.mul_(1.01)
        candidate = wrong(torch.from_numpy(crops)).numpy()
    with pytest.raises(EngineVerificationError, match="mean score difference") as err:
        judge_verification(reference, candidate, engine_name="wrong.engine")
    assert str(err.value).startswith("wrong.engine disagrees with the FP32 model over")
    assert "--no-verify" in str(err.value)


def test_verification_fails_a_one_pixel_shift(fixture_verification):
    _, reference = fixture_verification
    with pytest.raises(EngineVerificationError, match=r"mean distance 0\.9\d+ heatmap px > 0\.1"):
        judge_verification(reference, np.roll(reference, 1, axis=-1))


def test_verification_of_random_weights_judges_clear_peaks_only(tiny_model, fixture_verification):
    """Random weights: the tie rule picks the keypoints to judge (a quarter to a half of them), and
    on those a wrong engine fails as it would with real peaks."""
    crops, _ = fixture_verification
    with torch.inference_mode():
        reference = tiny_model(torch.from_numpy(crops)).numpy()
    result = judge_verification(reference, reference.copy(), random_weights=True)
    assert result["enforced"] is True and 0 < result["metric"]["counted"] < reference.shape[0] * 17
    assert result["random_weights"] is True
    with pytest.raises(EngineVerificationError, match="mean score difference"):
        judge_verification(reference, reference * 1.01, random_weights=True)
    with pytest.raises(EngineVerificationError, match="mean distance"):
        judge_verification(reference, np.roll(reference, 2, axis=-2), random_weights=True)


def test_build_time_verification_removes_a_wrong_engine(sample_model, fixture_verification, tmp_path,
                                                        monkeypatch):
    """`_verify` as `build` calls it, with a stand-in engine whose heatmaps are shifted one pixel."""
    import vitpose_trt.engines.tensorrt as trt_runtime
    from build_engine import tensorrt_build

    class ShiftedEngine:
        input_size, max_batch = (256, 192), 64

        def __init__(self, path):
            pass

        def run(self, crops):
            with torch.inference_mode():
                return np.roll(sample_model(torch.from_numpy(crops)).numpy(), 1, axis=-1)

        def close(self):
            pass

    monkeypatch.setattr(trt_runtime, "TensorRTEngine", ShiftedEngine)
    plan = tmp_path / "model.engine"
    plan.write_bytes(b"plan")
    write_sidecar(plan, {"variant": "vitpose-s"})
    src = tensorrt_build._Source(tmp_path / "model.onnx", ModelInfo(), tensorrt_build._torch_reference(sample_model),
                                 "PyTorch FP32", None)
    monkeypatch.setattr(tensorrt_build, "VERIFY_MAX_CROPS", 8)
    with pytest.raises(EngineVerificationError, match=r"mean distance .* were removed"):
        tensorrt_build._verify(plan, src, mode="udp", flip_test=False)
    assert not plan.exists() and not sidecar_path(plan).exists()


def test_verification_crops_real_and_synthetic(coco_sample, tmp_path):
    crops, where = verification_crops((256, 192), "udp", max_crops=8, coco_dir=sample_dir())
    assert crops.shape == (8, 3, 256, 192) and crops.dtype == np.float32 and "COCO sample" in where
    flipped, _ = verification_crops((256, 192), "udp", flip_test=True, max_crops=8, coco_dir=sample_dir())
    assert flipped.shape == (8, 3, 256, 192)
    np.testing.assert_array_equal(flipped[4:], flipped[:4, :, :, ::-1])
    synthetic, where = verification_crops((256, 192), max_crops=3, coco_dir=tmp_path)
    assert synthetic.shape == (3, 3, 256, 192) and "synthetic" in where


# --------------------------------------------------------------------------------------------
# without TensorRT


@pytest.fixture
def stub_only_tensorrt(monkeypatch):
    """What `tensorrt-stubs` without TensorRT looks like at run time: an importable, empty module."""
    monkeypatch.setitem(sys.modules, "tensorrt", types.ModuleType("tensorrt"))


def test_stubs_are_not_tensorrt(stub_only_tensorrt):
    assert tensorrt_available() is False


def test_build_without_tensorrt_says_how_to_install(stub_only_tensorrt, tmp_path, tiny_net_onnx):
    _, path = tiny_net_onnx
    with pytest.raises(TensorRTUnavailableError) as err:
        build(path, tmp_path / "model.engine")
    message = str(err.value)
    assert message == INSTALL_HINT
    assert "\n" not in message and "pip install tensorrt" in message
    assert not (tmp_path / "model.engine").exists()
    assert isinstance(err.value, ImportError)  # the CLI's generic handler catches it too


def test_engine_without_tensorrt_says_how_to_install(stub_only_tensorrt, tmp_path):
    plan = tmp_path / "model.engine"
    plan.write_bytes(b"not a plan")
    with pytest.raises(TensorRTUnavailableError, match="pip install tensorrt"):
        TensorRTEngine(plan)


def test_importing_the_package_does_not_import_tensorrt():
    code = ("import sys, vitpose_trt, vitpose_trt.engines, vitpose_trt.engines.tensorrt, build_engine.tensorrt_build; "
            "assert 'tensorrt' not in sys.modules, 'tensorrt was imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


# --------------------------------------------------------------------------------------------
# engine / machine mismatch


H100 = Platform("10.13.0.35", "NVIDIA H100 80GB HBM3", "9.0")


def test_matching_engine_passes():
    check_compatibility(_sidecar(), H100)


def test_other_tensorrt_version_is_refused_with_the_rebuild_command():
    with pytest.raises(EngineMismatchError) as err:
        check_compatibility(_sidecar(tensorrt_version="10.3.0.26"), H100, "models/pose.engine")
    message = str(err.value)
    assert "\n" not in message
    assert "TensorRT 10.3.0.26" in message and "10.13.0.35" in message
    assert "`vitpose-trt build vitpose-b.pth -o models/pose.engine --fp16 --flip-test`" in message


def test_other_gpu_architecture_is_refused():
    sidecar = _sidecar(gpu_name="NVIDIA L4", compute_capability="8.9", source_path=None)
    with pytest.raises(EngineMismatchError) as err:
        check_compatibility(sidecar, H100, "model.engine")
    message = str(err.value)
    assert "8.9" in message and "9.0" in message and "NVIDIA L4" in message
    assert message.endswith("`vitpose-trt build CHECKPOINT -o model.engine --fp16 --flip-test`")


def test_same_architecture_other_gpu_only_warns(caplog):
    sidecar = _sidecar(gpu_name="NVIDIA H100 PCIe")
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
