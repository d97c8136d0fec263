"""The CUDA kernels of vitpose_trt._C: crops bit-identical to the C++ CPU kernel (the same per-pixel
helpers in csrc/warp.h, integer interpolation, IEEE divisions), hence to the numpy/OpenCV reference
with OpenCV 4.x; keypoints against the CPU kernel and the reference (see test_kernels_cpu.py). GPU tests carry `requires_cuda`; the build and argument checks run
anywhere."""

from __future__ import annotations

import ctypes
import os
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import synthetic_heatmaps
from tests.test_kernels_cpu import (
    INPUT,
    ODD,
    OPENCV_4,
    TOL_LEVELS_FP16,
    assert_crops_exact,
    assert_keypoints_match,
    crop_error,
    frame_views,
    identity_transforms,
    random_transforms,
)
from vitpose_trt.datasets import flip_index
from vitpose_trt.crop import preprocess
from vitpose_trt.decode import postprocess
from vitpose_trt.geometry import boxes_to_transforms, check_boxes, inverse_warp_matrices

try:
    from numpy.lib.array_utils import byte_bounds  # numpy >= 2
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy import byte_bounds

_C = pytest.importorskip("vitpose_trt._C", reason="vitpose_trt._C is not built (pip install -e .)")

requires_cuda = pytest.mark.requires_cuda


# ---- the build (no GPU needed) ------------------------------------------------------------------

def fatbin_entries(so_path: Path) -> list[list[tuple[str, int]]]:
    """[(kind, sm)] per embedded CUDA fatbinary (one per compiled .cu), read from the fatbin headers
    (magic 0xBA55ED50; entries: kind 1 = PTX, 2 = SASS/ELF, arch at byte 28)."""
    data = so_path.read_bytes()
    blobs, pos = [], 0
    while (i := data.find(struct.pack("<I", 0xBA55ED50), pos)) >= 0:
        header_size, body_size = struct.unpack_from("<HQ", data, i + 6)
        off, end, entries = i + header_size, i + header_size + body_size, []
        while off < end:
            kind, _, entry_header, entry_size = struct.unpack_from("<HHIQ", data, off)
            arch = struct.unpack_from("<I", data, off + 28)[0]
            entries.append(({1: "ptx", 2: "sass"}.get(kind, str(kind)), arch))
            off += entry_header + entry_size
        blobs.append(entries)
        pos = i + 4
    return blobs


@pytest.mark.skipif(shutil.which("nvcc") is None or os.environ.get("VITPOSE_TRT_CUDA") == "0",
                    reason="no nvcc on PATH (or VITPOSE_TRT_CUDA=0): a CPU-only build is expected")
def test_every_cu_file_compiled_for_every_architecture():
    assert _C.built_with_cuda, "nvcc is on PATH but vitpose_trt._C was built without CUDA: rebuild (pip install -e .)"
    expected = set()
    for arch in _C.cuda_architectures.split(","):
        num, _, kind = arch.partition("-")
        if not num.isdigit():
            pytest.skip(f"CMAKE_CUDA_ARCHITECTURES={_C.cuda_architectures} is not an explicit list")
        if kind in ("", "real"):
            expected.add(("sass", int(num)))
        if kind in ("", "virtual"):
            expected.add(("ptx", int(num)))
    blobs = fatbin_entries(Path(_C.__file__))
    assert len(blobs) == 2, f"expected one fatbinary per .cu file (warp.cu, decode.cu), found {len(blobs)}"
    for entries in blobs:
        assert set(entries) == expected


def test_module_imports_and_reports_cuda_without_raising():
    assert isinstance(_C.cuda_available(), bool)
    if not _C.built_with_cuda:
        assert _C.cuda_available() is False and _C.cuda_runtime_version is None


# ---- argument checks (no GPU needed: they run before any CUDA call) ----------------------------

class FakeCudaArray:
    """Just the interface dict: enough for the checks that precede any CUDA call."""

    def __init__(self, shape, typestr, ptr=0x1000, strides=None, readonly=False):
        self.__cuda_array_interface__ = {"shape": tuple(shape), "typestr": typestr, "data": (ptr, readonly),
                                         "strides": strides, "version": 3}


