"""The GPU path (gpu_path.py) executed in CI, on the CPU stand-in for CUDA (tests/standins/cuda.py).

The stand-in runs the CUDA kernels as their C++ CPU twins and "device" memory is host memory, so
`VitPoseTRT` on a CUDA engine must equal the CPU path (`impl="cpp"`, the same engine batches) bit for
bit. What a real GPU adds, ordering, is checked through the stand-in's bookkeeping: which stream
each kernel, copy and engine call was enqueued on, whether accesses to device memory from two
streams are ordered (every test fails on a race, see the `standin` fixture in conftest.py), and how
often the host waits. The same orchestration on a real GPU: tests/test_gpu_pipeline.py (requires_cuda).
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from tests.standins.cuda import DEVICE, CudaStandIn, ForeignFrame, happens_before
from vitpose_trt import VitPoseTRT, postprocess, preprocess
from vitpose_trt.cuda_runtime import use_runtime
from vitpose_trt.engines.pytorch import PyTorchEngine
from vitpose_trt.gpu_path import GpuPath

BOXES = 4  # most confident detector boxes per photo: real people, a few seconds of ViTPose-S on 2 cores


@pytest.fixture(scope="module")
def photos(coco_sample):
    """(frame, boxes) of two photos, each with its most confident detector boxes."""
    out = []
    for _, frame, boxes in coco_sample[:2]:
        out.append((frame, boxes[np.argsort(-boxes[:, 4])][:BOXES, :4]))
    return out


def gpu_pose(model, **kw) -> VitPoseTRT:
    max_batch = kw.pop("max_batch", 64)
    pose = VitPoseTRT(PyTorchEngine(model, "cuda", "fp32", max_batch=max_batch), **kw)
    assert isinstance(pose.path, GpuPath), "the GPU path was not taken"
    return pose


def cpu_pose(model, **kw) -> VitPoseTRT:
    """The CPU path with the C++ kernels and the same engine batches as `gpu_pose`."""
    max_batch = kw.pop("max_batch", 64)
    return VitPoseTRT(PyTorchEngine(model, "cpu", "fp32", max_batch=max_batch), impl="cpp", **kw)


def watch_model(standin: CudaStandIn, model: torch.nn.Module):
    """Log every forward pass of `model` as an operation on the current stream, reading its input."""
    return model.register_forward_pre_hook(lambda module, args: standin.enqueue("model", reads=[args[0]]) and None)


# --------------------------------------------------------------------------------------------
# the same answer as the CPU path, bit for bit


@pytest.mark.parametrize("mode", ["udp", "classic"])
@pytest.mark.parametrize("flip", [False, True])
def test_equals_the_cpu_path_bit_for_bit(standin, sample_model, photos, mode, flip):
    gpu, cpu = gpu_pose(sample_model, mode=mode, flip_test=flip), cpu_pose(sample_model, mode=mode, flip_test=flip)
    scores = []
    for frame, boxes in photos:
        got = gpu.infer(frame, boxes)
        assert got.shape == (len(boxes), 17, 3) and got.dtype == np.float32
        np.testing.assert_array_equal(got, cpu.infer(frame, boxes))
        scores.append(got[..., 2])
    assert (np.concatenate(scores) > 0.5).mean() > 0.3, "real peaks: the fixture model knows these people"


def test_async_many_strided_device_frames_and_chunking(standin, sample_model, photos):
    """infer_async with two frames in flight, infer_many over host, strided and device frames and a
    frame without boxes, and more boxes than the engine's batch: all equal the CPU path."""
    (f0, b0), (f1, b1) = photos
    mirrored = f1[:, ::-1]  # a negative-stride view
    b1m = b1.copy()
    b1m[:, [0, 2]] = f1.shape[1] - 1 - b1[:, [2, 0]]
    on_device = standin.to_device(f0)
    frames = [f0, mirrored, on_device, f1]
    boxes = [b0, b1m, b0[:3], np.zeros((0, 4))]
    for max_batch in (64, 5):  # 5: frames span engine calls
        # the same calls on both paths: the model's float sums depend on the batch it runs in
        gpu, cpu = gpu_pose(sample_model, max_batch=max_batch), cpu_pose(sample_model, max_batch=max_batch)
        h0, h1 = gpu.infer_async(f0, b0), gpu.infer_async(mirrored, b1m)
        np.testing.assert_array_equal(h1.result(), cpu.infer(mirrored, b1m))
        np.testing.assert_array_equal(h0.result(), cpu.infer(f0, b0))
        np.testing.assert_array_equal(gpu.infer(on_device, b0[:3]), cpu.infer(f0, b0[:3]))
        want = cpu.infer_many([f0, mirrored, f0, f1], boxes)
        for got, expected in zip(gpu.infer_many(frames, boxes), want):
            np.testing.assert_array_equal(got, expected)
        assert want[3].shape == (0, 17, 3)


