"""Property-based fuzzing of every `vitpose_trt._C` binding (Hypothesis).

Each example draws all the arguments of one call from the whole input space: valid ones of any size
and layout (frames from 1x1 to 4K with odd widths, mirrored, transposed, broadcast, overlapping and
odd-pitch strides; boxes inside, outside, huge and degenerate; matrices with NaN/inf; heatmaps of
any K/H/W; every thread count from 0 to 64), and arguments that break one rule (dtype, rank, shape,
strides, alignment, read-only output, output sharing memory with an input, flip indices out of
range). The property:

- a call with a broken argument raises TypeError or ValueError whose message starts with that
  argument's name (`frame: ...`), and writes nothing;
- every other call returns what the numpy/OpenCV reference gives: crops bit for bit
  (cv2.warpAffine with the same inverse matrix, where OpenCV's int32 arithmetic is defined; the
  documented zeros elsewhere), keypoints with exact scores and coordinates within the decode's
  float32-log tolerance where the peak is well-posed.

Under CI's sanitizer step (`tests/sanitizers.py`) the same tests run with AddressSanitizer +
UndefinedBehaviorSanitizer, where any out-of-bounds access or undefined operation fails the run.

Example counts are Hypothesis profiles (`tests/conftest.py`): "dev" (plain `pytest`, derandomized),
"ci-fuzz" (the sanitizer step: 2,000 per binding, half for the CUDA entry points' checks and the
preprocess route), "release" (50,000; docs/RELIABILITY.md).
"""

from __future__ import annotations

import warnings

import cv2
import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis", reason="hypothesis is not installed (pip install -e '.[test]')")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from numpy.lib.stride_tricks import as_strided  # noqa: E402

from tests.conftest import synthetic_heatmaps  # noqa: E402
from tests.test_kernels_cpu import misaligned, overlapping  # noqa: E402
from vitpose_trt.geometry import (MAX_COORD, boxes_to_transforms, check_boxes, frame_to_heatmap,  # noqa: E402
                                  inverse_warp_matrices)
from vitpose_trt.decode import max_preds, merge_flip, postprocess  # noqa: E402
from vitpose_trt.crop import normalize, preprocess  # noqa: E402

_C = pytest.importorskip("vitpose_trt._C", reason="vitpose_trt._C is not built (pip install -e .)")

OPENCV_4 = int(cv2.__version__.split(".")[0]) < 5
FIXED_LIMIT = 1.0e6  # px: csrc/warp.h's kFixedLimit (where OpenCV 4's int32 fixed point stays defined)