def test_cuda_entry_points_reject_host_arrays():
    frame, inv, out = np.zeros((8, 8, 3), np.uint8), np.zeros((1, 2, 3)), np.zeros((1, 3, 4, 4), np.float32)
    with pytest.raises(TypeError,
                       match=r"frame: expected a CUDA array \(an object with __cuda_array_interface__.*numpy.ndarray"):
        _C.warp_cuda(frame, inv, out, False, 0)
    hm, t, kp = np.zeros((1, 2, 4, 4), np.float32), np.zeros((1, 4), np.float32), np.zeros((1, 2, 3), np.float32)
    with pytest.raises(TypeError, match=r"heatmaps: expected a CUDA array.*got numpy.ndarray"):
        _C.decode_cuda(hm, t, kp, "udp", None, None, 0)
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match=r"frame: expected a CUDA array.*got torch.Tensor"):
        _C.warp_cuda(torch.from_numpy(frame), torch.from_numpy(inv), torch.from_numpy(out), False, 0)
    with pytest.raises(TypeError, match=r"inv_matrices: expected a CUDA array"):
        _C.warp_cuda(FakeCudaArray((8, 8, 3), "|u1"), inv, out, False, 0)


def test_cuda_entry_points_require_the_stream():
    """No stream=0 default: the caller names its stream (0 only on purpose, the legacy default)."""
    frame, inv, out = FakeCudaArray((8, 8, 3), "|u1"), FakeCudaArray((1, 2, 3), "<f8"), FakeCudaArray((1, 3, 4, 4), "<f4")
    with pytest.raises(TypeError, match=r"incompatible function arguments"):
        _C.warp_cuda(frame, inv, out, False)
    with pytest.raises(TypeError, match=r"incompatible function arguments"):
        _C.warp_cuda(frame, inv, out)
    hm, t, kp = FakeCudaArray((1, 2, 4, 4), "<f4"), FakeCudaArray((1, 4), "<f4"), FakeCudaArray((1, 2, 3), "<f4")
    with pytest.raises(TypeError, match=r"incompatible function arguments"):
        _C.decode_cuda(hm, t, kp, "udp")
    with pytest.raises(TypeError, match=r"incompatible function arguments"):
        _C.decode_cuda(hm, t, kp, "udp", None, None)


def test_cuda_argument_errors_name_the_argument():
    frame, inv = FakeCudaArray((8, 8, 3), "|u1"), FakeCudaArray((2, 2, 3), "<f8")
    with pytest.raises(ValueError,
                       match=r"out: expected shape \(4, 3, 4, 4\) \(2N crops with flip=True\), got \(2, 3, 4, 4\)"):
        _C.warp_cuda(frame, inv, FakeCudaArray((2, 3, 4, 4), "<f4"), True, 0)
    with pytest.raises(TypeError, match=r"frame: expected dtype uint8, got <f4"):
        _C.warp_cuda(FakeCudaArray((8, 8, 3), "<f4"), inv, FakeCudaArray((2, 3, 4, 4), "<f4"), False, 0)
    with pytest.raises(ValueError, match=r"out: must be C-contiguous"):
        _C.warp_cuda(frame, inv, FakeCudaArray((2, 3, 4, 4), "<f4", strides=(192, 64, 4, 16)), False, 0)
    with pytest.raises(ValueError, match=r"out: array is read-only"):
        _C.warp_cuda(frame, inv, FakeCudaArray((2, 3, 4, 4), "<f4", readonly=True), False, 0)
    hm, t, kp = FakeCudaArray((2, 3, 4, 4), "<f2"), FakeCudaArray((2, 4), "<f4"), FakeCudaArray((2, 3, 3), "<f4")
    # the decode index guard: h * w up to 2^31 - 33, so every index (and the kernel's lane index,
    # which runs 31 past the map) fits int32
    for shape in ((1, 1, 46341, 46341), (1, 1, 2, 1073741808)):
        with pytest.raises(ValueError, match=r"heatmaps: too large"):
            _C.decode_cuda(FakeCudaArray(shape, "<f4"), FakeCudaArray((1, 4), "<f4"),
                           FakeCudaArray((1, 1, 3), "<f4"), "udp", None, None, 0)
    with pytest.raises(ValueError, match=r"mode: expected 'udp' or 'classic'"):
        _C.decode_cuda(hm, t, kp, "argmax", None, None, 0)
    with pytest.raises(TypeError, match=r"flipped: expected dtype float16 like heatmaps, got <f4"):
        _C.decode_cuda(hm, t, kp, "udp", FakeCudaArray((2, 3, 4, 4), "<f4"), FakeCudaArray((3,), "<i4"), 0)
    with pytest.raises(TypeError, match=r"flip_index: expected dtype int32, got <i8"):
        _C.decode_cuda(hm, t, kp, "udp", FakeCudaArray((2, 3, 4, 4), "<f2"), FakeCudaArray((3,), "<i8"), 0)