def test_no_boxes_and_bad_frames(standin, tiny_model):
    pose = gpu_pose(tiny_model)
    frame = np.zeros((10, 10, 3), np.uint8)
    assert pose.infer(frame, []).shape == (0, 17, 3)
    assert [m.shape for m in pose.infer_many([frame, standin.to_device(frame)], [[], []])] == [(0, 17, 3)] * 2
    with pytest.raises(ValueError, match="uint8"):
        pose.infer(frame.astype(np.float32), [])
    with pytest.raises(ValueError, match="expected a CUDA tensor or a numpy array, got a tensor on cpu"):
        pose.infer(torch.zeros(10, 10, 3, dtype=torch.uint8), [[0, 0, 5, 5]])  # host memory, not the device's
    with pytest.raises(ValueError, match=r"frame: expected \(H, W, 3\) uint8"):
        pose.infer(standin.to_device(np.zeros((10, 10), np.uint8)), [[0, 0, 5, 5]])


def test_without_cuda_kernels_the_cpu_path_runs_the_cuda_engine(sample_model, photos, caplog):
    with use_runtime(CudaStandIn(kernels=False)), caplog.at_level(logging.WARNING):
        pose = VitPoseTRT(PyTorchEngine(sample_model, "cuda", "fp32"))
        frame, boxes = photos[0]
        got = pose.infer(frame, boxes)
    assert pose.impl == "cpp" and "built without CUDA kernels" in caplog.text
    np.testing.assert_array_equal(got, cpu_pose(sample_model).infer(frame, boxes))


# --------------------------------------------------------------------------------------------
# what the engine hands the decode kernel


def test_the_model_alone_returns_channels_last_heatmaps(tiny_model):
    """Why PyTorchEngine makes its output contiguous: the decoder keeps the feature map's strides."""
    with torch.inference_mode():
        heatmaps = tiny_model(torch.zeros(2, 3, 256, 192))
    assert not heatmaps.is_contiguous() and heatmaps.stride()[1] == 1


def test_an_engine_returning_strided_heatmaps_is_refused(standin, tiny_model):
    class Strided(PyTorchEngine):
        def _run_cuda(self, crops, stream):
            return super()._run_cuda(crops, stream).transpose(2, 3).contiguous().transpose(2, 3)

    pose = VitPoseTRT(Strided(tiny_model, "cuda"))
    with pytest.raises(RuntimeError, match="pytorch engine returned heatmaps .* expected a C-contiguous"):
        pose.infer(np.zeros((64, 64, 3), np.uint8), [[0, 0, 30, 60]])


# --------------------------------------------------------------------------------------------
# ordering: what a GPU would need


def test_kernels_and_the_engine_run_on_the_compute_stream(standin, tiny_model, photos):
    pose = gpu_pose(tiny_model, flip_test=True, max_batch=4)
    hook = watch_model(standin, pose.engine.model)
    start = len(standin.ops)
    try:
        frame, boxes = photos[0]
        pose.infer(frame, boxes)
    finally:
        hook.remove()
    ops = standin.ops[start:]
    compute, upload = pose.stream, pose.path.upload
    by_name = {name: {op.stream for op in ops if op.name == name} for name in ("warp", "model", "decode")}
    assert by_name == {"warp": {compute}, "model": {compute}, "decode": {compute}}
    assert sum(op.name == "model" for op in ops) == 2  # 4 boxes + 4 mirrors in batches of 4 crops
    copies = [op for op in ops if op.name == "copy"]
    assert {op.stream for op in copies[:-1]} == {upload} and copies[-1].stream is compute  # up, then down
    first_warp, last_decode = standin.ops_named("warp")[0], standin.ops_named("decode")[-1]
    assert all(happens_before(up, first_warp) for up in copies[:-1])
    assert happens_before(last_decode, copies[-1])


