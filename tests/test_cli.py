"""The vitpose-trt command line, end to end on a real photo."""

import json
import shutil

import cv2
import pytest

from tests.conftest import coco_sample_dir
from vitpose_trt.cli import main


@pytest.fixture(scope="module")
def onnx_s(tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "vitpose-s.onnx"
    assert main(["export", "-o", str(path), "--variant", "s"]) == 0
    return path


def test_export_writes_a_labelled_model(onnx_s):
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(onnx_s)).metadata_props}
    assert meta["variant"] == "vitpose-s" and meta["random_weights"] == "true"


def test_infer_on_a_real_photo_with_detector_boxes(onnx_s, tmp_path, capsys):
    root = coco_sample_dir()
    if root is None:
        pytest.skip("real photos not found: ../shared/data/coco-sample is absent")
    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(root / "000000000785.jpg", images)  # a temp copy, so the folder holds one image
    out = tmp_path / "out"
    rc = main(["infer", str(images), "--boxes", str(root / "person_detections.json"), "--out", str(out),
               "--engine", str(onnx_s), "--box-thr", "0.3"])
    assert rc == 0
    results = json.loads((out / "keypoints.json").read_text())
    dets = [d for d in json.loads((root / "person_detections.json").read_text())
            if d["image_id"] == 785 and d["score"] >= 0.3]
    assert len(results) == len(dets) > 0
    for r in results:
        assert r["image_id"] == 785 and r["category_id"] == 1 and len(r["keypoints"]) == 51
    overlay = cv2.imread(str(out / "000000000785_pose.jpg"))
    assert overlay is not None and overlay.shape == (425, 640, 3)
    assert "RANDOM WEIGHTS" in capsys.readouterr().out


def test_infer_whole_frame_without_boxes(onnx_s, tmp_path):
    img = tmp_path / "person.png"
    cv2.imwrite(str(img), (255 * (cv2.getGaussianKernel(64, 10) @ cv2.getGaussianKernel(48, 10).T)).astype("uint8"))
    rc = main(["infer", str(img), "--out", str(tmp_path / "o"), "--engine", str(onnx_s), "--mode", "classic",
               "--whole-frame"])
    assert rc == 0
    (result,) = json.loads((tmp_path / "o" / "keypoints.json").read_text())
    xs, ys = result["keypoints"][0::3], result["keypoints"][1::3]
    assert len(xs) == len(ys) == 17
    # the whole 48x64 frame is the box; padded by 1.25 it spans x in [-6, 54], y in [-8, 72], and classic
    # decoding never leaves the crop
    assert all(-6 - 1e-3 <= x <= 54 + 1e-3 for x in xs) and all(-8 - 1e-3 <= y <= 72 + 1e-3 for y in ys)


def test_errors_exit_nonzero_with_a_message(tmp_path, capsys):
    assert main(["infer", str(tmp_path / "missing.jpg"), "--out", str(tmp_path)]) == 2
    assert "not found" in capsys.readouterr().err


def test_build_without_tensorrt_says_how_to_install(tmp_path, capsys):
    import tensorrt

    if hasattr(tensorrt, "Builder"):
        pytest.skip("TensorRT is installed here")
    rc = main(["build", str(tmp_path / "model.onnx"), "-o", str(tmp_path / "m.engine"), "--fp16"])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and len(err.splitlines()) == 1 and "install" in err.lower()