def test_cuda_entry_points_read_the_producer_stream_of_the_interface():
    """Interface v3 'stream': read and checked with the other arguments (before any CUDA call);
    a valid one is waited for on the device (test_cuda_kernels_wait_for_a_producer_stream)."""
    inv, out = FakeCudaArray((1, 2, 3), "<f8"), FakeCudaArray((1, 3, 4, 4), "<f4")

    def frame(stream):
        f = FakeCudaArray((8, 8, 3), "|u1")
        f.__cuda_array_interface__["stream"] = stream
        return f

    with pytest.raises(ValueError, match=r"frame: __cuda_array_interface__ 'stream' is 0, which the protocol disallows"):
        _C.warp_cuda(frame(0), inv, out, False, 0)
    with pytest.raises(ValueError, match=r"frame: __cuda_array_interface__ 'stream' must be a stream handle, got -5"):
        _C.warp_cuda(frame(-5), inv, out, False, 0)
    with pytest.raises(TypeError, match=r"frame: __cuda_array_interface__ 'stream' must be None or an int, got str"):
        _C.warp_cuda(frame("7"), inv, out, False, 0)
    hm = FakeCudaArray((1, 2, 4, 4), "<f4")
    hm.__cuda_array_interface__["stream"] = 0
    with pytest.raises(ValueError, match=r"heatmaps: __cuda_array_interface__ 'stream' is 0"):
        _C.decode_cuda(hm, FakeCudaArray((1, 4), "<f4"), FakeCudaArray((1, 2, 3), "<f4"), "udp", None, None, 0)


@pytest.mark.skipif(_C.built_with_cuda, reason="checks the CPU-only build")
def test_cpu_only_build_says_so():
    frame, inv = FakeCudaArray((8, 8, 3), "|u1"), FakeCudaArray((1, 2, 3), "<f8")
    out = FakeCudaArray((1, 3, 4, 4), "<f4")
    with pytest.raises(RuntimeError, match=r"warp_cuda: vitpose_trt._C was built without CUDA"):
        _C.warp_cuda(frame, inv, out, False, 0)
    hm, t, kp = FakeCudaArray((1, 2, 4, 4), "<f4"), FakeCudaArray((1, 4), "<f4"), FakeCudaArray((1, 2, 3), "<f4")
    with pytest.raises(RuntimeError, match=r"decode_cuda: vitpose_trt._C was built without CUDA"):
        _C.decode_cuda(hm, t, kp, "classic", None, None, 0)


# ---- warp on the GPU ----------------------------------------------------------------------------

def cpp_crops(frame, boxes, mode, flip):
    return preprocess(frame, boxes, mode, impl="cpp", flip=flip)[0]


@requires_cuda
@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("mode", ["udp", "classic"])
def test_cuda_crops_on_all_real_boxes(coco_sample, mode, flip):
    n_boxes = 0
    for _, frame, boxes in coco_sample:
        crops, transforms = preprocess(frame, boxes, mode, impl="cuda", flip=flip)
        assert crops.is_cuda and crops.dtype.is_floating_point
        got = crops.cpu().numpy()
        # the same per-pixel helpers as the CPU kernel: the same bits
        assert_crops_exact(got, cpp_crops(frame, boxes, mode, flip), "cuda vs cpp")
        if OPENCV_4:
            assert_crops_exact(got, preprocess(frame, boxes, mode, impl="numpy", flip=flip)[0], "cuda vs numpy")
        n_boxes += len(boxes)
    assert n_boxes == 118


@requires_cuda
@pytest.mark.parametrize("family", ["yolo", "yolox", "rtmdet"])
def test_cuda_letterbox_equals_the_cpu_kernel(coco_sample, family):
    """A detector's letterbox (normalize=, letterbox=) on the GPU: the CPU kernel's bits, every photo,
    a size that needs resizing; float16 output rounds the float32 values."""
    import torch

    from vitpose_trt import kernels
    from vitpose_trt.detect import letterbox

    for _, frame, _ in coco_sample:
        want, geometry = letterbox(frame, (384, 640), family, impl="cpp")
        inv = torch.from_numpy(geometry.inverse_matrix()).cuda()
        for dtype in (torch.float32, torch.float16):
            out = torch.empty((1, 3, 384, 640), dtype=dtype, device="cuda")
            kernels.warp(torch.from_numpy(frame).cuda(), inv, out, normalize=family, letterbox=geometry.region())
            got = out.cpu().numpy()
            if dtype == torch.float32:
                np.testing.assert_array_equal(got, want)
            else:
                np.testing.assert_array_equal(got, want.astype(np.float16))