# The profile's count for the bindings' own tests; half for the second route into warp_cpu (preprocess)
# and for the CUDA entry points, whose examples can only exercise argument checks.
HALF = settings(max_examples=max(10, settings.default.max_examples // 2))


class Arg:
    """One drawn argument: its value and, when it breaks a rule, the name the error must start with."""

    def __init__(self, value, broken: str | None = None, why: str = "") -> None:
        self.value, self.broken, self.why = value, broken, why

    def __repr__(self) -> str:
        v = self.value
        desc = f"{type(v).__name__}{getattr(v, 'shape', '')} {getattr(v, 'dtype', '')} " \
               f"strides={getattr(v, 'strides', None)}"
        return f"Arg({desc}{', broken: ' + self.broken + ' (' + self.why + ')' if self.broken else ''})"


def call_and_check(fn, args: dict[str, Arg], **fixed):
    """Call fn with the drawn arguments; a broken one must make it raise, naming a broken argument.
    Returns True when the call went through (all arguments valid)."""
    broken = {a.broken for a in args.values() if a.broken}
    out = args["out"].value
    outs = [out] if isinstance(out, np.ndarray) and out.flags.writeable else []
    before = [o.tobytes() for o in outs] if broken else []
    try:
        fn(**{k: a.value for k, a in args.items()}, **fixed)
    except (TypeError, ValueError) as e:
        name = str(e).split(":", 1)[0]
        assert broken, f"valid arguments raised {type(e).__name__}: {e}"
        assert name in broken, f"the error names {name!r}, expected one of {sorted(broken)}: {e}"
        assert "\n" not in str(e), f"not one line: {e}"
        assert [o.tobytes() for o in outs] == before, "a refused call wrote into an array"
        return False
    assert not broken, f"accepted broken arguments: {[repr(a) for a in args.values() if a.broken]}"
    return True


# ---- generic array mutations ----------------------------------------------------------------------

def read_only(arr: np.ndarray) -> np.ndarray:
    arr = arr.copy()
    arr.flags.writeable = False
    return arr


def odd_strides(arr: np.ndarray) -> np.ndarray:
    """A copy of `arr` in C order whose last-axis stride is itemsize + 1 bytes (not a multiple of it)."""
    strides, step = [], arr.itemsize + 1
    for n in reversed(arr.shape):
        strides.append(step)
        step *= max(n, 1)
    strides.reverse()
    size = sum((n - 1) * s for n, s in zip(arr.shape, strides)) + arr.itemsize
    out = np.ndarray(arr.shape, arr.dtype, buffer=np.zeros(size, np.uint8), strides=tuple(strides))
    out[...] = arr
    return out


@st.composite
def broken_array(draw, arr: np.ndarray, name: str, *, allowed: tuple, writable: bool = False) -> Arg:
    """`arr` made invalid in one way the binding must refuse, naming `name`."""
    kinds = ["dtype", "ndim", "not-array", "byte-order"]
    if arr.size:
        kinds += ["misaligned"] if arr.itemsize > 1 else []
        kinds += ["strided", "odd-stride"] if arr.ndim and arr.shape[-1] > 1 else []
    if writable:
        kinds.append("read-only")
    kind = draw(st.sampled_from(kinds))
    if kind == "dtype":
        dt = draw(st.sampled_from([d for d in (np.float64, np.float32, np.float16, np.int32, np.int64, np.uint8,
                                               np.int8, np.bool_, np.complex64, object) if np.dtype(d) not in allowed]))
        with np.errstate(all="ignore"), warnings.catch_warnings():  # NaN/inf/65520 cast to int or float16
            warnings.simplefilter("ignore", np.exceptions.ComplexWarning)
            return Arg(arr.astype(dt), name, f"dtype {np.dtype(dt)}")
    if kind == "ndim":
        return Arg(arr[None] if draw(st.booleans()) or arr.ndim < 2 or not len(arr) else arr[0], name, "rank")
    if kind == "not-array":
        return Arg(draw(st.sampled_from([None, 3.0, "array", arr.ravel()[:4].tolist(), memoryview(b"abcd")])),
                   name, "not an array")
    if kind == "byte-order":
        return Arg(arr.astype(arr.dtype.newbyteorder()) if arr.itemsize > 1 else arr.astype(">f4"), name,
                   "byte order")
    if kind == "misaligned":
        return Arg(misaligned(arr), name, "misaligned")
    if kind == "strided":
        big = np.repeat(arr, 2, axis=-1)
        return Arg(big[..., ::2] if writable else read_only(big)[..., ::2], name, "strided")
    if kind == "odd-stride":
        return Arg(odd_strides(arr), name, "stride not a multiple of the itemsize")
    return Arg(read_only(arr), name, "read-only")


THREADS = st.one_of(st.none(), st.integers(0, 64), st.sampled_from([-1, 10**6, 2**63, 2**100, -2**100, 1.0, True]))


def threads_arg(t) -> Arg:
    if t is None or (type(t) is int and t >= 1):
        return Arg(t)
    return Arg(t, "threads", "not a positive int")


# ---- warp -----------------------------------------------------------------------------------------

FRAME_LAYOUTS = ("contiguous", "mirrored", "flipped", "rotated", "transposed", "bgr-to-rgb", "mirrored-rgb",
                 "fortran", "broadcast-row", "broadcast-pixel", "broadcast-all", "pixel-stride-4",
                 "pixel-stride-6", "odd-row-pitch", "overlapping-rows", "overlapping-pixels")


def frame_view(base: np.ndarray, layout: str, rng: np.random.Generator) -> np.ndarray:
    """A view with `layout`'s strides; its values are whatever the view shows (never out of its buffer)."""
    h, w, _ = base.shape
    if layout == "mirrored":
        return base[:, ::-1]
    if layout == "flipped":
        return base[::-1]
    if layout == "rotated":
        return base[::-1, ::-1]
    if layout == "transposed":
        return np.ascontiguousarray(base.transpose(1, 0, 2)).transpose(1, 0, 2)
    if layout == "bgr-to-rgb":
        return base[..., ::-1]
    if layout == "mirrored-rgb":
        return base[:, ::-1, ::-1]
    if layout == "fortran":
        return np.asfortranarray(base)
    if layout == "broadcast-row":
        return np.broadcast_to(base[:1], base.shape)                     # row stride 0
    if layout == "broadcast-pixel":
        return np.broadcast_to(base[:, :1], base.shape)                  # pixel stride 0
    if layout == "broadcast-all":
        return as_strided(base, shape=base.shape, strides=(0, 0, 0), writeable=False)
    if layout == "pixel-stride-4":
        return np.concatenate([base, base[..., :1]], axis=2)[..., :3]
    if layout == "pixel-stride-6":
        return np.repeat(base, 2, axis=1)[:, ::2]
    if layout == "odd-row-pitch":  # rows of 3w + pad bytes, pad odd
        pitch = 3 * w + int(rng.integers(0, 4)) * 2 + 1
        buf = np.frombuffer(rng.bytes(h * pitch), np.uint8)
        return as_strided(buf, shape=(h, w, 3), strides=(pitch, 3, 1), writeable=False)
    if layout == "overlapping-rows":  # row y starts one pixel after row y - 1
        buf = rng.integers(0, 256, (h + w) * 3, dtype=np.uint8)
        return as_strided(buf, shape=(h, w, 3), strides=(3, 3, 1), writeable=False)
    if layout == "overlapping-pixels":  # element (y, x, c) at byte y + x + c
        buf = rng.integers(0, 256, h + w + 2, dtype=np.uint8)
        return as_strided(buf, shape=(h, w, 3), strides=(1, 1, 1), writeable=False)
    return base


@st.composite
def frame_sizes(draw) -> tuple[int, int]:
    size = draw(st.sampled_from(["tiny"] * 18 + ["small"] * 9 + ["hd"] * 2 + ["4k"]))  # 4K: 25 MB to fill
    if size == "tiny":
        return draw(st.integers(1, 12)), draw(st.integers(1, 12))
    if size == "small":
        return draw(st.integers(1, 200)), draw(st.integers(1, 321))
    if size == "hd":
        return draw(st.sampled_from([720, 1080, 1079])), draw(st.sampled_from([1280, 1920, 1921]))
    return 2160, draw(st.sampled_from([3840, 3839]))


@st.composite
def frames(draw, sizes=None) -> Arg:
    h, w = draw(sizes if sizes is not None else frame_sizes())
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    base = np.frombuffer(rng.bytes(h * w * 3), np.uint8).reshape(h, w, 3)  # read-only: frames are only read
    if draw(st.integers(0, 9)) == 0:  # a broken frame
        kind = draw(st.sampled_from(["dtype", "channels", "rank", "empty", "not-array"]))
        if kind == "dtype":
            dt = draw(st.sampled_from([np.float32, np.uint16, np.int8, np.bool_, np.float64]))
            return Arg(base.astype(dt), "frame", "dtype")
        if kind == "channels":
            return Arg(np.zeros((h, w, draw(st.sampled_from([1, 2, 4]))), np.uint8), "frame", "channels")
        if kind == "rank":
            return Arg(base[..., 0] if draw(st.booleans()) else base[None], "frame", "rank")
        if kind == "empty":
            return Arg(np.zeros((0, w, 3) if draw(st.booleans()) else (h, 0, 3), np.uint8), "frame", "empty")
        return Arg(draw(st.sampled_from([None, [[[0, 0, 0]]], b"\x00\x00\x00"])), "frame", "not an array")
    return Arg(frame_view(base, draw(st.sampled_from(FRAME_LAYOUTS)), rng))


FINITE = st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False)
ANY_FLOAT = st.one_of(FINITE, st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, -0.0, 1e6, -1e6,
                                                                                             2.5e6, 1e300]))