@pytest.mark.parametrize("call", ["infer", "infer_async", "infer_many"])
def test_one_host_synchronization_per_call_and_no_pageable_copies(standin, tiny_model, photos, call):
    pose = gpu_pose(tiny_model)
    (f0, b0), (f1, b1) = photos
    device_frame = standin.to_device(f1)
    run = {"infer": lambda: [pose.infer(f0, b0), pose.infer(device_frame, b1)],
           "infer_async": lambda: [h.result() for h in [pose.infer_async(f0, b0), pose.infer_async(device_frame, b1)]],
           "infer_many": lambda: pose.infer_many([f0, f1[::2], device_frame], [b0, b1 / 2, b1])}[call]
    run()  # warm-up: buffers grow
    before = len(standin.syncs)
    run()
    syncs = standin.syncs[before:]
    assert syncs == ["event"] * (1 if call == "infer_many" else 2), syncs


def test_a_device_frame_may_be_overwritten_once_copied_not_after_the_engine(standin, tiny_model, photos):
    """The caller's stream waits for the frame's copy only: not behind this call's or the previous
    call's engine and decode. Overwriting the frame right away is then no race (the fixture fails on one)."""
    pose = gpu_pose(tiny_model)
    hook = watch_model(standin, pose.engine.model)
    (f0, b0), (f1, b1) = photos
    want = pose.infer(f1, b1)
    d0, d1 = standin.to_device(f0), standin.to_device(f1)
    start = len(standin.ops)
    first = pose.infer_async(d0, b0)
    second = pose.infer_async(d1, b1)
    overwrite = standin.enqueue("caller overwrites its frame", writes=[d1])  # on the caller's stream
    d1.zero_()
    hook.remove()
    engines = [op for op in standin.ops[start:] if op.name == "model"]
    assert len(engines) == 2 and not any(happens_before(engine, overwrite) for engine in engines)
    frame_copy = [op for op in standin.ops_named("copy") if op.reads and op.reads[0][0] == d1.data_ptr()]
    assert len(frame_copy) == 1 and happens_before(frame_copy[0], overwrite)
    first.result()
    np.testing.assert_array_equal(second.result(), want)


def test_the_race_check_catches_an_unordered_overwrite(tiny_model, photos):
    """The fixture's race check can fail: without the caller's wait, the overwrite races the copy."""
    rt = CudaStandIn()
    with use_runtime(rt):
        pose = gpu_pose(tiny_model)
        frame, boxes = photos[0]
        dev = rt.to_device(frame)
        pending = pose.infer_async(dev, boxes)
        with rt.use(rt.stream(DEVICE)):  # a stream that never waited for the call
            rt.enqueue("overwrite", writes=[dev])
        pending.result()
        assert any("overwrite" in race and "unordered" in race for race in rt.races)
        # the host's own accesses count too: rewriting pinned staging that a queued copy still reads
        staging, target = rt.empty_pinned((64,), torch.uint8), rt.empty((64,), torch.uint8, DEVICE)
        with rt.use(pose.path.upload):
            rt.copy(target, staging)
        rt.host_uses(staging, write=True)
        assert rt.races[-1].startswith("host writes on <stream host> writes memory that copy on")
        rt.host_waits("event", pose.path.upload.clock)  # after a synchronization it is ordered
        count = len(rt.races)
        rt.host_uses(staging, write=True)
        assert len(rt.races) == count