@requires_cuda
@pytest.mark.parametrize("case", ODD, ids=[c[0] for c in ODD])
def test_cuda_crops_odd_inputs(case):
    import torch

    _, frame, boxes = case
    # a padded frame goes up as a strided view: the kernel reads its row pitch
    dev = torch.from_numpy(np.ascontiguousarray(frame)).cuda()
    if not frame.flags.c_contiguous:
        wide = torch.zeros((frame.shape[0], frame.shape[1] + 77, 3), dtype=torch.uint8, device="cuda")
        wide[:, 5:5 + frame.shape[1]] = dev
        dev = wide[:, 5:5 + frame.shape[1]]
        assert not dev.is_contiguous()
    for mode in ("udp", "classic"):
        got = preprocess(dev, boxes, mode, impl="cuda", flip=True)[0].cpu().numpy()
        assert_crops_exact(got, cpp_crops(frame, boxes, mode, True), "cuda vs cpp")


@requires_cuda
@pytest.mark.parametrize("n", [0, 1, 7, 64])
def test_cuda_crops_batch_sizes_fp16_and_stream(coco_sample, n):
    import torch

    _, frame, boxes = coco_sample[0]
    picked = boxes[np.random.default_rng(n).integers(0, len(boxes), n)] if n else np.zeros((0, 4))
    transforms = boxes_to_transforms(check_boxes(picked), INPUT)
    inv = torch.from_numpy(inverse_warp_matrices(transforms, "udp", INPUT)).cuda()
    dev = torch.from_numpy(frame).cuda()
    out32 = torch.empty((2 * n, 3, *INPUT), dtype=torch.float32, device="cuda")
    out16 = torch.empty((2 * n, 3, *INPUT), dtype=torch.float16, device="cuda")
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        _C.warp_cuda(dev, inv, out32, True, stream.cuda_stream)
        _C.warp_cuda(dev, inv, out16, True, stream.cuda_stream)
    stream.synchronize()
    a32, a16 = out32.cpu().numpy(), out16.cpu().numpy()
    # the float16 kernel rounds the same float32 value (IEEE operations only) to nearest-even half
    np.testing.assert_array_equal(a16.view(np.uint16), a32.astype(np.float16).view(np.uint16))
    if n:
        assert_crops_exact(a32, cpp_crops(frame, picked, "udp", True), "cuda vs cpp")
        assert crop_error(a16, frame, picked, "udp", True) <= TOL_LEVELS_FP16


def host_region(view: np.ndarray) -> tuple[np.ndarray, int]:
    """The bytes a view spans (as a flat uint8 array) and the view's offset into them."""
    lo, hi = byte_bounds(view)
    region = np.ctypeslib.as_array((ctypes.c_uint8 * (hi - lo)).from_address(lo))
    return region, view.__array_interface__["data"][0] - lo


class CudaView:
    """The same strides (negative and zero included) over a device copy of the view's bytes, as
    CuPy would expose them through __cuda_array_interface__."""

    def __init__(self, buffer, offset, view):
        self.buffer = buffer  # keeps the device memory alive
        self.__cuda_array_interface__ = {"shape": view.shape, "typestr": "|u1", "strides": view.strides,
                                         "data": (buffer.data_ptr() + offset, True), "version": 3}


def device_view(view: np.ndarray):
    import torch

    region, offset = host_region(view)
    buffer = torch.from_numpy(region.copy()).cuda()
    return buffer, CudaView(buffer, offset, view)


class HostArray:
    """What CudaView does, on the host: numpy reads the same interface dict."""

    def __init__(self, region, offset, view):
        self.region = region
        self.__array_interface__ = {"shape": view.shape, "typestr": "|u1", "strides": view.strides,
                                    "data": (region.__array_interface__["data"][0] + offset, True), "version": 3}