@st.composite
def boxes(draw, n: int, frame_hw: tuple[int, int]) -> np.ndarray:
    """(n, 4) boxes inside, across the border, wholly outside, huge, tiny and degenerate (zero width)."""
    h, w = frame_hw
    out = []
    for _ in range(n):
        kind = draw(st.sampled_from(["inside", "border", "outside", "huge", "tiny", "line"]))
        if kind == "inside":
            x1, y1 = draw(st.floats(0, w)), draw(st.floats(0, h))
            box = [x1, y1, draw(st.floats(x1, w)), y1 + draw(st.floats(0.01, h + 1))]
        elif kind == "border":
            x1, y1 = draw(st.floats(-w, w)), draw(st.floats(-h, h))
            box = [x1, y1, x1 + draw(st.floats(0.5, 2 * w + 1)), y1 + draw(st.floats(0.5, 2 * h + 1))]
        elif kind == "outside":
            x1 = draw(st.sampled_from([-5000.0, w + 3.0, -50.5]))
            box = [x1, -20.0, x1 + 40.0, 90.0]
        elif kind == "huge":
            r = draw(st.floats(1e3, MAX_COORD))
            box = [-r, -r * draw(st.floats(0, 1)), r * draw(st.floats(0, 1)), r]
        elif kind == "tiny":
            x1, y1 = draw(st.floats(-2, w + 2)), draw(st.floats(-2, h + 2))
            box = [x1, y1, x1 + draw(st.floats(2e-3, 1)), y1 + draw(st.floats(2e-3, 1))]
        else:  # zero width, some height
            x1, y1 = draw(st.floats(-2, w + 2)), draw(st.floats(-2, h + 2))
            box = [x1, y1, x1, y1 + draw(st.floats(0.5, 50))]
        out.append(box)
    return np.array(out, np.float64).reshape(n, 4)


