"""The alternatives the benchmark runs: one factory per row, each returning a `Runner`.

Rows of this package time `VitPoseTRT`'s own paths through its public stage hook
(`infer_async(..., stage_hook=...)`; CUDA events on `VitPoseTRT.stream` on the GPU, perf_counter
on the CPU); the e2e column times `VitPoseTRT.infer`.
"""

from __future__ import annotations

import copy
import importlib
import logging
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch

from vitpose_trt import postprocess, preprocess
from vitpose_trt.bench.measure import Runner, Timer
from vitpose_trt.checkpoint import to_hf_state_dict
from vitpose_trt.engines import open_engine
from vitpose_trt.engines.onnx_cache import cached_int8_onnx
from vitpose_trt.engines.onnxruntime import OnnxRuntimeEngine
from vitpose_trt.engines.pytorch import PyTorchEngine, exact_fp32
from vitpose_trt.engines.tensorrt import tensorrt_available
from vitpose_trt.export import export_onnx
from vitpose_trt.geometry import check_boxes
from vitpose_trt.pipeline import PoseConfig, VitPoseTRT

log = logging.getLogger(__name__)

ALTERNATIVES = ("tensorrt", "pytorch-cuda", "onnxruntime", "onnxruntime-int8", "pytorch-cpu", "baseline",
                "transformers", "torch-fp16-eager")
ALIASES = {
    "auto": ALTERNATIVES,
    "all": ALTERNATIVES,
    "pipeline": ("tensorrt", "pytorch-cuda", "onnxruntime", "onnxruntime-int8", "pytorch-cpu"),
    "gpu": ("tensorrt", "pytorch-cuda", "baseline", "transformers", "torch-fp16-eager"),
    "cpu": ("onnxruntime", "onnxruntime-int8", "pytorch-cpu", "baseline", "transformers"),
    "int8": ("onnxruntime", "onnxruntime-int8", "transformers"),  # INT8 beside its FP32 twin and transformers
}
# Each row in plain words, printed under the table.
PLAIN_WORDS = {
    "tensorrt": "this package with a TensorRT engine (FP16, or INT8/FP8 when built from `vitpose-trt quantize`): "
                "all boxes in one batch, CUDA pre/post on the GPU",
    "pytorch-cuda": "this package with PyTorch FP16 on the GPU: all boxes in one batch, CUDA pre/post",
    "onnxruntime": "this package with ONNX Runtime FP32 on the CPU: all boxes in one batch, C++ pre/post",
    "onnxruntime-int8": "this package with ONNX Runtime INT8 on the CPU (precision='int8': the Linear layers' "
                        "MatMuls dynamically quantized), all boxes in one batch, C++ pre/post",
    "pytorch-cpu": "this package with PyTorch FP32 on the CPU: all boxes in one batch, C++ pre/post",
    "baseline": "PyTorch FP32, one box at a time, numpy pre/post: what the framework-free ports do",
    "transformers": "Hugging Face transformers' VitPose with the same weights, fed our crops, decoded by our "
                    "postprocess",
    "torch-fp16-eager": "the model alone in PyTorch FP16 on the GPU, crops already there: the floor without "
                        "pre/post",
}


class Skip(Exception):
    """An alternative that cannot run here; the message is the reason shown in the table."""


def _optional(name: str, reason: str | None = None) -> ModuleType:
    """The module `name`; when it cannot be imported, Skip(`reason`) (the ImportError itself without one)."""
    # lazy: transformers and onnxruntime's quantization tools are optional here; without them a row is skipped
    try:
        return importlib.import_module(name)
    except ImportError:
        if reason is None:
            raise
        raise Skip(reason) from None


def build_hf_model(model):
    """A transformers `VitPoseForPoseEstimation` holding `model`'s weights (FP32, CPU, eval)."""
    transformers = _optional("transformers")
    c = model.config
    if c.decoder == "classic" and c.deconv_channels != 256:
        raise Skip(f"transformers' classic decoder has 256 channels, this model {c.deconv_channels}")
    if c.mlp_ratio != int(c.mlp_ratio):
        raise Skip(f"transformers needs an integer mlp_ratio, got {c.mlp_ratio}")
    backbone = transformers.VitPoseBackboneConfig(
        image_size=list(c.input_size), patch_size=[c.patch_size, c.patch_size], hidden_size=c.embed_dim,
        num_hidden_layers=c.depth, num_attention_heads=c.num_heads, mlp_ratio=int(c.mlp_ratio),
        layer_norm_eps=c.layer_norm_eps, qkv_bias=c.qkv_bias, out_indices=[c.depth])
    config = transformers.VitPoseConfig(backbone_config=backbone, use_simple_decoder=c.decoder == "simple",
                           num_labels=c.num_keypoints)
    hf = transformers.VitPoseForPoseEstimation(config)
    sd = {k: v.detach().float().cpu() for k, v in model.state_dict().items()}
    hf.load_state_dict(to_hf_state_dict(sd), strict=True)
    return hf.eval()


