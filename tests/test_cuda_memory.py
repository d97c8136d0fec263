"""CUDA memory for the GPU path (vitpose_trt/cuda_memory.py), on the CPU stand-in for CUDA
(tests/standins/cuda.py): foreign device arrays through `__cuda_array_interface__` and their producer
streams, frames made usable on the current stream, and buffers that only grow."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.standins.cuda import DEVICE, ForeignFrame, happens_before
from vitpose_trt.cuda_memory import GrowBuffer, as_cuda_frame, device_array, producer_stream
from vitpose_trt.geometry import check_frame

# --------------------------------------------------------------------------------------------
# the interface's "stream"


def test_producer_stream_none_means_no_wait(standin):
    assert producer_stream(None, DEVICE) is None


def test_producer_stream_legacy_per_thread_and_handles(standin):
    assert producer_stream(1, DEVICE) is standin.default  # the legacy default stream
    per_thread = producer_stream(2, DEVICE)
    assert per_thread.cuda_stream == 2 and per_thread is not standin.default
    made = standin.stream(DEVICE)
    assert producer_stream(made.cuda_stream, DEVICE) is made  # a cudaStream_t handle: that stream


@pytest.mark.parametrize(("value", "match"), [
    (0, "is 0, which the protocol disallows"),
    (-3, "must be a stream handle, got -3"),
    (True, "must be None or an int, got True"),
    ("7", "must be None or an int, got '7'"),
    (7.0, "must be None or an int, got 7.0"),
])
def test_producer_stream_refuses_what_the_protocol_does_not_allow(standin, value, match):
    with pytest.raises(ValueError, match=match):
        producer_stream(value, DEVICE)


# --------------------------------------------------------------------------------------------
# device arrays


def test_a_device_tensor_is_taken_as_it_is(standin):
    dev = standin.to_device(np.arange(12, dtype=np.float32).reshape(3, 4))
    tensor, producer = device_array(dev)
    assert tensor is dev and producer is None


def test_a_foreign_array_is_wrapped_not_copied_and_read_once(standin):
    dev = standin.to_device(np.arange(24, dtype=np.float32).reshape(2, 3, 4))
    made = standin.stream(DEVICE)
    foreign = ForeignFrame(dev, made.cuda_stream)
    tensor, producer = device_array(foreign, DEVICE, "heatmaps")
    assert foreign.reads == 1 and producer is made
    assert tensor.data_ptr() == dev.data_ptr() and tuple(tensor.shape) == (2, 3, 4)
    dev[1, 2, 3] = -1.0  # the same memory: a write through one is seen through the other
    assert tensor[1, 2, 3].item() == -1.0


def test_a_strided_foreign_array_keeps_its_strides(standin):
    base = standin.to_device(np.arange(60, dtype=np.uint8).reshape(5, 4, 3))
    view = base[::2].transpose(0, 1)  # skipping and transposed strides
    assert not view.is_contiguous()
    tensor, _ = device_array(ForeignFrame(view, 1))
    np.testing.assert_array_equal(tensor.numpy(), view.numpy())


def test_a_read_only_foreign_array_is_accepted(standin):
    dev = standin.to_device(np.ones((2, 2, 3), np.uint8))
    foreign = ForeignFrame(dev, 1, read_only=True)
    with pytest.raises(TypeError, match="read only"):  # what the runtime alone would say
        standin.as_tensor(foreign)
    tensor, _ = device_array(foreign)
    assert tensor.data_ptr() == dev.data_ptr()


def test_device_array_errors_name_the_argument(standin):
    with pytest.raises(TypeError, match="heatmaps must be a numpy array or a CUDA array, got ndarray"):
        device_array(np.zeros((2, 2)), name="heatmaps")  # host arrays are the callers' to upload
    with pytest.raises(ValueError, match="frame: expected a CUDA tensor or a numpy array, got a tensor on cpu"):
        device_array(torch.zeros(2, 2))  # host memory that is not the runtime's device memory
    with pytest.raises(ValueError, match="heatmaps: __cuda_array_interface__ 'stream' is 0"):
        device_array(ForeignFrame(standin.to_device(np.zeros((2, 2), np.float32)), 0), name="heatmaps")
    with pytest.raises(ValueError, match="frame: is on cpu but the engine runs on cuda:1"):
        device_array(standin.to_device(np.zeros((2, 2), np.uint8)), torch.device("cuda", 1))


# --------------------------------------------------------------------------------------------
# frames


def test_a_host_frame_is_copied_up(standin):
    frame = np.random.default_rng(0).integers(0, 256, (6, 8, 3), dtype=np.uint8)[:, ::-1]  # a view
    dev = as_cuda_frame(frame)
    assert standin.owns(dev) and dev.dtype == torch.uint8 and tuple(dev.shape) == (6, 8, 3)
    np.testing.assert_array_equal(dev.numpy(), frame)
    (copy,) = standin.ops_named("copy")
    assert copy.writes[0][0] == dev.data_ptr()
    with pytest.raises(ValueError, match="uint8"):
        as_cuda_frame(frame.astype(np.float32))


def test_a_device_frame_is_used_in_place(standin):
    dev = standin.to_device(np.zeros((4, 5, 3), np.uint8))
    ops = len(standin.ops)
    assert as_cuda_frame(dev) is dev
    assert len(standin.ops) == ops  # no copy


def test_a_foreign_frame_is_waited_for_on_the_current_stream(standin):
    producer = standin.stream(DEVICE)
    with standin.use(producer):
        dev = standin.to_device(np.zeros((4, 5, 3), np.uint8))
        wrote = standin.enqueue("producer writes the frame", writes=[dev])
    syncs = len(standin.syncs)
    frame = as_cuda_frame(ForeignFrame(dev, producer.cuda_stream))
    read = standin.enqueue("consumer reads the frame", reads=[frame])  # on the current (default) stream
    assert happens_before(wrote, read)
    assert standin.syncs[syncs:] == []  # the wait is on the device, not the host


def test_without_the_producer_stream_the_read_is_unordered(standin):
    """The check above can fail: a frame whose interface names no stream is not waited for."""
    producer = standin.stream(DEVICE)
    with standin.use(producer):
        dev = standin.to_device(np.zeros((4, 5, 3), np.uint8))
        wrote = standin.enqueue("producer writes the frame", writes=[dev])
    frame = as_cuda_frame(ForeignFrame(dev, None))
    read = standin.enqueue("consumer reads the frame", reads=[frame])
    assert not happens_before(wrote, read)
    assert standin.races and "unordered" in standin.races[-1]
    standin.races.clear()  # the race was the point


@pytest.mark.parametrize(("shape", "dtype", "match"), [
    ((4, 4), torch.uint8, r"frame: expected \(H, W, 3\) uint8, got shape \(4, 4\)"),
    ((4, 4, 4), torch.uint8, r"frame: expected \(H, W, 3\) uint8, got shape \(4, 4, 4\)"),
    ((4, 4, 3), torch.float32, r"frame: expected \(H, W, 3\) uint8, got torch.float32"),
    ((0, 4, 3), torch.uint8, r"frame is empty: shape \(0, 4, 3\)"),
])
def test_device_frames_are_checked_as_frames(standin, shape, dtype, match):
    with pytest.raises(ValueError, match=match):
        check_frame(torch.zeros(shape, dtype=dtype), on_device=True)
    with pytest.raises(ValueError, match=match):
        as_cuda_frame(standin.empty(shape, dtype, DEVICE))
    assert check_frame(torch.zeros((1, 1, 3), dtype=torch.uint8), on_device=True).shape == (1, 1, 3)


# --------------------------------------------------------------------------------------------
# grow-only buffers


def test_grow_buffer_needs_a_device_or_pinned():
    with pytest.raises(ValueError, match="give a device, or pinned=True"):
        GrowBuffer(torch.float32, None)
    with pytest.raises(ValueError, match="give a device, or pinned=True"):
        GrowBuffer(torch.float32, DEVICE, pinned=True)


def test_grow_buffer_grows_at_least_twofold_and_never_shrinks(standin):
    buf = GrowBuffer(torch.float32, DEVICE)
    first = buf.get(2, 5)
    assert tuple(first.shape) == (2, 5) and first.dtype == torch.float32 and first.is_contiguous()
    assert standin.owns(first) and buf.data.numel() == 10
    block = buf.data.data_ptr()
    assert buf.get(3).data_ptr() == block and buf.data.numel() == 10  # smaller: the same block
    buf.get(12)
    assert buf.data.numel() == 20  # twice the old size, not just the 12 asked for
    buf.get(50)
    assert buf.data.numel() == 50  # the request, where it is more than twice
    small = buf.get(4, 2)
    assert buf.data.numel() == 50 and tuple(small.shape) == (4, 2) and small.data_ptr() == buf.data.data_ptr()


def test_device_growth_without_a_stream_waits_for_the_device(standin):
    buf = GrowBuffer(torch.uint8, DEVICE)
    buf.get(8)
    assert standin.syncs == []  # the first allocation frees nothing
    buf.get(4)
    assert standin.syncs == []  # no growth
    buf.get(100)
    assert standin.syncs == ["device"]  # the old block may still be read on other streams


def test_device_growth_with_a_stream_marks_the_block_instead(standin):
    compute = standin.stream(DEVICE)
    buf = GrowBuffer(torch.uint8, DEVICE)
    buf.get(8, stream=compute)
    grown = buf.get(100, stream=compute)
    assert standin.syncs == []
    with standin.use(compute):  # allocated on the default stream, used on `compute`: fine after record_stream
        standin.enqueue("kernel writes", writes=[grown])
    assert standin.races == []


def test_a_block_used_on_another_stream_without_record_stream_is_caught(standin):
    """The check above can fail: without the stream, the allocator could reuse the block too early."""
    compute = standin.stream(DEVICE)
    buf = GrowBuffer(torch.uint8, DEVICE)
    block = buf.get(8)
    with standin.use(compute):
        standin.enqueue("kernel writes", writes=[block])
    assert standin.races and "without record_stream" in standin.races[-1]
    standin.races.clear()  # the race was the point


def test_pinned_buffers_are_host_memory_and_grow_without_waiting(standin):
    buf = GrowBuffer(torch.float64, None, pinned=True)
    staging = buf.get(3, 2)
    assert not standin.owns(staging) and staging.dtype == torch.float64 and tuple(staging.shape) == (3, 2)
    buf.get(100)
    assert buf.data.numel() == 100 and standin.syncs == []