@st.composite
def inverse_matrices(draw, n: int, frame_hw, crop_hw) -> np.ndarray:
    """(n, 2, 3) float64 crop -> frame matrices: from boxes through either mode, or raw numbers
    (NaN, inf, huge, zero)."""
    if draw(st.booleans()):
        mode = draw(st.sampled_from(["udp", "classic"]))
        crop = (max(crop_hw[0], 2), max(crop_hw[1], 2))  # udp divides by size - 1
        transforms = boxes_to_transforms(check_boxes(draw(boxes(n, frame_hw))), crop)
        return inverse_warp_matrices(transforms, mode, crop)
    return np.array(draw(st.lists(ANY_FLOAT, min_size=6 * n, max_size=6 * n)), np.float64).reshape(n, 2, 3)


def reference_crops(frame, inv, crop_hw, flip) -> np.ndarray:
    """The crops as OpenCV 4's warpAffine computes them from `inv` (WARP_INVERSE_MAP), where its int32
    fixed-point arithmetic is defined (csrc/warp.h: each part below kFixedLimit); zeros elsewhere (the
    documented contract for non-finite and astronomically large coordinates)."""
    h, w = crop_hw
    contiguous = np.ascontiguousarray(frame)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    out = np.empty((len(inv), 3, h, w), np.float32)
    with np.errstate(all="ignore"):  # NaN/inf matrices: the mask below is False there
        for i, m in enumerate(inv):
            parts = [m[0, 1] * ys + m[0, 2], m[1, 1] * ys + m[1, 2], m[0, 0] * xs, m[1, 0] * xs]
            valid = np.logical_and.reduce([np.abs(p) < FIXED_LIMIT for p in parts])
            crop = np.zeros((h, w, 3), np.uint8)
            if valid.any():
                safe = np.where(np.isfinite(m), m, 0.0)
                crop = cv2.warpAffine(contiguous, safe, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                      borderMode=cv2.BORDER_CONSTANT, borderValue=0)
                crop[~valid] = 0
            out[i] = normalize(crop)
    return np.concatenate([out, out[..., ::-1]]) if flip else out


@st.composite
def warp_outputs(draw, n: int, flip: bool, crop_hw) -> Arg:
    shape = (2 * n if flip else n, 3, *crop_hw)
    dtype = draw(st.sampled_from([np.float32, np.float16]))
    out = np.full(shape, 7.0, dtype)
    roll = draw(st.integers(0, 9))
    if roll == 0:
        return draw(broken_array(out, "out", allowed=(np.dtype(np.float32), np.dtype(np.float16)), writable=True))
    if roll == 1:  # the crop count or channels wrong, or an empty crop (out's h, w set the crop size)
        bad = list(shape)
        i = draw(st.integers(0, 3))
        bad[i] = 0 if i >= 2 else draw(st.sampled_from([v for v in (0, 1, 2, 4, shape[i] + 1) if v != shape[i]]))
        return Arg(np.zeros(bad, dtype), "out", f"shape {bad}")
    return Arg(out)