def test_host_region_rebuilds_every_view(coco_sample):
    """The device views are only as right as this offset arithmetic: checked on the host."""
    _, frame, _ = coco_sample[2]
    for name, view in frame_views(frame):
        region, offset = host_region(view)
        copy = region.copy()  # what device_view uploads
        np.testing.assert_array_equal(np.asarray(HostArray(copy, offset, view)), view, err_msg=name)


@requires_cuda
@pytest.mark.parametrize("coords", ["fixed", "float"])
def test_cuda_crops_of_strided_frames(coco_sample, coords):
    """Issue 10 on the GPU: the kernel reads any strides (CuPy may even pass negative ones); each
    view crops like its contiguous copy and like the CPU kernel on the same view."""
    import torch

    _, frame, boxes = coco_sample[2]
    inv_np = inverse_warp_matrices(boxes_to_transforms(check_boxes(boxes), INPUT), "udp", INPUT)
    inv = torch.from_numpy(inv_np).cuda()
    stream = torch.cuda.current_stream().cuda_stream
    for name, view in frame_views(frame):
        ref = np.empty((len(boxes), 3, *INPUT), np.float32)
        _C.warp_cpu(view, inv_np, ref, coords=coords)
        keep, dev = device_view(view)
        out = torch.empty((len(boxes), 3, *INPUT), dtype=torch.float32, device="cuda")
        _C.warp_cuda(dev, inv, out, False, stream, coords=coords)
        assert_crops_exact(out.cpu().numpy(), ref, name)


@requires_cuda
def test_cuda_rejects_host_memory_behind_the_interface():
    import torch

    host = torch.zeros((8, 8, 3), dtype=torch.uint8)

    class HostView:
        __cuda_array_interface__ = {"shape": (8, 8, 3), "typestr": "|u1", "data": (host.data_ptr(), False),
                                    "strides": None, "version": 3}

    inv = torch.zeros((1, 2, 3), dtype=torch.float64, device="cuda")
    out = torch.empty((1, 3, 4, 4), device="cuda")
    with pytest.raises(ValueError, match=r"frame: expected CUDA device memory, got a host pointer"):
        _C.warp_cuda(HostView(), inv, out, False, torch.cuda.current_stream().cuda_stream)


# ---- decode on the GPU --------------------------------------------------------------------------

def decode_cuda_and_cpp(hm, transforms, mode, flipped=None, flip_pairs=None):
    got = postprocess(hm, transforms, mode, flipped=flipped, flip_pairs=flip_pairs, impl="cuda")
    cpp = postprocess(hm, transforms, mode, flipped=flipped, flip_pairs=flip_pairs, impl="cpp")
    ref = postprocess(hm, transforms, mode, flipped=flipped, flip_pairs=flip_pairs, impl="numpy")
    return got, cpp, ref


@requires_cuda
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("mode", ["udp", "classic"])
def test_cuda_decode_on_realistic_heatmaps(mode, flip, dtype):
    n = 64
    hm = synthetic_heatmaps(n, seed=1).astype(dtype)
    flipped = None
    if flip:
        flipped = (0.5 * synthetic_heatmaps(n, seed=2) + 0.5 * hm[:, flip_index(17), :, ::-1]).astype(dtype)
    got, cpp, ref = decode_cuda_and_cpp(hm, random_transforms(n), mode, flipped)
    assert_keypoints_match(got, ref)
    assert_keypoints_match(got, cpp, tol_px=1e-4)


@requires_cuda
@pytest.mark.parametrize("mode", ["udp", "classic"])
def test_cuda_decode_edge_cases(mode):
    hm = synthetic_heatmaps(2, k=10, seed=3)
    hm[0, 0] = 0.5
    hm[0, 1] = 0.0
    hm[0, 2] = -0.25
    hm[0, 3] = np.float32(-1.0) - np.abs(hm[0, 3])
    hm[0, 4] = 0.0
    hm[0, 4, [20, 10, 30], [30, 40, 5]] = 0.75
    hm[0, 5, 5, 7] = np.nan
    hm[0, 6, [3, 50], [4, 2]] = np.nan
    hm[0, 7, 10, 10] = np.inf
    hm[0, 8] = np.float32(1e-4)
    hm[0, 9, 33, 22] = 60.0
    spots = [(0, 0), (0, 47), (63, 0), (63, 47), (0, 20), (30, 47), (1, 1), (62, 46), (2, 2), (5, 5)]
    for j, (y, x) in enumerate(spots):
        hm[1, j] = 0.0
        hm[1, j, y, x] = 1.0
    got, cpp, ref = decode_cuda_and_cpp(hm, random_transforms(2), mode)
    assert_keypoints_match(got, ref)
    assert_keypoints_match(got, cpp, tol_px=1e-4)