def test_a_foreign_frame_waits_for_its_producer_and_is_read_once(standin, tiny_model, photos):
    pose = gpu_pose(tiny_model)
    frame, boxes = photos[0]
    want = pose.infer(frame, boxes)
    producer = standin.stream(DEVICE)
    with standin.use(producer):
        dev = standin.to_device(np.zeros_like(frame))
        standin.enqueue("producer writes the frame", writes=[dev])
        dev.copy_(torch.from_numpy(frame))
    foreign = ForeignFrame(dev, producer.cuda_stream)
    pending = pose.infer_async(foreign, boxes)
    with standin.use(producer):
        reuse = standin.enqueue("producer writes the next frame", writes=[dev])
    frame_copy = next(op for op in standin.ops_named("copy") if op.reads and op.reads[0][0] == dev.data_ptr())
    assert happens_before(standin.ops_named("producer writes the frame")[0], frame_copy)
    assert happens_before(frame_copy, reuse)
    np.testing.assert_array_equal(pending.result(), want)
    assert foreign.reads == 1


def test_per_thread_stream_and_read_only_foreign_frames(standin, tiny_model, photos):
    """Interface stream 2 (the calling thread's per-thread default stream, as CUDA resolves it) is
    waited for on the device, without a host synchronization; a read-only interface is accepted
    (only read; PyTorch itself refuses the flag); a 'stream' of 0 is refused."""
    pose = gpu_pose(tiny_model)
    frame, boxes = photos[0]
    want = pose.infer(frame, boxes)
    per_thread = standin.external_stream(2, DEVICE)
    with standin.use(per_thread):
        dev = standin.to_device(frame)
        wrote = standin.enqueue("producer writes the frame", writes=[dev])
    foreign = ForeignFrame(dev, 2, read_only=True)
    before = len(standin.syncs)
    np.testing.assert_array_equal(pose.infer(foreign, boxes), want)
    assert standin.syncs[before:] == ["event"]
    frame_copy = next(op for op in standin.ops if op.name == "copy" and op.reads and op.reads[0][0] == dev.data_ptr())
    assert happens_before(wrote, frame_copy)
    with pytest.raises(TypeError, match="read only flag"):  # what the wrapper spares the caller
        standin.as_tensor(foreign)
    with pytest.raises(ValueError, match="frame: __cuda_array_interface__ 'stream' is 0"):
        pose.infer(ForeignFrame(standin.to_device(frame), 0), boxes)


def test_first_call_in_inference_mode_then_outside(standin, tiny_model, photos):
    """Buffers made inside the caller's torch.inference_mode() still serve calls made outside it."""
    pose = gpu_pose(tiny_model)
    frame, boxes = photos[0]
    with torch.inference_mode():
        first = pose.infer(frame, boxes)
    np.testing.assert_array_equal(pose.infer_many([frame, frame], [boxes, boxes[:2]])[0], first)


def test_preprocess_and_postprocess_on_the_device_wait_for_producers(standin, sample_model, photos):
    frame, boxes = photos[0]
    producer = standin.stream(DEVICE)
    with standin.use(producer):
        dev = standin.to_device(np.zeros_like(frame))
        wrote = standin.enqueue("producer writes the frame", writes=[dev])
        dev.copy_(torch.from_numpy(frame))
    crops, _ = preprocess(ForeignFrame(dev, producer.cuda_stream), boxes, "udp", impl="cuda")
    warp = standin.ops_named("warp")[-1]
    assert happens_before(wrote, warp)
    want_crops, transforms = preprocess(frame, boxes, "udp", impl="cpp")
    np.testing.assert_array_equal(crops.numpy(), want_crops)

    with torch.inference_mode():
        heatmaps = sample_model(torch.from_numpy(want_crops)).contiguous()
    with standin.use(producer):
        hm = standin.to_device(heatmaps)
        wrote = standin.enqueue("producer writes the heatmaps", writes=[hm])
    got = postprocess(ForeignFrame(hm, producer.cuda_stream), transforms, "udp", impl="cuda")
    assert happens_before(wrote, standin.ops_named("decode")[-1])
    np.testing.assert_array_equal(got, postprocess(heatmaps.numpy(), transforms, "udp", impl="cpp"))
    # host arrays go up too, and the flip merge runs on the "device" as in the C++ kernel
    hm_np = heatmaps.numpy()
    np.testing.assert_array_equal(postprocess(hm_np, transforms, "classic", flipped=hm_np[:, :, :, ::-1], impl="cuda"),
                                  postprocess(hm_np, transforms, "classic", flipped=hm_np[:, :, :, ::-1], impl="cpp"))
