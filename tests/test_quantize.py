"""INT8 and FP8 that keep the keypoints: the CPU's dynamic INT8 engine, the Q/DQ graphs for TensorRT
(build_engine/quantize.py), their accuracy gates on the fixture model and the sample photos, a
deliberately bad recipe that trips them, and the INT8/FP8 engine build on the TensorRT stand-in.

The gates (vitpose_trt.agreement) judge keypoints at clear peaks (CLEAR_FRACTION: a rival at least
20% of the prominence below the peak) against FP32, in heatmap px:
    INT8_DYNAMIC_TOLERANCE  median <= 0.05, p99 <= 0.5   (the CPU engine)
    QDQ_TOLERANCE           median <= 0.15, p99 <= 1     (the Q/DQ graph run by ONNX Runtime)
"""

from __future__ import annotations

import sys
from collections import Counter

import numpy as np
import onnx
import pytest

from build_engine.quantize import RECIPES, QuantizationError, Recipe, quantize_onnx, quantized_inputs, read_quantization
from vitpose_trt import VitPoseTRT, cli
from vitpose_trt.agreement import INT8_DYNAMIC_TOLERANCE, QDQ_TOLERANCE, compare_graphs, sample_crops
from vitpose_trt.engines import open_engine
from vitpose_trt.export import export_onnx

pytestmark = pytest.mark.slow  # each quantization calibrates and checks ViTPose-S on real crops


@pytest.fixture(scope="module")
def fp32_onnx(sample_model, tmp_path_factory):
    return export_onnx(sample_model, tmp_path_factory.mktemp("fp32") / "s.onnx").path


@pytest.fixture(scope="module")
def crops(coco_sample):
    """48 crops of the sample photos (12 most confident boxes of each): real people, real peaks."""
    return sample_crops((256, 192), "udp", max_crops=48)[0]


@pytest.fixture(scope="module")
def qdq(fp32_onnx, crops, tmp_path_factory):
    """The INT8 and FP8 Q/DQ graphs, calibrated on half of the crops."""
    out = tmp_path_factory.mktemp("qdq")
    return {mode: quantize_onnx(fp32_onnx, out / f"s.{mode}.onnx", crops[::2], RECIPES[mode], crops_from="24 crops")
            for mode in ("int8", "fp8")}


# --------------------------------------------------------------------------------------------
# the CPU's INT8 engine


def test_cpu_int8_engine_keeps_the_keypoints_and_is_made_once(sample_checkpoint, crops, caplog):
    engine = open_engine(sample_checkpoint, precision="int8")
    assert engine.name == "onnxruntime" and engine.precision == "int8" and engine.path.name.endswith(".int8.onnx")
    fp32 = open_engine(sample_checkpoint)
    d, problems = compare_graphs(fp32.path, engine.path, crops, tolerance=INT8_DYNAMIC_TOLERANCE)
    assert problems == [] and d.counted > 300, d
    assert d.heatmap_px.median <= 0.05 and d.heatmap_px.p99 <= 0.5
    graph = onnx.load(str(engine.path))
    ops = Counter(n.op_type for n in graph.graph.node)
    # the 48 Linear layers' MatMuls; the attention's 24 activation-by-activation MatMuls stay FP32
    assert (ops["MatMulInteger"], ops["MatMul"], ops["DynamicQuantizeLinear"] > 0) == (48, 24, True)
    with caplog.at_level("INFO"):
        again = open_engine(sample_checkpoint, precision="int8")
    assert again.path == engine.path and "quantizing" not in caplog.text  # cached
    pose = VitPoseTRT(sample_checkpoint, precision="int8")
    assert pose.engine.precision == "int8"


def test_int8_asks_for_the_cpu_and_a_model_file(sample_checkpoint, tiny_model):
    with pytest.raises(ValueError, match="runs on the CPU, not device='cuda'.*vitpose-trt quantize"):
        open_engine(sample_checkpoint, precision="int8", device="cuda")
    with pytest.raises(ValueError, match="runs with ONNX Runtime on the CPU, not backend='pytorch'"):
        open_engine(sample_checkpoint, precision="int8", backend="pytorch")
    with pytest.raises(ValueError, match="needs a checkpoint or an .onnx file"):
        open_engine(tiny_model, precision="int8")
    with pytest.raises(ValueError, match="unknown precision 'int4'"):
        open_engine(sample_checkpoint, precision="int4")