# --------------------------------------------------------------------------------------------
# runners: one factory per alternative


@dataclass
class BenchContext:
    """What every runner factory needs."""

    model: Any  # the FP32 CPU ViTPose: the reference and the source of every alternative's weights
    mode: str = "udp"
    flip_test: bool = False
    flip_pairs: Any = None
    cuda: bool = False
    no_cuda_reason: str = ""
    plan_path: Path | None = None
    onnx_path: Path | None = None
    tmpdir: Path | None = None
    cpu_impl: str = "numpy"  # pre/post of the rows outside VitPoseTRT ("cpp" where the extension is built)
    threads: int | None = None  # CPU threads for ONNX Runtime (PyTorch's are set globally)

    @property
    def input_size(self) -> tuple[int, int]:
        return tuple(self.model.config.input_size)

    def need_cuda(self) -> None:
        if not self.cuda:
            raise Skip(self.no_cuda_reason)

    def open_pose(self, engine, **options: Any):
        """`engine` as a `VitPoseTRT` with the benchmark's mode, flip test and flip pairs (`options`:
        other `PoseConfig` fields by name)."""
        return VitPoseTRT(engine, PoseConfig(mode=self.mode, flip_test=self.flip_test, flip_pairs=self.flip_pairs),
                          **options)


def _cpu_pipeline_runner(name: str, pose, description: str) -> Runner:
    """VitPoseTRT's own CPU path, timed per stage through its stage hook."""
    eng = pose.engine
    host_roundtrip = eng.device == "cuda"

    def infer(frame, boxes, timer):
        return pose.infer_async(frame, boxes, stage_hook=timer.mark).result()

    def batch(b):
        x = np.random.default_rng(0).standard_normal((b, 3, *eng.input_size)).astype(np.float32)
        return lambda: eng.run(x)

    notes = [f"pre/post impl={pose.impl}"]
    if host_roundtrip:
        notes.append("CUDA kernels not built: crops/heatmaps go through the host; 'model' includes the copies")
    return Runner(name=name, device=eng.device, precision=eng.precision, description=description, infer=infer,
                  e2e=pose.infer if host_roundtrip else None, batch=batch, notes=notes)


def _gpu_staged(pose):
    """`VitPoseTRT`'s own GPU path, with a CUDA event recorded on its compute stream after each stage."""

    def infer(frame, boxes, timer: Timer) -> np.ndarray:
        pending = pose.infer_async(frame, boxes, stage_hook=lambda stage: timer.mark(stage, gpu=True))
        timer.stop()
        return pending.result()

    return infer


def _pipeline_runner(name: str, pose, description: str) -> Runner:
    """A `VitPoseTRT` as a runner: its GPU path when it has one (a compute stream), else its CPU path."""
    if pose.stream is None:
        return _cpu_pipeline_runner(name, pose, description)
    eng, stream = pose.engine, pose.stream

    def batch(b):
        x = torch.randn(b, 3, *eng.input_size, device=eng.torch_device).to(eng.input_dtype)
        return lambda: eng.run_cuda(x, stream)

    return Runner(name=name, device="cuda", precision=eng.precision, description=description,
                  infer=_gpu_staged(pose), e2e=pose.infer, batch=batch, stream=stream,
                  notes=["stages: CUDA events inside the GPU path of VitPoseTRT; e2e: VitPoseTRT.infer"])


def runner_tensorrt(ctx: BenchContext) -> Runner:
    if ctx.plan_path is None:
        raise Skip("no TensorRT engine given (engine= a plan built with `vitpose-trt build`, the CLI's --engine)")
    if not tensorrt_available():
        raise Skip("the tensorrt package is not installed")
    ctx.need_cuda()
    engine = open_engine(ctx.plan_path, backend="tensorrt")
    pose = ctx.open_pose(engine)
    return _pipeline_runner("tensorrt", pose, f"VitPoseTRT, TensorRT {engine.precision} engine {ctx.plan_path.name}")


