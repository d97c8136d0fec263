"""VitPoseTRT on the CPU: the same answer as the reference steps, chunking, flip test, errors."""

import logging

import numpy as np
import pytest
import torch

from vitpose_trt import VitPoseTRT, postprocess, preprocess
from vitpose_trt.engines import open_engine
from vitpose_trt.engines.torch_engine import TorchEngine


def reference(model, frame, boxes, mode, flip=False):
    crops, transforms = preprocess(frame, boxes, mode, flip=flip)
    with torch.inference_mode():
        hm = model(torch.from_numpy(crops)).numpy()
    n = len(transforms)
    return postprocess(hm[:n], transforms, mode, flipped=hm[n:] if flip else None)


@pytest.mark.parametrize("mode", ["udp", "classic"])
@pytest.mark.parametrize("flip", [False, True])
def test_infer_equals_reference_steps_on_real_photos(tiny_model, coco_sample, mode, flip):
    pose = VitPoseTRT(TorchEngine(tiny_model), mode=mode, flip_test=flip, impl="numpy")
    for _, frame, boxes in coco_sample[:2]:
        got = pose.infer(frame, boxes)
        assert got.shape == (len(boxes), 17, 3) and got.dtype == np.float32
        np.testing.assert_array_equal(got, reference(tiny_model, frame, boxes, mode, flip))


def test_chunks_above_max_batch(tiny_model, coco_sample):
    _, frame, boxes = coco_sample[0]
    whole = VitPoseTRT(TorchEngine(tiny_model), impl="numpy", flip_test=True).infer(frame, boxes)
    engine = TorchEngine(tiny_model)
    engine.max_batch = 6  # 3 boxes + their 3 mirrors per call
    chunked = VitPoseTRT(engine, impl="numpy", flip_test=True).infer(frame, boxes)
    np.testing.assert_allclose(chunked, whole, atol=1e-4)  # batch size changes only float summation order


def test_empty_and_outside_boxes(tiny_model):
    pose = VitPoseTRT(TorchEngine(tiny_model), impl="numpy")
    frame = np.zeros((48, 64, 3), np.uint8)
    assert pose.infer(frame, np.zeros((0, 4))).shape == (0, 17, 3)
    assert pose.infer(frame, []).shape == (0, 17, 3)
    out = pose.infer(frame, [[-500, -500, -400, -300], [50, 30, 500, 400]])  # wholly and partly outside
    assert np.isfinite(out).all()


def test_bad_input_is_a_clear_error(tiny_model):
    pose = VitPoseTRT(TorchEngine(tiny_model), impl="numpy")
    frame = np.zeros((48, 64, 3), np.uint8)
    with pytest.raises(ValueError, match="uint8"):
        pose.infer(frame.astype(np.float32), [[0, 0, 10, 10]])
    with pytest.raises(ValueError, match="uint8"):
        pose.infer(frame.astype(np.float32), [])  # checked even with no boxes
    with pytest.raises(ValueError, match="NaN"):
        pose.infer(frame, [[0, 0, np.nan, 10]])
    with pytest.raises(ValueError, match="x2 < x1"):
        pose.infer(frame, [[10, 0, 0, 10]])
    with pytest.raises(ValueError, match="unknown mode"):
        VitPoseTRT(TorchEngine(tiny_model), mode="dark")
    with pytest.raises(ValueError, match="unknown backend"):
        VitPoseTRT(None, backend="tflite")
    with pytest.raises(FileNotFoundError):
        VitPoseTRT("/nonexistent/model.onnx")


def test_flip_test_needs_pairs_for_other_keypoint_sets():
    from vitpose_trt.model import ViTPose, ViTPoseConfig

    model = ViTPose(ViTPoseConfig(variant="tiny", embed_dim=32, depth=1, num_heads=2, num_keypoints=5)).eval()
    with pytest.raises(ValueError, match="flip_pairs"):
        VitPoseTRT(TorchEngine(model), flip_test=True)
    pose = VitPoseTRT(TorchEngine(model), flip_test=True, flip_pairs=[(1, 2), (3, 4)], impl="numpy")
    assert pose.infer(np.zeros((32, 32, 3), np.uint8), [[0, 0, 20, 30]]).shape == (1, 5, 3)


def test_onnx_engine_matches_pytorch(tiny_model, coco_sample, tmp_path):
    from vitpose_trt.export import export_onnx

    path = export_onnx(tiny_model, tmp_path / "tiny.onnx").path
    _, frame, boxes = coco_sample[1]
    onnx_pose = VitPoseTRT(path, impl="numpy")
    assert onnx_pose.engine.name == "onnxruntime" and onnx_pose.random_weights
    torch_pose = VitPoseTRT(TorchEngine(tiny_model), impl="numpy")
    np.testing.assert_allclose(onnx_pose.infer(frame, boxes), torch_pose.infer(frame, boxes), atol=1e-3)


def test_default_engine_is_random_vitpose_b_and_says_so(coco_sample, caplog):
    _, frame, boxes = coco_sample[0]
    with caplog.at_level(logging.WARNING):
        pose = VitPoseTRT(None, device="cpu")
    assert pose.random_weights and "RANDOM" in caplog.text
    assert pose.engine.describe().endswith("RANDOM WEIGHTS (not a trained model))")
    kp = pose.infer(frame, boxes[:2])
    assert kp.shape == (2, 17, 3) and np.isfinite(kp).all()


def test_infer_async_on_cpu_returns_the_same(tiny_model, coco_sample):
    pose = VitPoseTRT(TorchEngine(tiny_model), impl="numpy")
    _, frame, boxes = coco_sample[0]
    np.testing.assert_array_equal(pose.infer_async(frame, boxes).result(), pose.infer(frame, boxes))


def test_tensorrt_plan_without_tensorrt_is_a_clear_error(tmp_path):
    plan = tmp_path / "model.engine"
    plan.write_bytes(b"not a plan")
    from vitpose_trt.engines.tensorrt import TensorRTUnavailableError, tensorrt_available

    if tensorrt_available():
        pytest.skip("TensorRT is installed here")
    with pytest.raises(TensorRTUnavailableError, match="TensorRT is not installed: `pip install tensorrt`"):
        open_engine(plan)
    with pytest.raises(ValueError, match="vitpose-trt build"):
        open_engine(None, backend="tensorrt")
