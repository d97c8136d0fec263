"""`Detector` on the ONNX files users actually have: Ultralytics' own exports of YOLOv8n and YOLO11n.

The files come from tests/detector_exports.py, run by `.ci/run` in an environment of its own (Ultralytics
is AGPL-3.0 and needs a torchvision that does not import beside CI's torch); their folder is
$VITPOSE_TRT_DETECTOR_EXPORTS (or `.detector-exports/` in the checkout). Their weights are random (built
from the model YAML), so the boxes mean nothing: what is checked is that every variant is read right
(format, family, input size from the graph and Ultralytics' metadata) and gives well-formed boxes.
The exact decoding of each format is checked on hand-built graphs in tests/test_detect.py.
"""

from __future__ import annotations

import json
import os
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO
from vitpose_trt.detect import KNOWN_DETECTORS, Detector, detector_file


def exports_dir() -> Path | None:
    folder = Path(os.environ.get("VITPOSE_TRT_DETECTOR_EXPORTS", REPO / ".detector-exports"))
    return folder if (folder / "manifest.json").is_file() else None


@pytest.fixture(scope="module")
def exports() -> tuple[Path, dict]:
    folder = exports_dir()
    if folder is None:
        pytest.skip("no Ultralytics exports: run `python tests/detector_exports.py .detector-exports` where "
                    "ultralytics is installed (.ci/run does), or set VITPOSE_TRT_DETECTOR_EXPORTS")
    return folder, json.loads((folder / "manifest.json").read_text())


def test_every_ultralytics_export_is_read_right(exports, coco_sample):
    folder, manifest = exports
    assert {f["family"] for f in manifest["files"].values()} == {"yolov8n", "yolo11n"}
    assert {f["variant"] for f in manifest["files"].values()} == {"raw", "nms", "dynamic"}
    _, frame, _ = coco_sample[0]
    h, w = frame.shape[:2]
    for name, what in manifest["files"].items():
        detector = Detector(folder / name, score_thr=0.0)
        assert (detector.format, detector.family) == (what["format"], "yolo"), name
        assert detector.input_size == (what["imgsz"], what["imgsz"]), name  # the dynamic one: from `imgsz`
        boxes = detector(frame)
        assert boxes.ndim == 2 and boxes.shape[1] == 5 and boxes.dtype == np.float64, name
        assert len(boxes) <= detector.max_boxes and np.isfinite(boxes).all(), name
        assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all(), name
        assert (boxes[:, [0, 2]] >= 0).all() and (boxes[:, [0, 2]] <= w).all(), name
        assert (boxes[:, [1, 3]] >= 0).all() and (boxes[:, [1, 3]] <= h).all(), name
        assert ((0 <= boxes[:, 4]) & (boxes[:, 4] <= 1)).all() and (np.diff(boxes[:, 4]) <= 0).all(), name


def test_raw_and_dynamic_exports_of_the_same_weights_agree(exports, coco_sample):
    """The dynamic-size export at its recorded 640x640 is the raw export: the same boxes."""
    folder, _ = exports
    _, frame, _ = coco_sample[1]
    for family in ("yolov8n", "yolo11n"):
        raw = Detector(folder / f"{family}_raw.onnx", score_thr=0.0)(frame)
        dynamic = Detector(folder / f"{family}_dynamic.onnx", score_thr=0.0)(frame)
        np.testing.assert_allclose(dynamic, raw, rtol=1e-4, atol=1e-3)


def test_a_known_name_is_exported_with_ultralytics_once(tmp_path, monkeypatch):
    """`--detector yolo11n`: no such file here, so Ultralytics exports it into the cache, once."""
    from tests.test_detect import constant_detector

    made = []
    source = constant_detector(tmp_path / "stand-in.onnx", {"output0": np.zeros((1, 84, 100), np.float32)},
                               metadata={"task": "detect", "imgsz": "[320, 320]"})  # what an export would write

    class YOLO:
        def __init__(self, weights):
            made.append(weights)

        def export(self, format):
            out = tmp_path / "exported.onnx"
            out.write_bytes(Path(source).read_bytes())
            return str(out)

    monkeypatch.setitem(sys.modules, "ultralytics", types.SimpleNamespace(YOLO=YOLO))
    monkeypatch.chdir(tmp_path)
    first = detector_file("yolo11n", cache=tmp_path / "cache")
    assert first == tmp_path / "cache" / "yolo11n.onnx" and made == ["yolo11n.pt"]
    assert detector_file("yolo11n.onnx", cache=tmp_path / "cache") == first and made == ["yolo11n.pt"]
    assert (Detector(first).format, Detector(first).input_size) == ("yolo", (320, 320))


def test_a_known_name_without_ultralytics_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ultralytics", None)  # import fails
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ImportError, match=r"detector yolov8s: yolov8s.onnx is not here and Ultralytics is not "
                                          r"installed.*pip install ultralytics.*yolo export model=yolov8s.pt"):
        detector_file("yolov8s", cache=tmp_path)
    with pytest.raises(FileNotFoundError, match=r"detector not found: nope.onnx \(or a known name: yolov8n"):
        detector_file("nope.onnx")
    assert "yolo11x" in KNOWN_DETECTORS and "yolov8n" in KNOWN_DETECTORS