def runner_pytorch_cuda(ctx: BenchContext) -> Runner:
    ctx.need_cuda()
    engine = PyTorchEngine(copy.deepcopy(ctx.model), device="cuda", precision="fp16")
    pose = ctx.open_pose(engine)
    return _pipeline_runner("pytorch-cuda", pose, "VitPoseTRT, PyTorch CUDA FP16 engine")


def runner_onnxruntime(ctx: BenchContext) -> Runner:
    _optional("onnxruntime", "onnxruntime is not installed")
    engine = OnnxRuntimeEngine(_fp32_onnx(ctx), threads=ctx.threads)
    pose = ctx.open_pose(engine, impl=ctx.cpu_impl)
    return _cpu_pipeline_runner("onnxruntime", pose, "VitPoseTRT, ONNX Runtime CPU FP32")


def runner_onnxruntime_int8(ctx: BenchContext) -> Runner:
    _optional("onnxruntime.quantization", "onnxruntime (with its quantization tools) is not installed")
    path = cached_int8_onnx(_fp32_onnx(ctx), directory=ctx.tmpdir or tempfile.mkdtemp(), mode=ctx.mode)
    engine = OnnxRuntimeEngine(path, threads=ctx.threads)
    pose = ctx.open_pose(engine, impl=ctx.cpu_impl)
    return _cpu_pipeline_runner("onnxruntime-int8", pose, "VitPoseTRT, ONNX Runtime CPU INT8 (dynamic)")


def _fp32_onnx(ctx: BenchContext) -> Path:
    """The FP32 .onnx of the benchmark weights: the one given, else exported once into the run's folder."""
    if ctx.onnx_path is not None:
        return ctx.onnx_path
    path = Path(ctx.tmpdir or tempfile.mkdtemp()) / f"bench_{id(ctx.model):x}.onnx"
    if not path.is_file():
        log.info("exporting the benchmark weights to %s for ONNX Runtime", path)
        export_onnx(ctx.model, path, check=False)
    return path


def runner_pytorch_cpu(ctx: BenchContext) -> Runner:
    engine = PyTorchEngine(ctx.model, device="cpu", precision="fp32")  # CPU FP32: .to() is a no-op, no copy
    pose = ctx.open_pose(engine, impl=ctx.cpu_impl)
    return _cpu_pipeline_runner("pytorch-cpu", pose, "VitPoseTRT, PyTorch CPU FP32")


def runner_baseline(ctx: BenchContext) -> Runner:
    """The seed-style pipeline: FP32 eager model (GPU where there is one), numpy/OpenCV pre/post,
    one box at a time."""
    device = "cuda" if ctx.cuda else "cpu"
    model = ctx.model if device == "cpu" else copy.deepcopy(ctx.model).to(device)
    gpu = device == "cuda"
    mode, flip, input_size = ctx.mode, ctx.flip_test, ctx.input_size

    @torch.inference_mode()
    def infer(frame, boxes, timer):
        boxes = check_boxes(boxes)
        out = []
        for box in boxes:
            crops, transforms = preprocess(frame, box[None], mode, input_size=input_size, impl="numpy", flip=flip)
            timer.mark("crop")
            x = torch.from_numpy(crops).to(device)
            if gpu:
                timer.mark("upload", gpu=True)
            with exact_fp32():  # the FP32 baseline computes in FP32, not in TF32 convolutions
                heat = model(x)
            timer.mark("model", gpu=gpu)
            heat = heat.cpu().numpy()
            if gpu:
                timer.mark("download", gpu=True)
            out.append(postprocess(heat[:1], transforms, mode, flipped=heat[1:] if flip else None,
                                   flip_pairs=ctx.flip_pairs, impl="numpy"))
            timer.mark("decode")
        return np.concatenate(out) if out else np.zeros((0, model.config.num_keypoints, 3), np.float32)

    return Runner(name="baseline", device=device, precision="fp32",
                  description="seed-style: PyTorch FP32 eager, numpy/OpenCV pre/post, one box at a time",
                  infer=infer, notes=["batch size 1 by construction: no throughput row"])


