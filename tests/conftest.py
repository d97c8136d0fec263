"""Shared fixtures: the real COCO sample photos with their detector boxes, tiny models (a 2-block ViTPose,
and an inline heatmap net exported to ONNX), CUDA skips, and a generator of realistic synthetic heatmaps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
CUDA_SKIP_REASON = "needs an NVIDIA GPU and the CUDA build of vitpose_trt._C"


def _register_fuzz_profiles() -> None:
    """Hypothesis profiles of tests/test_bindings_fuzz.py, chosen with --hypothesis-profile NAME:
    "dev" (the default: plain `pytest`, derandomized so a run is reproducible), "ci-fuzz" (CI's
    sanitizer step, tests/sanitizers.py: fresh random examples each run, a few thousand per binding)
    and "release" (the long run before a release, docs/RELIABILITY.md). No deadline: examples range
    from a 1x1 frame to a 4K one, under a sanitizer too."""
    try:
        from hypothesis import HealthCheck, settings
    except ImportError:  # test_bindings_fuzz.py skips, saying so
        return
    slow = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]
    common = dict(deadline=None, suppress_health_check=slow, print_blob=True)
    settings.register_profile("dev", max_examples=150, derandomize=True, database=None, **common)
    settings.register_profile("ci-fuzz", max_examples=2000, **common)
    settings.register_profile("release", max_examples=50_000, **common)
    settings.load_profile("dev")


_register_fuzz_profiles()


@pytest.fixture(scope="session", autouse=True)
def _onnx_cache_in_tmp(tmp_path_factory):
    """The CPU's cached ONNX exports (checkpoints under backend="auto") go to a folder of this test
    session, not the user's cache."""
    import os

    old = os.environ.get("VITPOSE_TRT_CACHE_DIR")
    os.environ["VITPOSE_TRT_CACHE_DIR"] = str(tmp_path_factory.mktemp("onnx-cache"))
    yield
    if old is None:
        os.environ.pop("VITPOSE_TRT_CACHE_DIR", None)
    else:
        os.environ["VITPOSE_TRT_CACHE_DIR"] = old


def coco_sample_dir() -> Path | None:
    """`../shared/data/coco-sample` beside the checkout (or $VITPOSE_TRT_COCO_SAMPLE), if present."""
    from vitpose_trt.coco import sample_dir

    return sample_dir()


@pytest.fixture(scope="session")
def coco_sample() -> list[tuple[str, np.ndarray, np.ndarray]]:
    """[(file name, BGR frame, (M, 5) x1,y1,x2,y2,score detector boxes)] for the 4 real photos."""
    from vitpose_trt.coco import load_sample

    root = coco_sample_dir()
    if root is None:
        pytest.skip("real photos not found: ../shared/data/coco-sample is absent (set VITPOSE_TRT_COCO_SAMPLE)")
    return load_sample(root)


@pytest.fixture(scope="session")
def sample_checkpoint() -> Path:
    """Path of the fixture ViTPose-S fitted to the sample photos' people (real heatmap peaks)."""
    from vitpose_trt.coco import sample_checkpoint as find

    path = find()
    if path is None:
        pytest.skip("fixture model not found: ../shared/fixtures/vitpose-s-coco-sample.pth is absent "
                    "(set VITPOSE_TRT_SAMPLE_CHECKPOINT)")
    return path


@pytest.fixture(scope="session")
def sample_model(sample_checkpoint):
    """The fixture ViTPose-S loaded through `load_model`, float32, eval mode (do not modify: shared)."""
    from vitpose_trt.checkpoint import load_model

    return load_model(sample_checkpoint).float().eval()


def pytest_report_header(config) -> list[str]:
    """What the crop references depend on, at the top of every run: the installed OpenCV and the
    sub-pixel model the kernels use with it (OpenCV 4.x's 1/32-px fixed point is the contract;
    tests comparing with cv2.warpAffine bit for bit skip on OpenCV 5 and say so)."""
    import cv2

    try:
        from vitpose_trt import _C

        coords = f"kernels' warp coordinates: {_C.opencv_warp_coords()}, CUDA kernels built: {_C.built_with_cuda}"
    except ImportError:
        coords = "vitpose_trt._C not built"
    return [f"vitpose_trt: opencv {cv2.__version__} ({coords})"]


def cuda_ready() -> tuple[bool, str]:
    """(True, "") when torch sees a GPU and vitpose_trt._C has working CUDA kernels, else (False, why)."""
    try:
        import torch
    except ImportError:
        return False, "torch is not installed"
    if not torch.cuda.is_available():
        return False, "torch.cuda.is_available() is False"
    try:
        from vitpose_trt import _C
    except ImportError:
        return False, "vitpose_trt._C is not built"
    if not _C.cuda_available():
        why = "was built without CUDA" if not _C.built_with_cuda else "sees no GPU"
        return False, f"vitpose_trt._C {why}"
    return True, ""


