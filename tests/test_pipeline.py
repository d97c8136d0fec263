"""VitPoseTRT on the CPU: the same answer as the reference steps, chunking, flip test, errors."""

import logging

import numpy as np
import pytest
import torch

from vitpose_trt import VitPoseTRT, postprocess, preprocess
from vitpose_trt.engines import open_engine
from vitpose_trt.engines.pytorch import PyTorchEngine


def reference(model, frame, boxes, mode, flip=False):
    crops, transforms = preprocess(frame, boxes, mode, flip=flip)
    with torch.inference_mode():
        hm = model(torch.from_numpy(crops)).numpy()
    n = len(transforms)
    return postprocess(hm[:n], transforms, mode, flipped=hm[n:] if flip else None)


@pytest.mark.parametrize("mode", ["udp", "classic"])
@pytest.mark.parametrize("flip", [False, True])
def test_infer_equals_reference_steps_on_real_photos(tiny_model, coco_sample, mode, flip):
    pose = VitPoseTRT(PyTorchEngine(tiny_model), mode=mode, flip_test=flip, impl="numpy")
    for _, frame, boxes in coco_sample[:2]:
        got = pose.infer(frame, boxes)
        assert got.shape == (len(boxes), 17, 3) and got.dtype == np.float32
        np.testing.assert_array_equal(got, reference(tiny_model, frame, boxes, mode, flip))


def test_chunks_above_max_batch(tiny_model, coco_sample):
    _, frame, boxes = coco_sample[0]
    whole = VitPoseTRT(PyTorchEngine(tiny_model), impl="numpy", flip_test=True).infer(frame, boxes)
    engine = PyTorchEngine(tiny_model)
    engine.max_batch = 6  # 3 boxes + their 3 mirrors per call
    chunked = VitPoseTRT(engine, impl="numpy", flip_test=True).infer(frame, boxes)
    np.testing.assert_allclose(chunked, whole, atol=1e-4)  # batch size changes only float summation order


def test_empty_and_outside_boxes(tiny_model):
    pose = VitPoseTRT(PyTorchEngine(tiny_model), impl="numpy")
    frame = np.zeros((48, 64, 3), np.uint8)
    assert pose.infer(frame, np.zeros((0, 4))).shape == (0, 17, 3)
    assert pose.infer(frame, []).shape == (0, 17, 3)
    out = pose.infer(frame, [[-500, -500, -400, -300], [50, 30, 500, 400]])  # wholly and partly outside
    assert np.isfinite(out).all()


def test_bad_input_is_a_clear_error(tiny_model):
    pose = VitPoseTRT(PyTorchEngine(tiny_model), impl="numpy")
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
        VitPoseTRT(PyTorchEngine(tiny_model), mode="dark")
    with pytest.raises(ValueError, match="unknown backend"):
        VitPoseTRT(None, backend="tflite")
    with pytest.raises(FileNotFoundError):
        VitPoseTRT("/nonexistent/model.onnx")


def test_flip_test_needs_pairs_for_other_keypoint_sets():
    from vitpose_trt.model import ViTPose, ViTPoseConfig

    model = ViTPose(ViTPoseConfig(variant="tiny", embed_dim=32, depth=1, num_heads=2, num_keypoints=5)).eval()
    with pytest.raises(ValueError, match="flip_pairs"):
        VitPoseTRT(PyTorchEngine(model), flip_test=True)
    pose = VitPoseTRT(PyTorchEngine(model), flip_test=True, flip_pairs=[(1, 2), (3, 4)], impl="numpy")
    assert pose.infer(np.zeros((32, 32, 3), np.uint8), [[0, 0, 20, 30]]).shape == (1, 5, 3)


def test_onnx_engine_matches_pytorch(tiny_model, coco_sample, tmp_path):
    from vitpose_trt.export import export_onnx

    path = export_onnx(tiny_model, tmp_path / "tiny.onnx").path
    _, frame, boxes = coco_sample[1]
    onnx_pose = VitPoseTRT(path, impl="numpy")
    assert onnx_pose.engine.name == "onnxruntime" and onnx_pose.random_weights
    torch_pose = VitPoseTRT(PyTorchEngine(tiny_model), impl="numpy")
    np.testing.assert_allclose(onnx_pose.infer(frame, boxes), torch_pose.infer(frame, boxes), atol=1e-3)