def runner_transformers(ctx: BenchContext) -> Runner:
    transformers = _optional("transformers", "transformers is not installed")
    try:
        transformers.VitPoseForPoseEstimation  # noqa: B018 (a lazy attribute: raises when this version lacks it)
    except (ImportError, AttributeError):
        raise Skip(f"transformers {transformers.__version__} has no VitPoseForPoseEstimation") from None
    gpu = ctx.cuda
    device, dtype = ("cuda", torch.float16) if gpu else ("cpu", torch.float32)
    hf = build_hf_model(ctx.model).to(device, dtype)
    mode, flip, impl, input_size = ctx.mode, ctx.flip_test, ctx.cpu_impl, ctx.input_size

    @torch.inference_mode()
    def infer(frame, boxes, timer):
        boxes = check_boxes(boxes)
        n = len(boxes)
        crops, transforms = preprocess(frame, boxes, mode, input_size=input_size, impl=impl, flip=flip)
        timer.mark("crop")
        x = torch.from_numpy(crops).to(device, dtype)
        if gpu:
            timer.mark("upload", gpu=True)
        heat = hf(pixel_values=x).heatmaps
        timer.mark("model", gpu=gpu)
        heat = heat.float().cpu().numpy()
        if gpu:
            timer.mark("download", gpu=True)
        out = postprocess(heat[:n], transforms, mode, flipped=heat[n:] if flip else None,
                          flip_pairs=ctx.flip_pairs, impl=impl)
        timer.mark("decode")
        return out

    def batch(b):
        x = torch.randn(b, 3, *input_size, device=device).to(dtype)

        def run():
            with torch.inference_mode():
                return hf(pixel_values=x).heatmaps

        return run

    precision = "fp16" if gpu else "fp32"
    return Runner(name="transformers", device=device, precision=precision,
                  description=f"transformers {transformers.__version__} VitPoseForPoseEstimation {precision}, "
                              f"our crops (impl={impl}) and decode",
                  infer=infer, batch=batch, notes=[f"pre/post impl={impl}"])


def runner_torch_fp16_eager(ctx: BenchContext) -> Runner:
    """The model alone, PyTorch FP16 eager on the GPU: crops already on the device, no pre/post."""
    ctx.need_cuda()
    model = copy.deepcopy(ctx.model).to("cuda", torch.float16)
    stream = torch.cuda.current_stream()
    state: dict[str, Any] = {}
    mode, flip = ctx.mode, ctx.flip_test

    def prepare(frame, boxes):
        crops, transforms = preprocess(frame, boxes, mode, input_size=ctx.input_size, impl="numpy", flip=flip)
        state["x"] = torch.from_numpy(crops).to("cuda", torch.float16)
        state["t"], state["n"] = transforms, len(boxes)

    @torch.inference_mode()
    def infer(frame, boxes, timer):
        heat = model(state["x"])
        timer.mark("model", gpu=True)
        timer.stop()  # the model alone is timed; decoding below only feeds the correctness check
        heat = heat.float().cpu().numpy()
        n = state["n"]
        return postprocess(heat[:n], state["t"], mode, flipped=heat[n:] if flip else None,
                           flip_pairs=ctx.flip_pairs, impl="numpy")

    def batch(b):
        x = torch.randn(b, 3, *ctx.input_size, device="cuda", dtype=torch.float16)

        def run():
            with torch.inference_mode():
                return model(x)

        return run

    return Runner(name="torch-fp16-eager", device="cuda", precision="fp16",
                  description="the model alone, PyTorch FP16 eager (crops already on the GPU; no pre/post)",
                  infer=infer, prepare=prepare, batch=batch, stream=stream,
                  notes=["model only: e2e = the model stage"])


FACTORIES: dict[str, Callable[[BenchContext], Runner]] = {
    "tensorrt": runner_tensorrt,
    "pytorch-cuda": runner_pytorch_cuda,
    "onnxruntime": runner_onnxruntime,
    "onnxruntime-int8": runner_onnxruntime_int8,
    "pytorch-cpu": runner_pytorch_cpu,
    "baseline": runner_baseline,
    "transformers": runner_transformers,
    "torch-fp16-eager": runner_torch_fp16_eager,
}


def resolve_alternatives(spec: str | Sequence[str]) -> list[str]:
    """'auto', or comma-separated names and aliases (pipeline, gpu, cpu) -> ordered unique names."""
    items = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else [str(s) for s in spec]
    names: list[str] = []
    for item in filter(None, items):
        expanded = ALIASES.get(item, (item,))
        for name in expanded:
            if name not in FACTORIES:
                raise ValueError(f"unknown alternative {name!r}: choose from {', '.join(ALTERNATIVES)} "
                                 f"or {', '.join(ALIASES)}")
            if name not in names:
                names.append(name)
    if not names:
        raise ValueError("no alternative selected")
    return names