@pytest.mark.skipif(not OPENCV_4, reason="the reference crop is OpenCV 4's fixed-point warpAffine")
@given(data=st.data())
def test_warp_cpu(data):
    frame = data.draw(frames(), "frame")
    h, w = (data.draw(st.integers(1, 24)), data.draw(st.integers(1, 24)))
    n, flip = data.draw(st.integers(0, 5)), data.draw(st.booleans())
    frame_hw = frame.value.shape[:2] if frame.broken is None else (40, 50)
    inv = Arg(data.draw(inverse_matrices(n, frame_hw, (h, w)), "matrices"))
    if data.draw(st.integers(0, 9)) == 0:
        inv = data.draw(broken_array(inv.value, "inv_matrices", allowed=(np.dtype(np.float64),)))
    out = data.draw(warp_outputs(n, flip, (h, w)))
    if out.broken is None and out.value.size and inv.broken is None and inv.value.size and data.draw(st.booleans()):
        copy, shared = overlapping(inv.value, out.value.shape, out.value.dtype)
        inv, out = Arg(copy), Arg(shared, "out", "shares memory with inv_matrices")
    coords = data.draw(st.sampled_from(["auto", "fixed", "auto", "float", "nearest", ""]))
    args = {"frame": frame, "inv_matrices": inv, "out": out}
    if coords not in ("auto", "fixed", "float"):
        args["coords"] = Arg(coords, "coords", "unknown")
    else:
        args["coords"] = Arg(coords)
    args["threads"] = threads_arg(data.draw(THREADS))
    if not call_and_check(_C.warp_cpu, args, flip=flip):
        return
    got = out.value
    if coords == "float":  # OpenCV 5's model: every value is one of the 256 normalized levels of its channel
        levels = normalize(np.arange(256, dtype=np.uint8).reshape(1, 256, 1).repeat(3, axis=2))[:, 0, :]
        for c in range(3):
            assert np.isin(got[:, c], levels[c].astype(got.dtype)).all()
        return
    ref = reference_crops(frame.value, inv.value, (h, w), flip)
    if got.dtype == np.float16:
        ref = ref.astype(np.float16)
    np.testing.assert_array_equal(got.view(np.uint16 if got.dtype == np.float16 else np.uint32),
                                  ref.view(np.uint16 if ref.dtype == np.float16 else np.uint32))


@pytest.mark.skipif(not OPENCV_4, reason="the reference crop is OpenCV 4's fixed-point warpAffine")
@HALF
@given(data=st.data())
def test_preprocess_cpp_equals_numpy_on_any_boxes(data):
    """The public path: boxes anywhere (NaN, inf, inverted, beyond MAX_COORD included) either raise the
    same ValueError in both impls or give bit-identical crops."""
    small = st.tuples(st.integers(1, 120), st.integers(1, 161))  # the boxes are what varies here
    frame = data.draw(frames(small).filter(lambda a: a.broken is None), "frame")
    hw = frame.value.shape[:2]
    n = data.draw(st.integers(0, 3))
    b = data.draw(boxes(n, hw))
    if n and data.draw(st.booleans()):
        b[data.draw(st.integers(0, n - 1)), data.draw(st.integers(0, 3))] = data.draw(
            st.sampled_from([np.nan, np.inf, -np.inf, 2 * MAX_COORD, -1e7]))
    mode = data.draw(st.sampled_from(["udp", "classic"]))
    size = (data.draw(st.integers(2, 40)), data.draw(st.integers(2, 40)))
    results = []
    for impl in ("numpy", "cpp"):
        try:
            results.append(preprocess(frame.value, b, mode, input_size=size, impl=impl, flip=True)[0])
        except ValueError as e:
            results.append(str(e))
    if isinstance(results[0], str) or isinstance(results[1], str):
        assert results[0] == results[1] and results[0].startswith("boxes"), results
    else:
        np.testing.assert_array_equal(results[1].view(np.uint32), results[0].view(np.uint32))


# ---- decode ---------------------------------------------------------------------------------------