def test_default_engine_is_random_vitpose_b_and_says_so(coco_sample, caplog):
    _, frame, boxes = coco_sample[0]
    with caplog.at_level(logging.DEBUG, logger="vitpose_trt"):  # a warning once per process, debug after
        pose = VitPoseTRT(None, device="cpu")
    assert pose.random_weights and "RANDOM" in caplog.text
    assert pose.engine.describe().endswith("RANDOM WEIGHTS (not a trained model))")
    kp = pose.infer(frame, boxes[:2])
    assert kp.shape == (2, 17, 3) and np.isfinite(kp).all()


def test_infer_async_on_cpu_returns_the_same(tiny_model, coco_sample):
    pose = VitPoseTRT(PyTorchEngine(tiny_model), impl="numpy")
    _, frame, boxes = coco_sample[0]
    np.testing.assert_array_equal(pose.infer_async(frame, boxes).result(), pose.infer(frame, boxes))


def test_tensorrt_plan_without_tensorrt_is_a_clear_error(tmp_path):
    plan = tmp_path / "model.engine"
    plan.write_bytes(b"not a plan")
    from vitpose_trt.engines.tensorrt import TensorRTUnavailableError, tensorrt_available

    if tensorrt_available():
        pytest.skip("TensorRT is installed here")
    # names the package for each CUDA major version (CUDA 13 stacks need tensorrt-cu13, not -cu12)
    with pytest.raises(TensorRTUnavailableError,
                       match="TensorRT is not installed: `pip install tensorrt-cu13` or `pip install tensorrt-cu12`"):
        open_engine(plan)
    with pytest.raises(ValueError, match="vitpose-trt build"):
        open_engine(None, backend="tensorrt")


# --- several frames per call, bounded batches ------------------------------------------------------


@pytest.mark.parametrize("flip", [False, True])
def test_infer_many_equals_infer_per_frame(sample_model, coco_sample, flip):
    """Frames share engine batches (here 3 boxes per call, so batches straddle frames); each frame's
    keypoints equal its own `infer`. Only the batch composition differs, which changes PyTorch's
    float summation order: 1e-3 px and 1e-4 of the ~1.0 peak scores cover that."""
    engine = PyTorchEngine(sample_model, max_batch=6 if flip else 3)
    pose = VitPoseTRT(engine, flip_test=flip)
    frames = [frame for _, frame, _ in coco_sample[:3]]
    boxes = [b[:n] for (_, _, b), n in zip(coco_sample[:3], (4, 0, 3))]
    many = pose.infer_many(frames, boxes)
    assert [m.shape for m in many] == [(4, 17, 3), (0, 17, 3), (3, 17, 3)]
    for frame, b, got in zip(frames, boxes, many):
        want = VitPoseTRT(PyTorchEngine(sample_model, max_batch=64), flip_test=flip).infer(frame, b)
        np.testing.assert_allclose(got[..., :2], want[..., :2], atol=1e-3)
        np.testing.assert_allclose(got[..., 2], want[..., 2], atol=1e-4)
    with pytest.raises(ValueError, match="2 frames but 1 box arrays"):
        pose.infer_many(frames[:2], boxes[:1])


def test_infer_many_catches_a_frame_mixup(sample_model, coco_sample):
    """The comparison above can fail: boxes paired with the wrong frame give other keypoints."""
    pose = VitPoseTRT(PyTorchEngine(sample_model))
    (_, f0, b0), (_, f1, _) = coco_sample[0], coco_sample[1]
    right = pose.infer_many([f0], [b0[:2]])[0]
    wrong = pose.infer_many([f1], [b0[:2]])[0]
    assert np.abs(right[..., :2] - wrong[..., :2]).max() > 1.0


