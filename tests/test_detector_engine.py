"""The person detector on the package's engines: `vitpose-trt build det.onnx --fp16` and `Detector("det.engine")`,
run on the TensorRT stand-in over the CUDA stand-in (tests/standins/), against `Detector("det.onnx")` on
ONNX Runtime; the box metric of the build-time verification; the FP16 detector graph.

What this proves: a detector graph is recognised, built with the pose model's builder into a plan of its own
(batch 1 at its input size), recorded in its sidecar (kind, format, family, input size), verified on the
sample photos, and read back by `Detector` through the engine layer's plan runner (multi-output, int64
labels, a dynamic input fixed by the profile) with the same decode as the .onnx. What it cannot prove:
anything about TensorRT's own kernels or FP16 accuracy on a GPU.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import onnx
import pytest

from build_engine.detector_build import is_detector_graph, judge_detections
from build_engine.fp16 import convert_detector_to_fp16
from build_engine.tensorrt_build import EngineVerificationError
from tests.standins import tensorrt as standin_trt
from tests.standins.cuda import CudaStandIn
from tests.test_detect import constant_detector
from tests.test_detect_exports import exports_dir
from tests.test_tensorrt_on_standins import install
from vitpose_trt import VitPoseTRT, cli
from vitpose_trt.agreement import BoxTolerance, compare_detections
from vitpose_trt.cuda_runtime import use_runtime
from vitpose_trt.detect import Detector, letterbox
from vitpose_trt.engines import open_graph
from vitpose_trt.engines.sidecar import (
    KIND_DETECTOR,
    EngineMismatchError,
    detector_record,
    read_sidecar,
    rebuild_command,
    sidecar_path,
    write_sidecar,
)

# Hand-built detectors (tests/test_detect.py's `constant_detector`): one per output format, boxes in a
# 320x320 input, scores well above the verification's judging floor (0.2).
RAW_YOLO = np.array([  # (anchors, 4 + 3 classes): cx, cy, w, h, person, car, dog
    [100, 100, 40, 80, 0.9, 0.1, 0.0],
    [102, 101, 40, 80, 0.8, 0.1, 0.0],  # a duplicate: NMS removes it
    [250, 150, 30, 60, 0.7, 0.0, 0.1],
    [200, 200, 50, 50, 0.6, 0.9, 0.0],  # a car
    [160, 260, 60, 90, 0.5, 0.0, 0.0],
    [10, 10, 10, 10, 0.0, 0.0, 0.0],
    [20, 20, 10, 10, 0.0, 0.0, 0.0],
    [30, 30, 10, 10, 0.0, 0.0, 0.0],  # 9 anchors > 7 channels: the raw layout, as Ultralytics' 8400 > 84
    [40, 40, 10, 10, 0.0, 0.0, 0.0],
], np.float32).T[None].copy()
DETS = np.array([[[20, 30, 60, 110, 0.95], [100, 100, 140, 200, 0.8], [10, 10, 20, 20, 0.9]]], np.float32)
LABELS = np.array([[0, 0, 2]], np.int64)
END_TO_END = np.array([[[120, 60, 160, 140, 0.9, 0], [200, 100, 240, 200, 0.6, 0], [5, 50, 15, 70, 0.8, 1]]],
                      np.float32)


@pytest.fixture
def standins(monkeypatch):
    rt = CudaStandIn()
    install(monkeypatch, rt)
    with use_runtime(rt):
        yield rt
    assert not rt.races, "\n".join(rt.races)


def _build(args: list[str]) -> int:
    with pytest.MonkeyPatch.context() as mp, use_runtime(CudaStandIn()) as rt:
        install(mp, rt)
        return cli.main(["build", *args])


@pytest.fixture(scope="module")
def hand_built(tmp_path_factory, coco_sample):
    """{name: (.onnx, .engine)}: each format built with `vitpose-trt build X.onnx -o X.engine --fp16`
    (the dets + labels graph as an RTMDet, named on the command line)."""
    folder = tmp_path_factory.mktemp("detectors")
    graphs = {
        "yolo": (constant_detector(folder / "yolo.onnx", {"output0": RAW_YOLO},
                                   metadata={"task": "detect", "imgsz": "[320, 320]"}), []),
        "rtmdet": (constant_detector(folder / "rtmdet.onnx", {"dets": DETS, "labels": LABELS}),
                   ["--detector-family", "rtmdet"]),
        "e2e": (constant_detector(folder / "e2e.onnx", {"output0": END_TO_END}), []),
    }
    out = {}
    for name, (source, extra) in graphs.items():
        engine = folder / f"{name}.engine"
        assert _build([str(source), "-o", str(engine), "--fp16", *extra]) == 0
        out[name] = (source, engine)
    return out


# --------------------------------------------------------------------------------------------
# vitpose-trt build det.onnx --fp16


def test_a_detector_graph_is_built_as_one_and_recorded(hand_built):
    source, engine = hand_built["yolo"]
    sidecar = read_sidecar(engine)
    assert engine.read_bytes().startswith(standin_trt.PLAN_MAGIC)
    assert sidecar["kind"] == KIND_DETECTOR and sidecar["precision"] == "fp16"
    assert sidecar["detector"] == {"format": "yolo", "family": "yolo", "input_size": [320, 320]}
    assert sidecar["batch"] == {"min": 1, "opt": 1, "max": 1}
    assert sidecar["io"] == {"inputs": [{"name": "images", "dtype": "float32"}],
                             "outputs": [{"name": "output0", "dtype": "float32"}]}
    assert sidecar["source"]["path"] == str(source) and sidecar["source"]["metadata"]["imgsz"] == "[320, 320]"
    check = sidecar["verification"]
    assert check["enforced"] is True and check["reference"] == "ONNX Runtime FP32 (yolo.onnx)"
    assert check["metric"]["judged"] == 4 * 2 * 3 and check["metric"]["disagree"] == 0  # 4 photos, both ways
    assert read_sidecar(hand_built["rtmdet"][1])["detector"]["family"] == "rtmdet"
    assert rebuild_command(read_sidecar(hand_built["rtmdet"][1]), "det.engine") == \
        f"vitpose-trt build {hand_built['rtmdet'][0]} -o det.engine --fp16 --detector-family rtmdet"
    assert not list(engine.parent.glob(".vitpose-trt-build-*")), "the temporary folder was left behind"


@pytest.mark.parametrize("name", ["yolo", "rtmdet", "e2e"])
def test_engine_boxes_equal_onnxruntime_boxes_on_the_photos(standins, hand_built, coco_sample, name):
    """Detector("X.engine") reads the plan as Detector("X.onnx") reads the graph (format, family, input
    size, the same decode), and finds the same boxes on every photo: the FP16 graph rounds the constants
    (0.9 -> 0.89990234), nothing else."""
    source, engine = hand_built[name]
    on_engine, on_onnx = Detector(engine), Detector(source, family="rtmdet" if name == "rtmdet" else "auto")
    assert on_engine.graph.name == "tensorrt" and on_engine.providers == ["TensorRT"]
    assert (on_engine.format, on_engine.family, on_engine.input_size) == \
        (on_onnx.format, on_onnx.family, on_onnx.input_size)
    got, want = [on_engine(f) for _, f, _ in coco_sample], [on_onnx(f) for _, f, _ in coco_sample]
    for a, b in zip(got, want):
        assert len(a) >= 2
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-3)
    d = compare_detections(want, got)
    assert d.judged > 0 and d.disagree == 0
    assert {op.name for op in standins.ops} >= {"tensorrt", "copy"}


def test_the_verification_removes_a_wrong_detector_engine(standins, hand_built, tmp_path, capsys, monkeypatch):
    """A plan whose float outputs are 3% off ("scale": boxes larger and off-centre) and one whose
    (N, 6) rows are rolled by a column ("shift") both fail the build; nothing is left behind."""
    for fault, name in (("scale", "yolo"), ("shift", "e2e")):
        monkeypatch.setattr(standin_trt, "FAULT", fault)
        out = tmp_path / f"{fault}.engine"
        assert cli.main(["build", str(hand_built[name][0]), "-o", str(out), "--fp16"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("vitpose-trt build: error: ") and err.count("\n") == 1, err
        assert f"disagrees with ONNX Runtime FP32 ({name}.onnx)" in err and "judged boxes have no counterpart" in err
        assert "were removed" in err
        assert not out.exists() and not sidecar_path(out).exists()


def test_build_refuses_pose_options_for_a_detector_and_detector_options_for_a_checkpoint(standins, hand_built,
                                                                                       tmp_path, capsys):
    source = str(hand_built["yolo"][0])
    out = tmp_path / "det.engine"
    assert cli.main(["build", source, "-o", str(out), "--fp16", "--flip-test", "--max-batch", "4"]) == 2
    err = capsys.readouterr().err
    assert "is a person detector: max_batch, flip_test are options of the pose model's engine" in err
    assert err.count("\n") == 1 and not out.exists()
    assert cli.main(["build", "model.pth", "-o", str(out), "--detector-family", "yolox"]) == 2
    assert "a detector format or family names a detector's .onnx; 'model.pth' is not one" in capsys.readouterr().err
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a graph")
    assert cli.main(["build", str(junk), "-o", str(out), "--detector-format", "yolo"]) == 2
    assert "junk.onnx: not a loadable ONNX model" in capsys.readouterr().err
    assert not out.exists() and not sidecar_path(out).exists()


def test_a_detector_is_recognised_by_its_outputs_and_a_pose_model_by_its_metadata(tmp_path, tiny_model):
    from vitpose_trt.export import export_onnx

    assert is_detector_graph(constant_detector(tmp_path / "d.onnx", {"dets": DETS, "labels": LABELS}))
    assert is_detector_graph(constant_detector(tmp_path / "r.onnx", {"output0": RAW_YOLO}))
    pose = export_onnx(tiny_model, tmp_path / "pose.onnx", check=False).path
    assert not is_detector_graph(pose)
    # a ViTPose graph exported elsewhere (no metadata): its (N, K, h, w) output is no detector's either
    anonymous = onnx.load(str(pose))
    del anonymous.metadata_props[:]
    onnx.save(anonymous, str(tmp_path / "anonymous.onnx"))
    assert not is_detector_graph(tmp_path / "anonymous.onnx")


# --------------------------------------------------------------------------------------------
# the plan runner and the kind check


def test_each_kind_of_plan_goes_where_it_belongs(standins, hand_built, tmp_path):
    _, engine = hand_built["e2e"]
    with pytest.raises(ValueError, match=r"e2e.engine is a detector engine \(built from .*e2e.onnx\), not a pose "
                                         r"model: pass it as the person detector \(Detector\(\.\.\.\), the CLI's --detector\)"):
        VitPoseTRT(str(engine))
    # a sidecar without "kind" is a pose model's (every plan before detectors had one like it)
    pose_like = tmp_path / "pose.engine"
    pose_like.write_bytes(engine.read_bytes())
    sidecar = read_sidecar(engine)
    sidecar.pop("kind")
    write_sidecar(pose_like, sidecar)
    with pytest.raises(ValueError, match=r"pose.engine is a pose engine .* pass it as the pose model"):
        Detector(pose_like)
    with pytest.raises(ValueError, match="expected an .onnx graph or a TensorRT plan"):
        open_graph(tmp_path / "pose.engine.json", kind=KIND_DETECTOR)
    with pytest.raises(ValueError, match="device='cuda' picks the GPU of a TensorRT plan"):
        Detector(hand_built["e2e"][0], device="cuda")


def test_the_plan_runner_binds_by_name_and_checks_its_inputs(standins, hand_built):
    detector = Detector(hand_built["rtmdet"][1])
    plan = detector.graph
    assert [(t.name, t.shape, t.dtype) for t in plan.inputs] == [("images", (1, 3, 320, 320), np.dtype("float32"))]
    assert [(t.name, t.dtype) for t in plan.outputs] == [("dets", np.dtype("float32")), ("labels", np.dtype("int64"))]
    x = np.zeros((1, 3, 320, 320), np.float32)
    dets, labels = plan.run({"images": x})
    np.testing.assert_allclose(dets, DETS, atol=1e-3)
    np.testing.assert_array_equal(labels, LABELS)
    with pytest.raises(ValueError, match=r"input 'images' of shape \(1, 3, 640, 640\) is outside the engine's "
                                         r"optimization profile \(1, 3, 320, 320\)\.\.\(1, 3, 320, 320\)"):
        plan.run({"images": np.zeros((1, 3, 640, 640), np.float32)})
    with pytest.raises(ValueError, match=r"no value for inputs \['images'\]"):
        plan.run({"image": x})
    device = standins.to_device(x.astype(np.float16))
    with pytest.raises(ValueError, match="the engine takes torch.float32, got torch.float16"):
        plan.enqueue({"images": device}, {}, standins.current_stream())
    detector.close()
    with pytest.raises(RuntimeError, match="the engine was closed"):
        plan.run({"images": x})


def test_a_detector_plan_on_a_machine_without_the_gpu_it_was_built_for(hand_built, monkeypatch):
    install(monkeypatch, CudaStandIn())
    with use_runtime(CudaStandIn(capability="8.9", gpu_name="NVIDIA L4")):
        with pytest.raises(EngineMismatchError, match=r"compute capability 9\.0 .*`vitpose-trt build .*rtmdet.onnx -o "
                                            r".*rtmdet.engine --fp16 --detector-family rtmdet`"):
            Detector(hand_built["rtmdet"][1])


# --------------------------------------------------------------------------------------------
# Ultralytics' own exports


@pytest.fixture(scope="module")
def ultralytics_engines(tmp_path_factory, coco_sample):
    folder = exports_dir()
    if folder is None:
        pytest.skip("no Ultralytics exports (see tests/test_detect_exports.py)")
    manifest = json.loads((folder / "manifest.json").read_text())["files"]
    out = tmp_path_factory.mktemp("ultralytics")
    built = {}
    for name in ("yolov8n_raw.onnx", "yolo11n_nms.onnx", "yolov8n_dynamic.onnx"):  # every variant, both families
        engine = out / name.replace(".onnx", ".engine")
        assert _build([str(folder / name), "-o", str(engine), "--fp16"]) == 0
        built[name] = (folder / name, engine, manifest[name])
    return built


def test_ultralytics_exports_build_and_run_on_the_engine(standins, ultralytics_engines, coco_sample):
    """Their weights are untrained (tests/test_detect_exports.py): no box scores anywhere near 0.2, so the
    build's verification records that it judged nothing, and what is compared here is the graphs' raw
    outputs on letterboxed photos. Bounds: box coordinates within 0.25 input px, FP16's rounding at
    512-1024 px (measured on the stand-in: 3e-5 px, its ONNX Runtime computes the FP16 graph's ops in
    FP32); class scores within 1% of their largest (measured 0.2%)."""
    for name, (source, engine, what) in ultralytics_engines.items():
        sidecar = read_sidecar(engine)
        assert sidecar["detector"] == {"format": what["format"], "family": "yolo",
                                       "input_size": [what["imgsz"], what["imgsz"]]}, name
        assert sidecar["verification"]["enforced"] is False and sidecar["verification"]["metric"]["judged"] == 0
        on_engine, on_onnx = Detector(engine, score_thr=0.0), Detector(source, score_thr=0.0)
        assert on_engine.input_size == on_onnx.input_size == (640, 640), name  # dynamic: Ultralytics' imgsz
        for _, frame, _ in coco_sample[:2]:
            x, _ = letterbox(frame, on_engine.input_size, on_engine.family)
            (got,), (want,) = on_engine.graph.run({"images": x}), on_onnx.graph.run({"images": x})
            assert got.shape == want.shape and got.dtype == np.float32, name
            if what["format"] == "yolo":
                assert np.abs(got[0, :4] - want[0, :4]).max() <= 0.25, name
                assert np.abs(got[0, 4:] - want[0, 4:]).max() <= 0.01 * np.abs(want[0, 4:]).max(), name
            else:
                np.testing.assert_allclose(got, want, atol=0.25)
        boxes = on_engine(frame)
        assert boxes.shape[1] == 5 and np.isfinite(boxes).all() and (np.diff(boxes[:, 4]) <= 0).all(), name


def test_the_gpu_letterbox_feeds_the_engine_what_the_cpu_letterbox_does(standins, ultralytics_engines, coco_sample):
    """Detector("X.engine") letterboxes on the plan's device (the warp kernel, queued on the plan's
    stream ahead of the engine: the frame goes up once, only the outputs come back). On the stand-ins
    its boxes equal those of the host letterbox through the C++ kernel bit for bit; the graphs'
    outputs depend on every input value, so a different input would show."""
    for name, (_, engine, _) in ultralytics_engines.items():
        on_gpu, on_host = Detector(engine, score_thr=0.0), Detector(engine, score_thr=0.0, impl="cpp")
        assert on_gpu.impl == "cuda" and on_host.impl == "cpp"
        for _, frame, _ in coco_sample[:2]:
            first = len(standins.ops)
            got = on_gpu(frame)
            ops = [op.name for op in standins.ops[first:]]
            assert ops.count("warp") == 1 and ops.count("tensorrt") == 1, (name, ops)
            assert ops.index("warp") < ops.index("tensorrt")
            want = on_host(frame)
            np.testing.assert_array_equal(got, want)
            x_dev, geometry = on_gpu._letterbox_cuda(frame)
            x_host, same = letterbox(frame, on_gpu.input_size, on_gpu.family, impl="cpp")
            assert geometry == same
            (raw_dev,), (raw_host,) = on_gpu.graph.run({"images": x_dev}), on_gpu.graph.run({"images": x_host})
            np.testing.assert_array_equal(raw_dev, raw_host)  # the nms=True export keeps no untrained box
            np.testing.assert_array_equal(on_gpu(standins.to_device(frame)), want)  # a frame already there
    with pytest.raises(ValueError, match="impl"):
        Detector(ultralytics_engines["yolov8n_raw.onnx"][0], impl="cuda")  # ONNX Runtime: the host letterbox


# --------------------------------------------------------------------------------------------
# the metric and the verdict, without engines


def test_compare_detections_judges_clear_boxes_both_ways():
    ref = np.array([[100, 100, 200, 300, 0.9], [400, 100, 450, 200, 0.5], [0, 0, 10, 10, 0.19]])
    same = compare_detections([ref], [ref.copy()])
    assert (same.judged, same.disagree, same.min_iou, same.max_score_diff) == (4, 0, 1.0, 0.0)  # 2 + 2 judged
    moved = ref.copy()
    moved[0, :4] += [10, 0, 10, 0]  # 100 px wide, moved 10 px: IoU 90/110 = 0.82
    d = compare_detections([ref], [moved])
    assert d.disagree == 2 and d.min_iou == pytest.approx(90 / 110)
    rescored = ref.copy()
    rescored[1, 4] = 0.56  # 0.06 off
    assert compare_detections([ref], [rescored]).disagree == 2
    # the floor: a reference box at 0.19 is not judged; an invented candidate box counts only from 0.25
    invented = np.vstack([ref, [600, 600, 700, 700, 0.24]])
    assert compare_detections([ref], [invented]).disagree == 0
    invented[-1, 4] = 0.3
    assert compare_detections([ref], [invented]).disagree == 1
    assert compare_detections([ref], [np.zeros((0, 5))]).disagree == 2  # every reference box lost
    assert compare_detections([np.zeros((0, 5))], [np.zeros((0, 5))]).judged == 0
    with pytest.raises(ValueError, match="1 reference images but 2 candidate images"):
        compare_detections([ref], [ref, ref])


def test_judge_detections_allows_a_few_nms_flips_and_not_more(caplog):
    ref = [np.array([[10 * i, 0, 10 * i + 8, 20, 0.9] for i in range(40)], np.float64)]
    one_off = [ref[0].copy()]
    one_off[0][0, 4] = 0.5  # 1 box of 40 (2 of 80 judged both ways): within 5%
    assert judge_detections(ref, one_off)["enforced"] is True
    five_off = [ref[0].copy()]
    five_off[0][:5, 4] = 0.5
    with pytest.raises(EngineVerificationError, match=r"10 of 80 judged boxes have no counterpart"):
        judge_detections(ref, five_off, engine_name="det.engine")
    with caplog.at_level(logging.WARNING):
        result = judge_detections([np.zeros((0, 5))], [np.zeros((0, 5))])
    assert result["enforced"] is False and "not judged" in caplog.text
    assert BoxTolerance().min_score == 0.2


def test_detector_record_reads_only_a_well_formed_entry():
    assert detector_record(None) == {} and detector_record({"variant": "vitpose-b"}) == {}
    good = {"kind": "detector", "detector": {"format": "yolo", "family": "yolo", "input_size": [480, 640]}}
    assert detector_record(good) == {"format": "yolo", "family": "yolo", "input_size": (480, 640)}
    with pytest.raises(ValueError, match="malformed"):
        detector_record({"kind": "detector", "detector": {"format": "yolo", "input_size": [0, 640]}})


def test_the_fp16_detector_graph_of_every_ultralytics_export_loads_and_agrees():
    """The converter alone fails on these graphs (Resize outputs typed FP16 from stale value_info, Casts
    retyped); `convert_detector_to_fp16` repairs both: FP16 weights, FP32 I/O, ONNX Runtime loads it."""
    import onnxruntime as ort

    folder = exports_dir()
    if folder is None:
        pytest.skip("no Ultralytics exports (see tests/test_detect_exports.py)")
    x = np.random.default_rng(0).random((1, 3, 640, 640), np.float32)
    for name in ("yolo11n_raw.onnx", "yolov8n_nms.onnx", "yolo11n_dynamic.onnx"):
        graph = convert_detector_to_fp16(folder / name)
        weights = [t.data_type for t in graph.model.graph.initializer if t.data_type in (1, 10)]
        assert weights.count(onnx.TensorProto.FLOAT16) > 0.9 * len(weights), name
        assert [v.type.tensor_type.elem_type for v in graph.model.graph.output] == [onnx.TensorProto.FLOAT], name
        half = ort.InferenceSession(graph.model.SerializeToString(), providers=["CPUExecutionProvider"])
        full = ort.InferenceSession(str(folder / name), providers=["CPUExecutionProvider"])
        (a,), (b,) = half.run(None, {"images": x}), full.run(None, {"images": x})
        assert np.abs(a - b).max() <= 0.25, name
    with pytest.raises(ValueError, match="it holds 16-bit tensors already"):
        convert_detector_to_fp16(graph.model)