@st.composite
def heatmap_values(draw, shape, dtype) -> tuple[np.ndarray, bool]:
    """(heatmaps, peaked): peaked maps have one clear peak per map (the decode is well-posed); the
    others are noise, constants, NaN, inf or negative."""
    n, k, h, w = shape
    seed = draw(st.integers(0, 2**32 - 1))
    kind = draw(st.sampled_from(["peaked", "peaked", "noise", "constant", "special"]))
    if kind == "peaked" and h >= 2 and w >= 2:
        noise = 0.01 if min(h, w) >= 16 else 0.0  # on tiny maps noise makes the peak ill-posed
        return synthetic_heatmaps(n, k, h, w, seed=seed, noise=noise).astype(dtype), True
    rng = np.random.default_rng(seed)
    if kind == "constant":
        return np.full(shape, draw(st.sampled_from([0.0, 0.5, -1.0, 1e-4])), dtype), False
    hm = rng.normal(0, 1, shape).astype(dtype)
    if kind == "special" and hm.size:
        flat = hm.reshape(-1)
        idx = rng.integers(0, flat.size, max(1, flat.size // 50))
        flat[idx] = rng.choice(np.array([np.nan, np.inf, -np.inf, 60.0, 0.0], dtype), len(idx))
    return hm, False


@st.composite
def flip_indices(draw, k: int) -> Arg:
    kind = draw(st.sampled_from(["permutation", "any", "any", "out-of-range", "broken"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if kind == "permutation":
        return Arg(rng.permutation(k).astype(np.int32))
    if kind == "any" or k == 0:
        return Arg(rng.integers(0, max(k, 1), k).astype(np.int32))
    if kind == "out-of-range":
        fi = rng.integers(0, k, k).astype(np.int32)
        fi[rng.integers(0, k)] = draw(st.sampled_from([k, k + 5, -1, -(2**31), 2**31 - 1]))
        return Arg(fi, "flip_index", "value out of range")
    return draw(broken_array(np.arange(k, dtype=np.int32), "flip_index", allowed=(np.dtype(np.int32),)))


@st.composite
def transforms(draw, n: int) -> np.ndarray:
    rows = [[draw(FINITE), draw(FINITE), draw(st.floats(0.5, 3000)), draw(st.floats(0.5, 3000))] for _ in range(n)]
    t = np.array(rows, np.float32).reshape(n, 4)
    if n and draw(st.integers(0, 9)) == 0:
        t[draw(st.integers(0, n - 1)), draw(st.integers(0, 3))] = draw(st.sampled_from([np.nan, np.inf, 0.0]))
    return t


@given(data=st.data())
def test_decode_cpu(data):
    n, k = data.draw(st.integers(0, 5)), data.draw(st.sampled_from([0, 1, 2, 5, 17, 17, 20]))
    h, w = data.draw(st.sampled_from([(64, 48), (2, 2), (1, 1), (1, 9), (3, 5), (7, 4), (96, 72),
                                      (data.draw(st.integers(2, 40)), data.draw(st.integers(2, 40)))]))
    dtype = data.draw(st.sampled_from([np.float32, np.float16]))
    hm_values, peaked = data.draw(heatmap_values((n, k, h, w), dtype))
    hm = Arg(hm_values) if h >= 2 and w >= 2 else Arg(hm_values, "heatmaps", "smaller than 2x2")
    if data.draw(st.integers(0, 9)) == 0:
        hm = data.draw(broken_array(hm_values, "heatmaps", allowed=(np.dtype(np.float32), np.dtype(np.float16))))
    t = Arg(data.draw(transforms(n)))
    if data.draw(st.integers(0, 9)) == 0:
        t = data.draw(broken_array(t.value, "transforms", allowed=(np.dtype(np.float32),)))
    out = Arg(np.full((n, k, 3), 7.0, np.float32))
    roll = data.draw(st.integers(0, 9))
    if roll == 0:
        out = data.draw(broken_array(out.value, "out", allowed=(np.dtype(np.float32),), writable=True))
    elif roll == 1 and n * k:
        out = Arg(np.zeros((n, k, data.draw(st.sampled_from([2, 4]))), np.float32), "out", "shape")
    elif roll == 2 and n * k and hm.broken is None:
        copy, shared = overlapping(hm.value, (n, k, 3), np.float32)
        hm, out = Arg(copy), Arg(shared, "out", "shares memory with heatmaps")
    args = {"heatmaps": hm, "transforms": t, "out": out}
    flip = data.draw(st.sampled_from(["none", "both", "both", "flipped-only", "index-only"]))
    flipped_values = data.draw(heatmap_values((n, k, h, w), dtype))[0]
    if flip == "none":
        args["flipped"], args["flip_index"] = Arg(None), Arg(None)
    elif flip == "both":
        args["flipped"] = Arg(flipped_values)
        if data.draw(st.integers(0, 9)) == 0:
            args["flipped"] = Arg(flipped_values.astype(np.float64 if dtype == np.float32 else np.float32),
                                  "flipped", "dtype unlike heatmaps")
        args["flip_index"] = data.draw(flip_indices(k))
    elif flip == "flipped-only":
        args["flipped"], args["flip_index"] = Arg(flipped_values), Arg(None, "flip_index", "missing")
    else:
        args["flipped"], args["flip_index"] = Arg(None), Arg(np.arange(k, dtype=np.int32), "flip_index", "alone")
    mode = data.draw(st.sampled_from(["udp", "classic", "udp", "dark", "UDP"]))
    args["mode"] = Arg(mode) if mode in ("udp", "classic") else Arg(mode, "mode", "unknown")
    args["threads"] = threads_arg(data.draw(THREADS))
    if not call_and_check(_C.decode_cpu, args):
        return
    fi = args["flip_index"].value
    # the reference for any flip_index: the flipped maps gathered by it, then an identity flip merge
    flipped = None if fi is None else args["flipped"].value[:, fi]
    with np.errstate(all="ignore"):  # inf - inf in the reference's Newton step on inf maps
        ref = postprocess(hm.value, t.value, mode, flipped=flipped, flip_pairs=[], impl="numpy")
        merged = hm.value.astype(np.float32)
        if flipped is not None:
            merged = merge_flip(merged, flipped.astype(np.float32), mode, flip_pairs=[])
    assert_decoded_equal(out.value, ref, t.value, (h, w), mode, max_preds(merged)[0], well_posed=peaked)


def assert_decoded_equal(got, ref, t, hw, mode, peaks, well_posed: bool):
    """Scores exactly (NaN == NaN); classic x, y exactly; udp x, y where the DARK step is well-posed, in
    heatmap pixels: 1e-3 (5e-3 where OpenCV 5 blurs the last W % 8 columns in scalar code), plus two
    float32 ulps of the frame coordinate. Well-posed: one clear peak (not noise: one ulp of numpy's
    float32 log moves an ill-posed Newton step anywhere, see test_kernels_cpu.py::test_noise_heatmaps),
    a map no smaller than 16 px (the 11x11 blur flattens smaller ones), the refined point within a
    heatmap pixel of the argmax, and a finite transform."""
    np.testing.assert_array_equal(got[..., 2], ref[..., 2])
    if mode == "classic":
        np.testing.assert_array_equal(got[..., :2], ref[..., :2])
        return
    if not well_posed or not got.size or min(hw) < 16:
        return
    rows = np.isfinite(t).all(axis=1) & (t[:, 2:] > 0).all(axis=1)
    t, got, ref, peaks = t[rows], got[rows], ref[rows], peaks[rows]
    hm_got = frame_to_heatmap(got[..., :2], t, hw, mode)
    hm_ref = frame_to_heatmap(ref[..., :2], t, hw, mode)
    posed = (np.abs(hm_ref - peaks) < 1.0).all(-1) & (ref[..., 2] > 0)
    scale = np.stack([t[:, 2] / (hw[1] - 1), t[:, 3] / (hw[0] - 1)], -1)[:, None, :]
    ulp = np.spacing(np.abs(ref[..., :2])).astype(np.float64) / scale
    tol = (1e-3 if hw[1] % 8 == 0 else 5e-3) + 2 * ulp
    assert (np.abs(hm_got - hm_ref) <= tol)[posed].all(), np.abs(hm_got - hm_ref)[posed].max()


# ---- the CUDA entry points: argument checks only (no CUDA call is ever reached with host memory) ----

class CudaArray:
    """An object exposing __cuda_array_interface__ v3 over a host numpy array: its checks must refuse
    bad shapes and dtypes before any CUDA call, and a host pointer before any launch."""

    def __init__(self, arr: np.ndarray, *, readonly: bool = False, **override) -> None:
        self._arr = arr
        self.__cuda_array_interface__ = {
            "shape": arr.shape, "typestr": arr.dtype.str, "data": (arr.ctypes.data if arr.size else 0, readonly),
            "strides": None if arr.flags.c_contiguous else arr.strides, "version": 3, **override}


@st.composite
def cuda_arg(draw, arr: np.ndarray, name: str, allowed: tuple, writable: bool = False, any_strides=False) -> Arg:
    kind = draw(st.sampled_from(["valid"] * 3 + ["dtype", "typestr", "shape", "negative", "strides", "read-only",
                                                 "host", "mask"]))
    if kind == "valid" or (kind == "strides" and any_strides):
        return Arg(CudaArray(arr))
    if kind == "dtype":
        dt = draw(st.sampled_from([d for d in (np.float64, np.float32, np.float16, np.int32, np.uint8)
                                   if np.dtype(d) not in allowed]))
        return Arg(CudaArray(arr.astype(dt)), name, "dtype")
    if kind == "typestr":
        return Arg(CudaArray(arr, typestr=draw(st.sampled_from([">f4", "<c8", "|b1", ">f8", "<V4"]))), name, "typestr")
    if kind == "shape":
        return Arg(CudaArray(arr[None]), name, "rank")
    if kind == "negative" and arr.ndim:
        return Arg(CudaArray(arr, shape=(-1,) + arr.shape[1:]), name, "negative dimension")
    if kind == "strides" and arr.size > 1 and arr.ndim:
        return Arg(CudaArray(arr, strides=(0,) * arr.ndim), name, "not C-contiguous")
    if kind == "read-only" and writable:
        return Arg(CudaArray(arr, readonly=True), name, "read-only")
    if kind == "mask":
        return Arg(CudaArray(arr, mask=CudaArray(arr.astype(np.bool_))), name, "masked")
    if kind == "host":
        return Arg(arr, name, "host array")
    return Arg(CudaArray(arr))


def call_cuda_entry(fn, args: dict[str, Arg], **fixed) -> None:
    """Broken arguments: an error naming one of them. Valid ones reach the device check and stop there:
    RuntimeError (no CUDA build, or no GPU) or ValueError naming the first host pointer."""
    broken = {a.broken for a in args.values() if a.broken}
    with pytest.raises((TypeError, ValueError, RuntimeError)) as e:
        fn(**{k: a.value for k, a in args.items()}, **fixed)
    name = str(e.value).split(":", 1)[0]
    if broken:
        assert e.type is not RuntimeError and name in broken, f"{e.type.__name__}: {e.value}; broken: {broken}"
    elif e.type is ValueError:
        assert name in args and ("host pointer" in str(e.value) or "cannot query" in str(e.value)), str(e.value)


@HALF
@given(data=st.data())
def test_warp_cuda_checks(data):
    n, flip = data.draw(st.integers(0, 3)), data.draw(st.booleans())
    h, w = data.draw(st.integers(1, 12)), data.draw(st.integers(1, 12))
    frame = np.zeros((data.draw(st.integers(1, 9)), data.draw(st.integers(1, 9)), 3), np.uint8)
    args = {
        "frame": data.draw(cuda_arg(frame, "frame", (np.dtype(np.uint8),), any_strides=True)),
        "inv_matrices": data.draw(cuda_arg(np.zeros((n, 2, 3)), "inv_matrices", (np.dtype(np.float64),))),
        "out": data.draw(cuda_arg(np.zeros((2 * n if flip else n, 3, h, w), np.float32), "out",
                                  (np.dtype(np.float32), np.dtype(np.float16)), writable=True)),
    }
    call_cuda_entry(_C.warp_cuda, args, flip=flip, stream=0)


@HALF
@given(data=st.data())
def test_decode_cuda_checks(data):
    n, k = data.draw(st.integers(0, 3)), data.draw(st.integers(0, 5))
    h, w = data.draw(st.integers(2, 9)), data.draw(st.integers(2, 9))
    fp = (np.dtype(np.float32), np.dtype(np.float16))
    args = {
        "heatmaps": data.draw(cuda_arg(np.zeros((n, k, h, w), np.float32), "heatmaps", fp)),
        "transforms": data.draw(cuda_arg(np.zeros((n, 4), np.float32), "transforms", (np.dtype(np.float32),))),
        "out": data.draw(cuda_arg(np.zeros((n, k, 3), np.float32), "out", (np.dtype(np.float32),), writable=True)),
    }
    if data.draw(st.booleans()):
        args["flipped"] = data.draw(cuda_arg(np.zeros((n, k, h, w), np.float32), "flipped", (np.dtype(np.float32),)))
        args["flip_index"] = data.draw(cuda_arg(np.arange(k, dtype=np.int32), "flip_index", (np.dtype(np.int32),)))
    else:
        args["flipped"], args["flip_index"] = Arg(None), Arg(None)
    call_cuda_entry(_C.decode_cuda, args, mode="udp", stream=0)