def _small_model():
    from vitpose_trt.model import ViTPose, ViTPoseConfig

    torch.manual_seed(0)
    return ViTPose(ViTPoseConfig(variant="tiny", embed_dim=32, depth=1, num_heads=2, deconv_channels=8)).eval()


def _peak_bytes(pose, frame, boxes) -> int:
    import tracemalloc

    tracemalloc.start()
    try:
        pose.infer(frame, boxes)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


MEMORY_BOUND = 64 << 20  # 2,000 boxes in chunks of 16: ~16 x (590 KB crop + 209 KB heatmaps) + keypoints


def test_memory_stays_bounded_for_2000_boxes():
    """A crowd (or a detector gone wrong) runs in bounded engine batches: peak host memory for 2,000
    boxes stays under MEMORY_BOUND (numpy's allocations, traced by tracemalloc), and the same
    measurement exceeds it when the batch is not bounded (500 crops at once: ~400 MB)."""
    model = _small_model()
    frame = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    rng = np.random.default_rng(1)
    xy = rng.uniform(0, 500, (2000, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(20, 140, (2000, 2))], axis=1)
    bounded = VitPoseTRT(PyTorchEngine(model))
    assert bounded.engine.max_batch == 16
    peak = _peak_bytes(bounded, frame, boxes)
    assert peak < MEMORY_BOUND, f"{peak / 2**20:.0f} MiB for 2,000 boxes"
    unbounded = VitPoseTRT(PyTorchEngine(model, max_batch=500))
    assert _peak_bytes(unbounded, frame, boxes[:500]) > MEMORY_BOUND


def test_any_module_and_bounded_batch_options(sample_model, coco_sample):
    _, frame, boxes = coco_sample[0]
    pose = VitPoseTRT(sample_model, device="cpu", max_batch=2)
    assert pose.engine.name == "pytorch" and pose.engine.max_batch == 2
    assert pose.infer(frame, boxes[:3]).shape == (3, 17, 3)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="max_batch"):
            VitPoseTRT(sample_model, device="cpu", max_batch=bad)
    with pytest.raises(ValueError, match="threads"):
        VitPoseTRT(sample_model, device="cpu", threads=0)
    with pytest.raises(TypeError, match="engine must be"):
        VitPoseTRT(12345)


def test_a_pose_config_is_the_same_as_its_keywords(tiny_model, coco_sample):
    """`VitPoseTRT(engine, PoseConfig(...))` and `VitPoseTRT(engine, mode=..., ...)` open and run the same;
    keywords given beside a config win over its fields; `pose.config` holds what is in use."""
    from vitpose_trt import PoseConfig

    settings = dict(mode="classic", flip_test=True, device="cpu", precision="fp32", impl="numpy", max_batch=4,
                    dataset="coco")
    by_config = VitPoseTRT(tiny_model, PoseConfig(**settings))
    by_keywords = VitPoseTRT(tiny_model, **settings)
    assert by_config.config == by_keywords.config == PoseConfig(**settings)
    attrs = ("mode", "flip_test", "impl", "dataset", "num_keypoints")
    assert [getattr(by_config, a) for a in attrs] == [getattr(by_keywords, a) for a in attrs]
    assert (by_config.mode, by_config.flip_test, by_config.impl) == ("classic", True, "numpy")
    assert by_config.engine.max_batch == by_keywords.engine.max_batch == 4
    _, frame, boxes = coco_sample[0]
    np.testing.assert_array_equal(by_config.infer(frame, boxes), by_keywords.infer(frame, boxes))
    both = VitPoseTRT(tiny_model, PoseConfig(**settings), mode="udp", flip_test=False)
    assert (both.mode, both.flip_test, both.impl, both.config.max_batch) == ("udp", False, "numpy", 4)
    assert VitPoseTRT(PyTorchEngine(tiny_model)).config == PoseConfig()