@requires_cuda
@pytest.mark.parametrize("shape", [(2, 2), (3, 5), (64, 47), (96, 72)])
def test_cuda_decode_map_sizes_and_custom_flip(shape):
    hm = synthetic_heatmaps(3, k=5, h=shape[0], w=shape[1], seed=4, noise=0.0)
    fl = synthetic_heatmaps(3, k=5, h=shape[0], w=shape[1], seed=5, noise=0.0)
    for mode in ("udp", "classic"):
        got, cpp, ref = decode_cuda_and_cpp(hm, identity_transforms(3, *shape, mode), mode, fl, [(0, 3), (1, 2)])
        assert_keypoints_match(got, cpp, tol_px=1e-4)
        assert_keypoints_match(got, ref, tol_px=1e-3 if shape[1] % 8 == 0 else 5e-3)


@requires_cuda
@pytest.mark.parametrize("n", [0, 1, 7, 64])
def test_cuda_decode_batch_sizes(n):
    hm = synthetic_heatmaps(n, seed=6)
    for mode in ("udp", "classic"):
        got, cpp, ref = decode_cuda_and_cpp(hm, random_transforms(n), mode)
        assert got.shape == (n, 17, 3)
        assert_keypoints_match(got, ref)


@requires_cuda
def test_cuda_decode_noise_heatmaps_match_the_cpu_kernel():
    """Pure noise: the GPU follows the CPU kernel's arithmetic, so even ill-posed DARK steps agree
    (up to the last bit of the double-precision log)."""
    rng = np.random.default_rng(5)
    hm = (rng.random((32, 17, 64, 48)) ** 6).astype(np.float32)
    for mode in ("udp", "classic"):
        got, cpp, _ = decode_cuda_and_cpp(hm, identity_transforms(32, 64, 48, mode), mode)
        np.testing.assert_array_equal(got[..., 2], cpp[..., 2])
        close = np.abs(got[..., :2] - cpp[..., :2]).max(-1) <= 1e-4
        assert close.mean() > 0.99


@requires_cuda
def test_cuda_decode_out_of_range_flip_index_gives_nan_not_a_crash():
    import torch

    hm = torch.rand((2, 3, 8, 6), device="cuda")
    t = torch.zeros((2, 4), device="cuda")
    out = torch.zeros((2, 3, 3), device="cuda")
    fi = torch.tensor([0, 7, 1], dtype=torch.int32, device="cuda")
    _C.decode_cuda(hm, t, out, "udp", hm.clone(), fi, torch.cuda.current_stream().cuda_stream)
    res = out.cpu().numpy()
    assert np.isnan(res[:, 1]).all() and np.isfinite(res[:, [0, 2]]).all()


@pytest.mark.requires_cuda
def test_cuda_kernels_wait_for_a_producer_stream(coco_sample):
    """A raw device frame (interface v3) still being written on its producer's stream: the kernel,
    enqueued on another stream, waits for the producer (the binding reads the 'stream' key)."""
    import torch

    _, frame, boxes = coco_sample[0]
    transforms = boxes_to_transforms(check_boxes(boxes[:4]), (256, 192))
    inv_np = inverse_warp_matrices(transforms, "udp", (256, 192))
    want = np.empty((4, 3, 256, 192), np.float32)
    _C.warp_cpu(frame, inv_np, want)
    producer, consumer = torch.cuda.Stream(), torch.cuda.Stream()
    host = torch.from_numpy(frame).pin_memory()
    inv = torch.from_numpy(inv_np).cuda()
    for _ in range(3):
        with torch.cuda.stream(producer):
            dev = torch.zeros(frame.shape, dtype=torch.uint8, device="cuda")
            torch.cuda._sleep(50_000_000)  # keep the producer busy: an unsynchronized read sees zeros
            dev.copy_(host, non_blocking=True)
        raw = CudaView(dev, 0, frame)
        raw.__cuda_array_interface__["stream"] = producer.cuda_stream
        out = torch.empty((4, 3, 256, 192), dtype=torch.float32, device="cuda")
        with torch.cuda.stream(consumer):
            _C.warp_cuda(raw, inv, out, False, consumer.cuda_stream)
        consumer.synchronize()
        np.testing.assert_array_equal(out.cpu().numpy(), want)
