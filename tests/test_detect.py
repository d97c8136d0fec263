"""Person detectors: each supported ONNX output format, built here with onnx.helper to emit known boxes,
read back through each family's letterbox to the frame's pixels; the HOG fallback; bad detectors."""

from __future__ import annotations

import numpy as np
import pytest

from vitpose_trt.detect import Detector, HogDetector, detect_format, letterbox

FRAME_HW = (480, 640)  # a 640x480 frame into a 320x320 detector: ratio 0.5, 80 px of padding in y


def constant_detector(path, outputs: dict[str, np.ndarray], input_hw=(320, 320), metadata=None):
    """An ONNX graph with one image input whose outputs are the given constants (plus 0 x the
    input's mean, so the input is really consumed)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("ReduceMean", ["images"], ["m"], keepdims=0),
             helper.make_node("Mul", ["m", "zero"], ["z"])]
    inits = [numpy_helper.from_array(np.array(0.0, np.float32), "zero")]
    outs = []
    for name, value in outputs.items():
        inits.append(numpy_helper.from_array(value, f"{name}_const"))
        if value.dtype == np.float32:
            nodes.append(helper.make_node("Add", [f"{name}_const", "z"], [name]))
            outs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(value.shape)))
        else:
            nodes.append(helper.make_node("Identity", [f"{name}_const"], [name]))
            outs.append(helper.make_tensor_value_info(name, TensorProto.INT64, list(value.shape)))
    graph = helper.make_graph(nodes, "detector", [helper.make_tensor_value_info(
        "images", TensorProto.FLOAT, [1, 3, *input_hw])], outs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for k, v in (metadata or {}).items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=k, value=v))
    onnx.save(model, str(path))
    return path


def frame():
    return np.full((*FRAME_HW, 3), 90, np.uint8)


def test_raw_yolo_needs_nms_and_keeps_only_people(tmp_path):
    # (1, 4 + 3 classes, 8 anchors), in the 320x320 input: frame box = ((x, y) - (0, 40)) / 0.5
    anchors = np.array([
        # cx, cy, w, h, person, car, dog
        [100, 100, 40, 80, 0.9, 0.1, 0.0],   # person A
        [102, 101, 40, 80, 0.8, 0.1, 0.0],   # duplicate of A: NMS removes it
        [250, 150, 30, 60, 0.7, 0.0, 0.1],   # person B
        [200, 200, 50, 50, 0.6, 0.9, 0.0],   # a car (its best class): not a person
        [50, 250, 20, 40, 0.1, 0.0, 0.0],    # below the score threshold
        [160, 160, 10, 10, 0.0, 0.0, 0.0],
        [10, 10, 10, 10, 0.0, 0.0, 0.0],
        [20, 20, 10, 10, 0.0, 0.0, 0.0],
    ], np.float32)
    path = constant_detector(tmp_path / "yolo.onnx", {"output0": anchors.T[None].copy()},
                             metadata={"task": "detect", "imgsz": "[320, 320]"})
    det = Detector(path)
    assert (det.format, det.family) == ("yolo", "yolo")
    boxes = det(frame())
    want = np.array([[(100 - 20) * 2, (100 - 40 - 40) * 2, (100 + 20) * 2, (100 + 40 - 40) * 2, 0.9],
                     [(250 - 15) * 2, (150 - 30 - 40) * 2, (250 + 15) * 2, (150 + 30 - 40) * 2, 0.7]])
    np.testing.assert_allclose(boxes, want, atol=1e-3)


def test_mmdeploy_dets_and_labels_with_top_left_letterbox(tmp_path):
    dets = np.array([[[20, 30, 60, 110, 0.95], [100, 100, 140, 200, 0.8], [10, 10, 20, 20, 0.9]]], np.float32)
    labels = np.array([[0, 0, 2]], np.int64)  # the third is not a person
    det = Detector(constant_detector(tmp_path / "yolox.onnx", {"dets": dets, "labels": labels}))
    assert (det.format, det.family) == ("dets_labels", "yolox")
    np.testing.assert_allclose(det(frame()), [[40, 60, 120, 220, 0.95], [200, 200, 280, 400, 0.8]], atol=1e-3)


def test_end_to_end_n6_output_and_format_override(tmp_path):
    out = np.array([[[20, 60, 60, 140, 0.9, 0], [100, 100, 140, 200, 0.2, 0], [5, 50, 15, 70, 0.8, 1]]], np.float32)
    path = constant_detector(tmp_path / "e2e.onnx", {"output0": out})
    det = Detector(path)
    assert (det.format, det.family) == ("xyxy_score_class", "yolo")
    np.testing.assert_allclose(det(frame()), [[40, 40, 120, 200, 0.9]], atol=1e-3)  # y: (60 - 40) / 0.5
    # the same graph read with the top-left letterbox lands 80 px lower: the family matters
    np.testing.assert_allclose(Detector(path, family="yolox")(frame()), [[40, 120, 120, 280, 0.9]], atol=1e-3)


def test_a_detector_config_is_the_same_as_its_keywords(tmp_path):
    """`Detector(path, DetectorConfig(...))` and `Detector(path, score_thr=..., ...)` read and answer the
    same; keywords given beside a config win over its fields; `make_detector` passes either through."""
    from vitpose_trt.detect import DetectorConfig, make_detector

    out = np.array([[[20, 60, 60, 140, 0.9, 0], [100, 100, 140, 200, 0.5, 0], [150, 100, 190, 200, 0.4, 0],
                     [5, 50, 15, 70, 0.8, 1]]], np.float32)
    path = constant_detector(tmp_path / "e2e.onnx", {"output0": out})
    settings = dict(family="yolox", score_thr=0.45, max_boxes=5, impl="numpy", providers=["CPUExecutionProvider"],
                    threads=1)
    by_config, by_keywords = Detector(path, DetectorConfig(**settings)), Detector(path, **settings)
    assert by_config.config == by_keywords.config == DetectorConfig(**settings)
    attrs = ("format", "family", "input_size", "impl", "score_thr", "nms_thr", "person_class", "max_boxes")
    assert [getattr(by_config, a) for a in attrs] == [getattr(by_keywords, a) for a in attrs]
    assert (by_config.family, by_config.impl, by_config.score_thr) == ("yolox", "numpy", 0.45)
    np.testing.assert_array_equal(by_config(frame()), by_keywords(frame()))
    assert len(by_config(frame())) == 2
    both = Detector(path, DetectorConfig(**settings), max_boxes=1)
    assert (both.max_boxes, both.family, both.score_thr) == (1, "yolox", 0.45) and len(both(frame())) == 1
    assert Detector(path).config == DetectorConfig()
    made = make_detector(path, config=DetectorConfig(**settings), max_boxes=1)
    assert isinstance(made, Detector) and made.config == both.config


def test_detector_settings_are_checked_when_made(tmp_path):
    """A misspelt keyword names itself; a bad format, family or letterbox fails in `DetectorConfig`
    (before any file is read) and so in `Detector(...)` too."""
    from vitpose_trt.detect import DetectorConfig

    path = constant_detector(tmp_path / "e2e.onnx", {"output0": np.zeros((1, 3, 6), np.float32)})
    with pytest.raises(TypeError, match="unknown option 'score_threshold'"):
        Detector(path, score_threshold=0.5)
    with pytest.raises(TypeError, match="config must be a DetectorConfig, got str"):
        Detector(path, "yolo")
    for bad, match in ((dict(format="ssd"), "unknown detector format"), (dict(family="ssd"), "unknown detector family"),
                       (dict(impl="fortran"), r"impl \(the letterbox\)")):
        with pytest.raises(ValueError, match=match):
            DetectorConfig(**bad)
        with pytest.raises(ValueError, match=match):
            Detector(tmp_path / "missing.onnx", **bad)  # before the file is looked for
        with pytest.raises(ValueError, match=match):
            Detector(path, DetectorConfig(), **bad)
    with pytest.raises(ValueError, match="impl"):  # "cuda" is a TensorRT plan's letterbox: told from the file
        Detector(path, impl="cuda")


def test_letterbox_colour_order_scaling_and_padding_per_family():
    img = np.zeros((100, 200, 3), np.uint8)
    img[..., 0] = 255  # pure blue in BGR
    x, geometry = letterbox(img, (64, 64), "yolo")
    assert geometry.ratio == pytest.approx(0.32) and (geometry.left, geometry.top) == (0, 16)  # 64x32 image centered: 16 px above and below
    assert x.shape == (1, 3, 64, 64) and x.dtype == np.float32
    np.testing.assert_allclose(x[0, :, 32, 32], [0.0, 0.0, 1.0])  # RGB, /255
    np.testing.assert_allclose(x[0, :, 2, 32], [114 / 255] * 3, atol=1e-6)  # padding above
    x, geometry = letterbox(img, (64, 64), "yolox")
    assert (geometry.left, geometry.top) == (0, 0)
    np.testing.assert_allclose(x[0, :, 10, 32], [255, 0, 0])  # BGR, raw values, image at the top
    np.testing.assert_allclose(x[0, :, 60, 32], [114] * 3)  # padding below
    x, _ = letterbox(img, (64, 64), "rtmdet")
    np.testing.assert_allclose(x[0, :, 10, 32], [(255 - 103.53) / 57.375, -116.28 / 57.12, -123.675 / 58.395],
                               rtol=1e-5)


def test_unknown_outputs_list_the_shapes_seen_and_the_formats_accepted(tmp_path):
    path = constant_detector(tmp_path / "odd.onnx", {"scores": np.zeros((1, 7), np.float32)})
    with pytest.raises(ValueError) as e:
        Detector(path)
    msg = str(e.value)
    assert "scores [1, 7]" in msg and "(1, N, 6)" in msg and "dets (1, N, 5)" in msg and "odd.onnx" in msg
    with pytest.raises(ValueError, match="unknown detector outputs"):
        detect_format([("a", (1, 3)), ("b", (2,))])


def test_bad_detector_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="detector not found"):
        Detector(tmp_path / "missing.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a protobuf at all")
    with pytest.raises(ValueError, match="junk.onnx: not a loadable ONNX model"):
        Detector(junk)
    with pytest.raises(ValueError, match="unknown detector family"):
        Detector(constant_detector(tmp_path / "d.onnx", {"output0": np.zeros((1, 3, 6), np.float32)}),
                 family="ssd")


def test_hog_fallback_finds_the_upright_people_of_a_real_photo(coco_sample):
    name, image, boxes = next(s for s in coco_sample if s[0] == "000000196141.jpg")
    from vitpose_trt.tracking import iou_matrix

    found = HogDetector()(image)
    assert found.shape[1] == 5 and len(found) >= 1 and np.all(np.diff(found[:, 4]) <= 0)
    # every HOG box overlaps a real detector's box: it finds people, not background
    assert iou_matrix(found, boxes).max(axis=1).min() > 0.3
    assert len(HogDetector()(np.zeros((60, 60, 3), np.uint8))) == 0  # smaller than its window: nothing