def test_pose_settings_are_checked_when_made(tiny_model):
    """A misspelt keyword names itself; bad values fail in `PoseConfig` (before any engine is opened) and
    so in `VitPoseTRT(...)` too."""
    from vitpose_trt import PoseConfig

    with pytest.raises(TypeError, match="unknown option 'flip_tset'"):
        VitPoseTRT(PyTorchEngine(tiny_model), flip_tset=True)
    with pytest.raises(TypeError, match="config must be a PoseConfig, got str"):
        VitPoseTRT(PyTorchEngine(tiny_model), "classic")
    for bad, match in ((dict(mode="dark"), "unknown mode"), (dict(threads=0), "threads"),
                       (dict(impl="fortran"), "unknown impl")):
        with pytest.raises(ValueError, match=match):
            PoseConfig(**bad)
        with pytest.raises(ValueError, match=match):
            VitPoseTRT(PyTorchEngine(tiny_model), **bad)
        with pytest.raises(ValueError, match=match):
            VitPoseTRT(PyTorchEngine(tiny_model), PoseConfig(), **bad)


def test_cuda_device_without_a_gpu_is_a_runtime_error(tiny_model):
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible here")
    with pytest.raises(RuntimeError, match="no CUDA GPU is visible"):
        VitPoseTRT(tiny_model, device="cuda")


# --- bad input: a ValueError/TypeError naming the problem --------------------------------------------


@pytest.mark.parametrize("boxes,match", [
    ([["a", "b", "c", "d"]], "boxes must be numbers"),
    ([[0, 0, 10, 10], [0, 0, 10]], "boxes must be numbers"),
    ([[0, 0, 1e39, 10]], r"beyond \+-100000 px"),
    ([[-2e8, 0, 10, 10]], r"beyond \+-100000 px"),
    (None, "boxes is None"),
])
def test_bad_boxes_name_the_problem(tiny_model, boxes, match):
    pose = VitPoseTRT(PyTorchEngine(tiny_model), impl="numpy")
    with pytest.raises(ValueError, match=match):
        pose.infer(np.zeros((48, 64, 3), np.uint8), boxes)


@pytest.mark.parametrize("pairs", [[(1, 2, 3)], [1, 2], [("a", "b")], [(1.5, 2)], 7])
def test_malformed_flip_pairs_name_the_problem(tiny_model, pairs):
    with pytest.raises(ValueError, match="flip_pairs"):
        VitPoseTRT(PyTorchEngine(tiny_model), flip_test=True, flip_pairs=pairs)


def test_a_failed_imread_is_a_value_error(tiny_model):
    import cv2

    frame = cv2.imread("/nonexistent.jpg")
    with pytest.raises(ValueError, match="frame is None"):
        VitPoseTRT(PyTorchEngine(tiny_model)).infer(frame, [[0, 0, 10, 10]])


@pytest.mark.parametrize("view", ["mirror", "flip", "transpose", "rgb", "fortran"])
def test_any_strided_frame_gives_the_contiguous_result(sample_model, coco_sample, view):
    """Selfie-camera mirrors, flips, transposes, BGR->RGB views and Fortran order are all valid
    HxWx3 uint8 frames: every path answers as for the same pixels in a contiguous array."""
    _, frame, boxes = coco_sample[1]
    v = {"mirror": frame[:, ::-1], "flip": frame[::-1], "transpose": frame.transpose(1, 0, 2),
         "rgb": frame[..., ::-1], "fortran": np.asfortranarray(frame)}[view]
    pose = VitPoseTRT(PyTorchEngine(sample_model))
    np.testing.assert_array_equal(pose.infer(v, boxes[:2]), pose.infer(np.ascontiguousarray(v), boxes[:2]))


def test_threads_sharing_one_instance_get_the_single_threaded_answers(sample_model, coco_sample):
    """The documented guarantee on the CPU path: one VitPoseTRT shared by threads answers each call
    as if it were alone (bit for bit)."""
    from concurrent.futures import ThreadPoolExecutor

    pose = VitPoseTRT(PyTorchEngine(sample_model))
    jobs = [(frame, boxes[:3]) for _, frame, boxes in coco_sample] * 2
    alone = [pose.infer(f, b) for f, b in jobs]
    with ThreadPoolExecutor(4) as pool:
        shared = list(pool.map(lambda job: pose.infer(*job), jobs))
    for a, b in zip(alone, shared):
        np.testing.assert_array_equal(a, b)