def pytest_collection_modifyitems(config, items):
    """Skip tests marked `requires_cuda` where there is no GPU or no CUDA build (checked lazily:
    torch is only imported when a collected test carries the marker)."""
    marked = [item for item in items if "requires_cuda" in item.keywords]
    if not marked:
        return
    ok, why = cuda_ready()
    if ok:
        return
    skip = pytest.mark.skip(reason=f"{CUDA_SKIP_REASON} ({why})")
    for item in marked:
        item.add_marker(skip)


@pytest.fixture
def standin():
    """The CPU stand-in for CUDA (tests/standins/cuda.py) in place for the test; any race or allocator
    misuse it saw fails the test."""
    from tests.standins.cuda import CudaStandIn
    from vitpose_trt.cuda_runtime import use_runtime

    rt = CudaStandIn()
    with use_runtime(rt):
        yield rt
    assert not rt.races, "\n".join(rt.races)


@pytest.fixture(scope="session")
def tiny_model():
    """A 2-block ViTPose with random weights: fast on the CPU, same code path as ViTPose-B."""
    import torch

    from vitpose_trt.model import ViTPose, ViTPoseConfig

    torch.manual_seed(0)
    model = ViTPose(ViTPoseConfig(variant="tiny", embed_dim=64, depth=2, num_heads=2)).eval()
    model.random_weights = True
    return model


def tiny_heatmap_net():
    """Conv -> LayerNorm -> MatMul -> spatial Softmax: the op mix of ViTPose in a few kB (eval mode).

    (N, 3, 256, 192) -> (N, 5, 64, 48) heatmaps; the spatial softmax gives each map one peak.
    """
    import torch

    k = 5  # keypoints

    class TinyHeatmapNet(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.conv = torch.nn.Conv2d(3, 16, kernel_size=4, stride=4)
            self.norm = torch.nn.LayerNorm(16)
            self.proj = torch.nn.Parameter(torch.randn(16, k))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            f = self.conv(x)  # (B, 16, 64, 48)
            b, c, h, w = f.shape
            t = self.norm(f.flatten(2).transpose(1, 2))  # (B, h*w, 16)
            logits = torch.matmul(t, self.proj).transpose(1, 2) * 4.0  # (B, K, h*w)
            return torch.softmax(logits, dim=-1).reshape(-1, k, h, w)

    return TinyHeatmapNet().eval()


def export_inline(model, path: Path) -> Path:
    """The exporter call `vitpose_trt.export.export_onnx` makes, for models without a config."""
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter is "legacy"
        torch.onnx.export(model.eval(), (torch.zeros(1, 3, 256, 192),), str(path), input_names=["input"],
                          output_names=["heatmaps"], dynamic_axes={"input": {0: "batch"}, "heatmaps": {0: "batch"}},
                          opset_version=17, dynamo=False, do_constant_folding=True)
    return path


@pytest.fixture(scope="session")
def tiny_net_onnx(tmp_path_factory):
    """(the tiny heatmap net, its FP32 .onnx): a small graph with LayerNorm, MatMul and Softmax (do not modify)."""
    model = tiny_heatmap_net()
    return model, export_inline(model, tmp_path_factory.mktemp("tiny") / "tiny.onnx")


def synthetic_heatmaps(n: int, k: int = 17, h: int = 64, w: int = 48, seed: int = 0,
                       noise: float = 0.01) -> np.ndarray:
    """(n, k, h, w) float32 heatmaps shaped like a trained ViTPose's: per keypoint one sub-pixel
    Gaussian peak (sigma 2 heatmap px, amplitude 0.05-0.95, anywhere including the borders), a
    weaker second peak (a confusable limb), and small Gaussian noise that dips below zero."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)

    def bump(amp, cx, cy, sigma):
        return amp[..., None, None] * np.exp(
            -((xs - cx[..., None, None]) ** 2 + (ys - cy[..., None, None]) ** 2) / (2 * sigma**2))

    cx, cy = rng.uniform(-0.5, w - 0.5, (n, k)), rng.uniform(-0.5, h - 0.5, (n, k))
    hm = bump(rng.uniform(0.05, 0.95, (n, k)), cx, cy, 2.0)
    hm += bump(rng.uniform(0.0, 0.3, (n, k)), rng.uniform(0, w - 1, (n, k)), rng.uniform(0, h - 1, (n, k)), 2.5)
    hm += rng.normal(0.0, noise, hm.shape)
    return hm.astype(np.float32)