# --------------------------------------------------------------------------------------------
# the Q/DQ graphs for TensorRT


@pytest.mark.parametrize("mode", ["int8", "fp8"])
def test_qdq_graph_keeps_the_keypoints(qdq, fp32_onnx, crops, mode):
    """Checked when made (on the calibration crops), and again here on all 48 crops."""
    result = qdq[mode]
    assert result.check["passed"] and result.check["enforced"]
    d, problems = compare_graphs(fp32_onnx, result.path, crops, tolerance=QDQ_TOLERANCE)
    assert problems == [] and d.counted > 300, d
    assert d.heatmap_px.median <= 0.15 and d.heatmap_px.p99 <= 1.0
    meta = read_quantization(onnx.load(str(result.path)))
    assert meta["recipe"]["mode"] == mode and len(meta["activation_scales"]) == result.activations == 96
    assert meta["calibration"]["method"] == ("percentile 99.99" if mode == "int8" else "max")
    assert meta["source"]["path"] == str(fp32_onnx.resolve())


def test_only_matmul_inputs_are_quantized(qdq):
    """The recipe: every MatMul input behind a Q/DQ pair, no LayerNorm, Softmax, GELU or residual
    Add input; INT8 weights per output channel, FP8 per tensor; opset 19."""
    for mode, result in qdq.items():
        graph = onnx.load(str(result.path))
        assert max(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")) >= 19
        producer = {o: n for n in graph.graph.node for o in n.output}
        for node in graph.graph.node:
            from_dq = [producer.get(i) is not None and producer[i].op_type == "DequantizeLinear" for i in node.input]
            if node.op_type == "MatMul":
                assert all(from_dq), f"{node.name}: an input is not quantized"
            elif node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
                assert not any(from_dq), f"{mode}: {node.op_type} {node.name} takes a quantized input"
        weights = {t.name for t in graph.graph.initializer}
        weight_dq = [n for n in graph.graph.node if n.op_type == "DequantizeLinear"
                     and producer[n.input[0]].input[0] in weights]
        axes = {next((a.i for a in n.attribute if a.name == "axis"), None) for n in weight_dq}
        assert len(weight_dq) == result.weights == 48
        assert axes == ({1} if mode == "int8" else {None})
        ops = Counter(n.op_type for n in graph.graph.node)
        assert {op: ops[op] for op in ("LayerNormalization", "Softmax", "Erf")} == \
            {"LayerNormalization": 25, "Softmax": 12, "Erf": 12}  # all kept, none quantized


def test_a_bad_recipe_trips_the_gate(fp32_onnx, crops, tmp_path):
    """Every float input of every op quantized (as quantize_static's defaults do) at max calibration:
    the check refuses it and writes nothing."""
    model = onnx.load(str(fp32_onnx))
    every = tuple(sorted({n.op_type for n in model.graph.node} - {"Constant", "Shape", "Gather", "Unsqueeze",
                                                                   "Concat", "Reshape"}))
    bad = Recipe("int8", None, False, ops=every)
    assert len(quantized_inputs(model, bad.ops)[0]) > 96
    out = tmp_path / "bad.onnx"
    with pytest.raises(QuantizationError, match=r"disagrees with FP32 over \d+ clear peaks: .*heatmap px"):
        quantize_onnx(fp32_onnx, out, crops[:16], bad)
    assert not out.exists()


def test_eval_ap_with_each_precision(sample_checkpoint, qdq, coco_sample):
    """COCO keypoint AP on the sample photos with the ground-truth boxes: FP32 (the fixture scores
    1.0 there), the CPU's INT8 and the INT8/FP8 Q/DQ graphs (ONNX Runtime) all stay >= 0.99."""
    from tests.conftest import coco_sample_dir
    from vitpose_trt.evaluate import evaluate

    root = coco_sample_dir()
    aps = {}
    for name, engine, precision in (("fp32", sample_checkpoint, None), ("int8 dynamic", sample_checkpoint, "int8"),
                                    ("int8 q/dq", qdq["int8"].path, None), ("fp8 q/dq", qdq["fp8"].path, None)):
        metrics = evaluate(root, root / "person_keypoints.json", engine, precision=precision, progress=False)
        aps[name] = metrics["AP"]
    assert all(ap >= 0.99 for ap in aps.values()), aps


# --------------------------------------------------------------------------------------------
# the CLI, and the engine build on the stand-ins


def test_cli_quantize_then_build_on_the_standins(sample_checkpoint, coco_sample, tmp_path, capsys, monkeypatch):
    from tests.conftest import coco_sample_dir
    from tests.standins import tensorrt as standin_trt
    from tests.standins.cuda import CudaStandIn
    from vitpose_trt.cuda_runtime import use_runtime
    from vitpose_trt.engines.sidecar import read_sidecar

    root = coco_sample_dir()
    out = tmp_path / "s.int8.onnx"
    assert cli.main(["quantize", str(sample_checkpoint), "-o", str(out), "--calib", str(root), "--dets",
                     str(root / "person_detections.json"), "--calib-crops", "16"]) == 0
    text = capsys.readouterr().out
    assert f"wrote {out}: int8, 96 activation and 48 weight Q/DQ pairs, calibrated on 16 person crops" in text
    assert "(passed)" in text and f"vitpose-trt build {out} -o model.engine" in text
    meta = read_quantization(onnx.load(str(out)))
    assert meta["source"]["path"] == str(sample_checkpoint.resolve())

    monkeypatch.setitem(sys.modules, "tensorrt", standin_trt)
    with use_runtime(CudaStandIn()) as rt:
        plan = tmp_path / "s.int8.engine"
        assert cli.main(["build", str(out), "-o", str(plan), "--max-batch", "4"]) == 0
        sidecar = read_sidecar(plan)
        assert sidecar["precision"] == "int8" and sidecar["quantization"]["recipe"]["mode"] == "int8"
        check = sidecar["verification"]
        assert check["enforced"] and check["reference"].startswith("PyTorch FP32 (vitpose-s-coco-sample.pth)")
        assert check["tolerance"] == {k: v for k, v in vars(QDQ_TOLERANCE).items()}
        pose = VitPoseTRT(str(plan))
        assert pose.engine.precision == "int8"
        _, frame, boxes = coco_sample[0]
        got = pose.infer(frame, boxes[:4])
        assert got.shape == (4, 17, 3) and not rt.races
    with use_runtime(CudaStandIn(capability="8.6")):
        fp8 = tmp_path / "s.fp8.onnx"
        assert cli.main(["quantize", str(sample_checkpoint), "-o", str(fp8), "--calib", str(root), "--dets",
                         str(root / "person_detections.json"), "--calib-crops", "8", "--mode", "fp8"]) == 0
        assert cli.main(["build", str(fp8), "-o", str(tmp_path / "fp8.engine")]) == 2
    assert "an FP8 engine needs an Ada (8.9) or Hopper (9.0) or newer GPU; this one is 8.6" in capsys.readouterr().err


def test_build_refuses_the_cpus_dynamic_int8_graph(sample_checkpoint, tmp_path, monkeypatch, capsys):
    from tests.standins import tensorrt as standin_trt
    from tests.standins.cuda import CudaStandIn
    from vitpose_trt.cuda_runtime import use_runtime

    dynamic = open_engine(sample_checkpoint, precision="int8").path
    monkeypatch.setitem(sys.modules, "tensorrt", standin_trt)
    with use_runtime(CudaStandIn()):
        assert cli.main(["build", str(dynamic), "-o", str(tmp_path / "x.engine")]) == 2
    assert "quantized for ONNX Runtime on the CPU (dynamic INT8)" in capsys.readouterr().err


def test_quantize_names_bad_input(sample_checkpoint, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli.main(["quantize", str(sample_checkpoint), "-o", str(tmp_path / "q.onnx"), "--calib", str(empty)]) == 2
    assert "no images" in capsys.readouterr().err
    assert cli.main(["quantize", str(tmp_path / "nope.pth"), "-o", str(tmp_path / "q.onnx"), "--calib", "x"]) == 2
    assert "model not found" in capsys.readouterr().err
    assert not (tmp_path / "q.onnx").exists()
