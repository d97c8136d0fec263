"""Build a TensorRT FP16 engine for ViTPose: checkpoint or ONNX -> `model.engine` + `model.engine.json`.
(A person detector's .onnx is built on the same builder, in `build_engine.detector_build`;
`build_engine.build` picks which.)

    checkpoint --export_onnx--> FP32 ONNX --fp16.convert_to_fp16--> FP16 ONNX (LayerNorm in FP32)
        --strongly typed TensorRT network--> plan, with one optimization profile over the batch
        --> sidecar (what the plan was built from and for) --> accuracy check against FP32

Precision lives in the ONNX graph and a strongly typed network honours it exactly. TensorRT
releases without `NetworkDefinitionCreationFlag.STRONGLY_TYPED` (8.x) get the older recipe: the
FP32 graph, the FP16 builder flag, and normalization layers pinned to FP32 with
`OBEY_PRECISION_CONSTRAINTS`. TensorRT 11 removed that recipe's flags, and always builds strongly
typed networks (the flag is then accepted and ignored).

The pure-Python parts (profile shapes, sidecar, the verification verdict) are separate functions,
tested without TensorRT; the TensorRT calls are kept in `build_plan` and its helpers. The
verification's tie rule and metric are `vitpose_trt.agreement`'s, the ones the tests and the
benchmark use. The plan and its sidecar are written and verified in a temporary folder beside the
output and renamed into place at the end (`publish_plan`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import onnx
import torch

import vitpose_trt.engines.tensorrt as trt_runtime  # TensorRTEngine looked up on use (the tests replace it)
from build_engine.fp16 import DEFAULT_FP32_SOFTMAX, convert_to_fp16, fp32_ops_for, graph_io_dtypes
from build_engine.quantize import has_qdq, read_quantization
from vitpose_trt._lazy import lazy_module
from vitpose_trt.agreement import QDQ_TOLERANCE, Disagreement, Tolerance, compare_heatmaps
from vitpose_trt.agreement import sample_crops as verification_crops  # the build check's real crops
from vitpose_trt.atomic import atomic_write, writable_target
from vitpose_trt.batching import chunks
from vitpose_trt.checkpoint import load_model
from vitpose_trt.cuda_runtime import default_device, runtime
from vitpose_trt.model_info import ModelInfo, info_from_onnx, load_onnx
from vitpose_trt.engines.onnx_cache import checkpoint_digest, update_digest
from vitpose_trt.engines.onnxruntime import OnnxRuntimeEngine
from vitpose_trt.engines.pytorch import exact_fp32
from vitpose_trt.engines.sidecar import (
    BUILD_DEFAULTS,
    EngineMismatchError,
    PlanRecord,
    make_sidecar,
    sidecar_path,
    write_sidecar,
)
from vitpose_trt.engines.tensorrt import TensorRTUnavailableError, current_platform, require_tensorrt, trt_logger
from vitpose_trt.export import export_onnx, save_onnx
from vitpose_trt.geometry import check_mode
from vitpose_trt.model import warn_random_weights
from vitpose_trt.options import with_options

if TYPE_CHECKING:
    import tensorrt as trt
else:  # TensorRT is optional: imported on first use, looked up at each (test stand-ins)
    trt = lazy_module("tensorrt")

log = logging.getLogger(__name__)

__all__ = [
    "BuildConfig", "EngineVerificationError", "EngineMismatchError", "ProfileShapes",
    "TensorRTUnavailableError", "VERIFY_TOLERANCE", "build_plan", "build_pose", "default_timing_cache_path",
    "judge_verification", "make_sidecar", "onnx_sha256", "profile_shapes", "publish_plan", "strongly_typed_available",
    "verification_crops", "write_sidecar",
]

# The bounds and why they are that size: `vitpose_trt.agreement.Tolerance`. They hold over the keypoints
# the shared tie rule counts on the FP32 model's own heatmaps of real crops: a model with real peaks
# (trained weights, the fixture model) counts most of them; random weights count the quarter to half
# whose argmax is not a near-tie (a tie's argmax flips on any rounding, which says nothing about the
# engine). Measured with ONNX Runtime's FP16 graph on 16-32 real crops, random ViTPose-S/B stay as far
# inside the bounds as the fixture model (0 px, mean score difference 0.0002 of the peak).
VERIFY_TOLERANCE = Tolerance()
VERIFY_MAX_CROPS = 32
TIMING_CACHE_SUFFIX = ".timing.cache"  # model.engine -> model.engine.timing.cache



class EngineVerificationError(RuntimeError):
    """The built engine's keypoints disagree with the FP32 model by more than the tolerance."""


# --------------------------------------------------------------------------------------------
# pure parts: profile, sidecar, metric


@dataclass(frozen=True)
class ProfileShapes:
    """The input shapes of the optimization profile, (B, 3, H, W) each; B counts crops."""

    min: tuple[int, int, int, int]
    opt: tuple[int, int, int, int]
    max: tuple[int, int, int, int]

    @property
    def batch_range(self) -> dict[str, int]:
        return {"min": self.min[0], "opt": self.opt[0], "max": self.max[0]}


def profile_shapes(input_size: Sequence[int], *, min_batch: int = 1, opt_batch: int = BUILD_DEFAULTS["opt_batch"],
                   max_batch: int = BUILD_DEFAULTS["max_batch"],
                   flip_test: bool = False) -> ProfileShapes:
    """The optimization profile over the batch axis.

    Flip test runs each box's crop and its mirror in one batch, so it doubles `opt_batch` and
    `max_batch` (in boxes, they stay what was asked). `opt_batch` is clamped into
    [min_batch, max_batch], so `--max-batch 4` works without also lowering the default 8.

    Raises:
        ValueError: a batch size below 1, or min_batch > max_batch.
    """
    h, w = (int(s) for s in input_size)
    if min(min_batch, opt_batch, max_batch) < 1:
        raise ValueError(f"batch sizes must be >= 1, got min {min_batch}, opt {opt_batch}, max {max_batch}")
    if min_batch > max_batch:
        raise ValueError(f"min_batch {min_batch} is larger than max_batch {max_batch}")
    clamped = min(max(opt_batch, min_batch), max_batch)
    if clamped != opt_batch:
        log.info("opt_batch %d clamped to %d (into [%d, %d])", opt_batch, clamped, min_batch, max_batch)
    factor = 2 if flip_test else 1
    return ProfileShapes((min_batch, 3, h, w), (clamped * factor, 3, h, w), (max_batch * factor, 3, h, w))


def default_timing_cache_path(engine_path: str | os.PathLike[str]) -> Path:
    """`model.engine` -> `model.engine.timing.cache` (kept next to the engine, reused by rebuilds)."""
    path = Path(os.fspath(engine_path))
    return path.with_name(path.name + TIMING_CACHE_SUFFIX)


def onnx_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 of an .onnx file, followed by its external weight files if it has any (sorted by name)."""
    path = Path(os.fspath(path))
    digest = hashlib.sha256()
    update_digest(digest, path)
    model = load_onnx(path, weights=False)
    locations = sorted({entry.value for t in model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL
                        for entry in t.external_data if entry.key == "location"})
    for location in locations:
        update_digest(digest, path.parent / location)
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------
# build


@dataclass(frozen=True)
class BuildConfig:
    """The settings of a build: `vitpose-trt build`'s options, by the same names.

    Attributes:
        fp16: FP16 engine with LayerNorm in FP32 (else FP32, TF32 off). A Q/DQ graph (INT8/FP8)
            always builds with it: what the graph does not quantize runs in FP16.
        max_batch / opt_batch / min_batch: the profile's batch range in boxes (see `profile_shapes`).
        flip_test: the engine will run crops and mirrored crops together (doubles opt and max).
        verify: compare the engine with the FP32 model on real crops; raise beyond tolerance.
        workspace_gb: builder workspace limit in GiB (None: TensorRT's default, the GPU's memory).
        timing_cache: timing cache file (None: `model.engine.timing.cache`, see
            `default_timing_cache_path`); loaded when present, saved after the build, so rebuilds
            skip most kernel timing.
        mode: "udp" or "classic": the pipeline the engine is for (sidecar, verification crops).
        fp32_softmax: also keep Softmax in FP32 (see `build_engine.fp16`).
        detector_format / detector_family: a detector's output format and pre-processing where its
            graph does not tell (see `vitpose_trt.detect`); naming either builds the source as a detector.
    """

    fp16: bool = True
    max_batch: int = BUILD_DEFAULTS["max_batch"]
    opt_batch: int = BUILD_DEFAULTS["opt_batch"]
    min_batch: int = 1
    flip_test: bool = False
    verify: bool = True
    workspace_gb: float | None = None
    timing_cache: str | os.PathLike[str] | None = None
    mode: str = BUILD_DEFAULTS["mode"]
    fp32_softmax: bool = DEFAULT_FP32_SOFTMAX
    detector_format: str = "auto"
    detector_family: str = "auto"

    # The options of the pose model's engine only (a detector's takes one image, batch 1), and the
    # ones its sidecar records for `rebuild_command`.
    POSE_ONLY: ClassVar[tuple[str, ...]] = ("max_batch", "opt_batch", "min_batch", "flip_test", "mode", "fp32_softmax")
    RECORDED: ClassVar[tuple[str, ...]] = ("fp16", "max_batch", "opt_batch", "min_batch", "flip_test", "mode",
                                           "fp32_softmax", "workspace_gb")

    def pose_options_given(self) -> list[str]:
        """The pose-only options set away from their defaults, in `POSE_ONLY`'s order."""
        default = BuildConfig()
        return [k for k in self.POSE_ONLY if getattr(self, k) != getattr(default, k)]

    def timing_cache_path(self, output: Path) -> Path:
        """`timing_cache`, or the default one beside `output`."""
        if self.timing_cache is None:
            return default_timing_cache_path(output)
        return Path(os.fspath(self.timing_cache))

    def build_args(self) -> dict[str, Any]:
        """What the pose model's sidecar records as "build_args"."""
        return {k: getattr(self, k) for k in self.RECORDED}


def publish_plan(staged: Path, output: Path) -> Path:
    """Move a plan and its sidecar, written and verified in the build's temporary folder beside
    `output` (so on the same file system), onto `output`: one rename each, the plan first. Until
    then nothing of the build is at `output`, so a failed build or verification writes nothing there.
    """
    os.replace(staged, output)
    os.replace(sidecar_path(staged), sidecar_path(output))
    log.info("wrote %s (%.1f MB) and its sidecar", output, output.stat().st_size / 1e6)
    return output


@dataclass
class _Source:
    onnx_path: Path
    info: ModelInfo
    reference: Callable[[np.ndarray], np.ndarray]  # FP32 heatmaps for crops
    reference_name: str
    given: str | None  # the source path as given (None: random weights or an in-memory model)
    precision: str = "fp32"  # "int8" / "fp8": a Q/DQ graph (`vitpose-trt quantize`)
    quantization: dict | None = None  # its recipe and calibration (the ONNX metadata)
    tolerance: Tolerance = VERIFY_TOLERANCE  # what the built engine is judged by against `reference`


def build_pose(source: str | os.PathLike[str] | torch.nn.Module | None, output: str | os.PathLike[str],
          config: BuildConfig | None = None, **options: Any) -> Path:
    """Build a pose model's TensorRT engine and its sidecar (`build_engine.build` sends a person
    detector's .onnx to `detector_build.build_detector` instead).

    Both are written and verified in a temporary folder beside `output`, and renamed into place
    at the end (`publish_plan`): a build that fails, verification included, writes nothing to
    `output` (a plan already there stays as it was).

    Args:
        source: a checkpoint (exported to ONNX first, into that temporary folder), an FP32 .onnx
            from `vitpose-trt export`, a Q/DQ .onnx from `vitpose-trt quantize`, an nn.Module, or
            None (random-weight ViTPose-B, for benchmarks).
        output: the plan path, e.g. "model.engine"; the sidecar goes to "model.engine.json".
        config: the settings (default `BuildConfig()`).
        **options: `BuildConfig` fields by name, replacing `config`'s (`build_pose(src, out, max_batch=4)`).

    Returns:
        The plan path.

    Raises:
        TensorRTUnavailableError: TensorRT is not installed (one line saying how to install it).
        TypeError: an option that is no `BuildConfig` field.
        ValueError: bad batch sizes, or a source that is not an FP32 ViTPose ONNX/checkpoint.
        RuntimeError: TensorRT failed to parse or build (its errors are logged and quoted).
        EngineVerificationError: the engine disagrees with the FP32 model (nothing written to `output`).
    """
    config = with_options(BuildConfig, config, options)
    require_tensorrt()  # before the minutes of export, with the one-line install hint
    check_mode(config.mode)
    output = Path(os.fspath(output))
    output.parent.mkdir(parents=True, exist_ok=True)
    writable_target(output)
    with tempfile.TemporaryDirectory(prefix=".vitpose-trt-build-", dir=output.parent) as tmp:
        src = _resolve_source(source, Path(tmp))
        staged = _build_pose(src, Path(tmp), config, output)
        publish_plan(staged, output)
    if src.info.random_weights:
        warn_random_weights(f"{output} was built from RANDOM weights (not a trained model)")
    return output


def _build_pose(src: _Source, tmp: Path, config: BuildConfig, output: Path) -> Path:
    """Build `src` into a plan and its sidecar in the build's temporary folder `tmp`, verify it there
    when `config.verify`, and return the plan's path there (`output`: the final path, for the messages
    and the default timing cache)."""
    staged = tmp / "plan" / output.name  # a folder of its own: no clash with the graphs in `tmp`
    staged.parent.mkdir()
    quantized = src.precision in ("int8", "fp8")
    if quantized:  # what the graph does not quantize runs in FP16, as the recipe says
        config = replace(config, fp16=True)
        _check_fp8_gpu(src.precision)
    elif not config.fp16:
        log.warning("building an FP32 engine (fp16=True, the CLI's --fp16, builds the fast one)")
    profile = profile_shapes(src.info.input_size, min_batch=config.min_batch, opt_batch=config.opt_batch,
                             max_batch=config.max_batch, flip_test=config.flip_test)
    strongly_typed = strongly_typed_available()
    network_onnx, fp32_ops = _network_graph(src, config, strongly_typed, tmp)
    plan, tensors = build_plan(network_onnx, profile, fp16=config.fp16, strongly_typed=strongly_typed,
                               fp32_ops=fp32_ops, workspace_gb=config.workspace_gb,
                               timing_cache=config.timing_cache_path(output), half_input=True)
    record = PlanRecord(profile, src.precision if quantized else ("fp16" if config.fp16 else "fp32"), fp32_ops,
                        strongly_typed, current_platform(), src.given, onnx_sha256(src.onnx_path), config.build_args())
    io = {"input": tensors["inputs"][0], "output": tensors["outputs"][0]}  # one each: `_resolve_source`
    sidecar = make_sidecar(record, model=src.info, mode=config.mode, flip_test=config.flip_test, io=io)
    if src.quantization is not None:
        sidecar["quantization"] = src.quantization
    atomic_write(staged, plan)
    write_sidecar(staged, sidecar)  # beside the plan: the engine opened for verification reads it
    if config.verify:
        sidecar["verification"] = _verify(staged, src, mode=config.mode, flip_test=config.flip_test,
                                          name=str(output))
        write_sidecar(staged, sidecar)
    return staged


def strongly_typed_available() -> bool:
    """Whether this TensorRT builds strongly typed networks (10.x and later; 8.x does not)."""
    return hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED")


def _network_graph(src: _Source, config: BuildConfig, strongly_typed: bool, tmp: Path) -> tuple[Path, tuple[str, ...]]:
    """The graph TensorRT parses and the op types kept in FP32: with FP16 on a strongly typed
    TensorRT, the FP16 graph (`convert_to_fp16`, saved into `tmp`); else the FP32 graph itself."""
    if not config.fp16:
        return src.onnx_path, ()
    fp32_ops = fp32_ops_for(config.fp32_softmax)
    if not strongly_typed:
        log.warning("TensorRT %s has no strongly typed networks: using the FP16 builder flag with "
                    "normalization layers pinned to FP32 (upgrade to TensorRT >= 10 for the exact recipe)",
                    trt.__version__)
        return src.onnx_path, fp32_ops
    graph = convert_to_fp16(src.onnx_path, fp32_softmax=config.fp32_softmax)
    return save_onnx(graph.model, tmp / "model.fp16.onnx"), fp32_ops


def _resolve_source(source: str | os.PathLike[str] | torch.nn.Module | None, tmp: Path) -> _Source:
    """The FP32 ONNX to build from, what it is, and the FP32 reference to verify against.

    A checkpoint/module's reference is the PyTorch model itself; an .onnx file's is ONNX Runtime
    on that FP32 graph (which `vitpose-trt export` already checked against PyTorch to 1e-4).
    """
    if isinstance(source, (str, os.PathLike)) and Path(os.fspath(source)).suffix.lower() == ".onnx":
        path = Path(os.fspath(source))
        if not path.is_file():
            raise FileNotFoundError(f"ONNX model not found: {path}")
        proto = load_onnx(path, weights=False)
        info = _info_from_onnx(proto, path)
        if has_qdq(proto):
            return _quantized_source(path, proto, info)
        return _Source(path, info, _onnxruntime_reference(path), "ONNX Runtime FP32", os.fspath(path))

    if isinstance(source, torch.nn.Module):
        model, given = source, None
    else:
        given = None if source is None else os.fspath(source)
        model = load_model(given)
    model = model.eval().float()
    info = ModelInfo.of_model(model)
    exported: Any = export_onnx(model, tmp / "model.onnx", opset=17, dynamic_batch=True)
    onnx_path = Path(getattr(exported, "path", exported))  # an ExportResult (or a plain Path)
    return _Source(onnx_path, info, _torch_reference(model), "PyTorch FP32", given)


def _quantized_source(path: Path, proto: onnx.ModelProto, info: ModelInfo) -> _Source:
    """A Q/DQ graph: judged against its FP32 source when that is still where `vitpose-trt quantize`
    found it (the quantization error and the engine's together, by `QDQ_TOLERANCE`), else against
    the Q/DQ graph itself run by ONNX Runtime (the engine's own error; the quantization error was
    judged when the graph was made)."""
    quant = read_quantization(proto) or {}
    precision = info.precision
    if precision not in ("int8", "fp8"):  # a Q/DQ graph from elsewhere: its zero points tell
        zero = {t.name: t.data_type for t in proto.graph.initializer}
        fp8 = any(zero.get(n.input[2]) == onnx.TensorProto.FLOAT8E4M3FN for n in proto.graph.node
                  if n.op_type == "QuantizeLinear" and len(n.input) > 2)
        precision = "fp8" if fp8 else "int8"
    summary = {k: quant[k] for k in ("recipe", "calibration", "weights", "source") if k in quant}
    recorded = quant.get("source") or {}
    original = Path(recorded["path"]) if recorded.get("path") else None
    if original is not None and original.exists() and checkpoint_digest(original) == recorded.get("digest"):
        if original.suffix.lower() == ".onnx":
            reference, name = _onnxruntime_reference(original), f"ONNX Runtime FP32 ({original.name})"
        else:
            reference, name = _torch_reference(load_model(original).eval().float()), f"PyTorch FP32 ({original.name})"
        return _Source(path, info, reference, name, os.fspath(path), precision, summary, QDQ_TOLERANCE)
    log.warning("%s: its FP32 source %s is not here (or changed): the engine is judged against the %s graph itself "
                "in ONNX Runtime; the quantization error was judged by `vitpose-trt quantize`", path,
                original or "(not recorded)", precision)
    return _Source(path, info, _onnxruntime_reference(path), f"ONNX Runtime, the {precision} Q/DQ graph",
                   os.fspath(path), precision, summary, QDQ_TOLERANCE)


def _check_fp8_gpu(precision: str) -> None:
    """FP8 tensor cores exist from compute capability 8.9 (Ada) and 9.0 (Hopper) on."""
    if precision != "fp8":
        return
    capability = current_platform().compute_capability
    if capability is not None and tuple(int(v) for v in capability.split(".")) < (8, 9):
        raise ValueError(f"an FP8 engine needs an Ada (8.9) or Hopper (9.0) or newer GPU; this one is {capability}: "
                         "quantize with mode='int8' (the CLI's --mode int8)")


def _info_from_onnx(proto: onnx.ModelProto, path: Path) -> ModelInfo:
    """`model_info.info_from_onnx`, after checking the graph is one TensorRT can build from."""
    if any(n.op_type in ("DynamicQuantizeLinear", "MatMulInteger", "ConvInteger") for n in proto.graph.node):
        raise ValueError(f"{path} is quantized for ONNX Runtime on the CPU (dynamic INT8), which TensorRT cannot "
                         "build; for an INT8/FP8 engine make a Q/DQ graph: `vitpose-trt quantize`")
    io = graph_io_dtypes(proto)
    if io["input"]["dtype"] != "float32" or io["output"]["dtype"] != "float32":
        raise ValueError(f"{path}: expected the FP32 ONNX from `vitpose-trt export`, got {io}; the builder makes "
                         "the FP16 graph itself")
    dims = [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    out_dims = [d.dim_value for d in proto.graph.output[0].type.tensor_type.shape.dim]
    if len(dims) != 4 or not dims[2] or not dims[3] or len(out_dims) != 4 or not out_dims[1]:
        raise ValueError(f"{path}: expected a static (N, 3, H, W) -> (N, K, h, w) graph, got {dims} -> {out_dims}")
    # the graph's own shapes, not its metadata, size the profile: a resized graph must still build
    return replace(info_from_onnx(proto, path), num_keypoints=int(out_dims[1]), input_size=(int(dims[2]), int(dims[3])))


def _torch_reference(model: torch.nn.Module) -> Callable[[np.ndarray], np.ndarray]:
    def run(crops: np.ndarray) -> np.ndarray:
        # FP32 for real (no TF32), on the GPU when there is one (the runtime's device: cuda:N)
        device = runtime().device(None) if default_device() == "cuda" else torch.device("cpu")
        try:
            m = model.to(device)
            with exact_fp32(), torch.inference_mode():
                out = [m(torch.from_numpy(crops[lo:hi]).to(device)).float().cpu().numpy()
                       for lo, hi in chunks(len(crops), 8)]
        finally:
            model.cpu()
        return np.concatenate(out)

    return run


def _onnxruntime_reference(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    def run(crops: np.ndarray) -> np.ndarray:
        return OnnxRuntimeEngine(path).run(crops)

    return run


def _verify(engine_path: Path, src: _Source, *, mode: str, flip_test: bool, name: str | None = None) -> dict[str, Any]:
    """Engine vs the FP32 reference on real crops; raises EngineVerificationError past tolerance
    (and removes the engine and its sidecar). `name`: the engine in the messages (default its path)."""
    engine = trt_runtime.TensorRTEngine(engine_path)
    crops, where = verification_crops(engine.input_size, mode, flip_test=flip_test,
                                      max_crops=min(VERIFY_MAX_CROPS, engine.max_batch or VERIFY_MAX_CROPS))
    candidate = engine.run(crops)
    engine.close()
    reference = src.reference(crops)
    try:
        return judge_verification(reference, candidate, mode, crops=where, reference_name=src.reference_name,
                                  random_weights=src.info.random_weights, engine_name=name or str(engine_path),
                                  tolerance=src.tolerance)
    except EngineVerificationError as e:
        for path in (engine_path, sidecar_path(engine_path)):
            path.unlink(missing_ok=True)
        raise EngineVerificationError(f"{e} (the engine and its sidecar were removed)") from None


def judge_verification(reference: np.ndarray, candidate: np.ndarray, mode: str = "udp", *, crops: str = "",
                       reference_name: str = "the FP32 model", random_weights: bool = False,
                       engine_name: str = "the engine", tolerance: Tolerance = VERIFY_TOLERANCE) -> dict[str, Any]:
    """The build-time verdict: the candidate's heatmaps against the FP32 reference's on the same crops.

    Keypoints are decoded from both (argmax + DARK-UDP / classic offset, in heatmap pixels) and
    compared over those the shared tie rule counts on the reference (`vitpose_trt.agreement`).

    Args:
        reference: (N, K, h, w) FP32 heatmaps of the model being built.
        candidate: (N, K, h, w) the engine's heatmaps.
        mode: "udp" or "classic".
        crops: where the crops came from (for the log and the sidecar).
        reference_name: what produced `reference`.
        random_weights: the model has random weights (recorded; the tie rule already limits the
            judged keypoints to those with a clear peak).
        engine_name: named in the error.
        tolerance: the bounds (`VERIFY_TOLERANCE` for FP16/FP32 engines, `QDQ_TOLERANCE` for INT8/FP8).

    Returns:
        The sidecar's "verification" entry: the metric, the tolerance and whether it was enforced.

    Raises:
        EngineVerificationError: past tolerance; the message says by how much and what to try.
    """
    d: Disagreement = compare_heatmaps(reference, candidate, mode, fraction=tolerance.fraction)
    log.info("verification on %s against %s: %d of %d keypoints have a clear peak; over them: mean %.3f, p99 %.3f, "
             "max %.2f heatmap px, mean score difference %.4f of the peak; max |heatmap diff| %.3g",
             crops or "the given crops", reference_name, d.counted, d.keypoints, d.heatmap_px.mean,
             d.heatmap_px.p99, d.heatmap_px.max, d.score.mean, d.max_abs)
    result: dict[str, Any] = {"crops": crops, "reference": reference_name, "metric": d.as_dict(),
                              "tolerance": vars(tolerance).copy(),
                              "random_weights": random_weights}
    if d.counted < tolerance.min_counted:
        log.warning("verification: no keypoint of %s has a clear peak (synthetic crops?); the engine was not "
                    "judged", crops or "the given crops")
        result["enforced"] = False
        return result
    result["enforced"] = True
    problems = tolerance.violations(d)
    if problems:
        raise EngineVerificationError(
            f"{engine_name} disagrees with {reference_name} over {d.counted} clearly peaked keypoints: "
            f"{'; '.join(problems)}. Try fp32_softmax=True (the CLI's --fp32-softmax), or build with verify=False "
            "(the CLI's --no-verify) to keep it anyway")
    return result


def build_plan(onnx_path: Path, profile: ProfileShapes, *, fp16: bool, strongly_typed: bool,
               fp32_ops: Sequence[str], workspace_gb: float | None, timing_cache: Path, half_input: bool,
               ) -> tuple[bytes, dict[str, list[dict[str, str]]]]:
    """The TensorRT part, for the pose model and the detector alike: parse, configure, build.

    Args:
        onnx_path: the graph (strongly typed TensorRT: the FP16 graph already made).
        profile: the optimization profile of the graph's one input.
        fp16 / strongly_typed / fp32_ops: the precision recipe (see the module docstring).
        workspace_gb / timing_cache: as in `BuildConfig` (`timing_cache` resolved to a file).
        half_input: TensorRT 8.x's weakly typed FP16 only: make the input FP16 as the pose model's
            strongly typed graph has it (a detector keeps its FP32 input).

    Returns:
        (plan bytes, {"inputs": [{"name", "dtype"}], "outputs": [{"name", "dtype"}, ...]}).
    """
    logger = trt_logger()
    builder = trt.Builder(logger)
    network, parser = _parse_network(builder, logger, onnx_path, strongly_typed)  # the parser owns the weights
    inp = network.get_input(0)
    outs = [network.get_output(i) for i in range(network.num_outputs)]

    config = builder.create_builder_config()
    if workspace_gb is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    _set_precision(network, config, fp16=fp16, strongly_typed=strongly_typed, fp32_ops=fp32_ops,
                   half_input=half_input)
    opt_profile = builder.create_optimization_profile()
    opt_profile.set_shape(inp.name, trt.Dims(list(profile.min)), trt.Dims(list(profile.opt)),
                          trt.Dims(list(profile.max)))
    config.add_optimization_profile(opt_profile)

    _load_timing_cache(config, timing_cache)
    log.info("building the TensorRT engine (%s, batch %s): this takes minutes the first time",
             "fp16" if fp16 else "fp32", profile.batch_range)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path.name}; see the TensorRT errors logged")
    plan = bytes(memoryview(serialized))
    # the config's cache gained this build's timings: keep them for the next build
    atomic_write(timing_cache, bytes(memoryview(config.get_timing_cache().serialize())))
    log.info("timing cache saved to %s", timing_cache)
    io = {"inputs": [{"name": inp.name, "dtype": _dtype_name(inp.dtype)}],
          "outputs": [{"name": out.name, "dtype": _dtype_name(out.dtype)} for out in outs]}
    return plan, io


def _parse_network(builder: trt.Builder, logger: trt.ILogger, onnx_path: Path,
                   strongly_typed: bool) -> tuple[trt.INetworkDefinition, trt.OnnxParser]:
    """The network parsed from `onnx_path`, and its parser (keep it until the build: it owns the weights).

    Raises:
        RuntimeError: TensorRT could not parse the graph (its errors quoted).
        ValueError: not one input and at least one output.
    """
    flags = 0
    if strongly_typed:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    elif hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH"):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)  # TensorRT 8.x needs it for ONNX
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(os.fspath(onnx_path)):  # from file: finds external weight data beside it
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path.name}: {errors}")
    if network.num_inputs != 1 or network.num_outputs < 1:
        raise ValueError(f"expected one input and at least one output, got {network.num_inputs} and "
                         f"{network.num_outputs}")
    return network, parser


def _set_precision(network: trt.INetworkDefinition, config: trt.IBuilderConfig, *, fp16: bool,
                   strongly_typed: bool, fp32_ops: Sequence[str], half_input: bool) -> None:
    """The precision recipe's builder side (see `build_plan`); a strongly typed network's FP16 is in its graph."""
    if fp16 and not strongly_typed:  # TensorRT 8.x ONLY: 10.x/11.x build strongly typed networks
        _pin_fp32_layers(network, config, fp32_ops)
        # the same I/O as the strongly typed engine: FP16 crops in, FP32 heatmaps / boxes out
        if half_input:
            network.get_input(0).dtype = trt.DataType.HALF
        for out in (network.get_output(i) for i in range(network.num_outputs)):
            if out.dtype == trt.DataType.HALF:
                out.dtype = trt.DataType.FLOAT
    if not fp16 and hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)  # an "fp32" engine is the accuracy reference: real FP32


def _pin_fp32_layers(network: trt.INetworkDefinition, config: trt.IBuilderConfig, fp32_ops: Sequence[str]) -> None:
    """TensorRT 8.x ONLY (no strongly typed networks there): the weakly typed recipe, FP16 builder flag
    with normalization (and softmax) layers forced to FP32. TensorRT 11 removed these flags
    (`BuilderFlag.FP16` is gone), which is why the strongly typed path is taken wherever it exists."""
    # getattr: LayerType.NORMALIZATION only exists from TensorRT 8.6 (older parsers split LayerNorm up)
    wanted = {"LayerNormalization": getattr(trt.LayerType, "NORMALIZATION", None), "Softmax": trt.LayerType.SOFTMAX}
    types = [wanted[op] for op in fp32_ops if wanted.get(op) is not None]
    config.set_flag(trt.BuilderFlag.FP16)
    config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)  # a hint TensorRT may ignore is no fix
    pinned = 0
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if any(layer.type == t for t in types):
            layer.precision = trt.DataType.FLOAT
            for j in range(layer.num_outputs):
                layer.set_output_type(j, trt.DataType.FLOAT)
            pinned += 1
    if pinned == 0 and "LayerNormalization" in fp32_ops:
        log.warning("this TensorRT parsed LayerNormalization into elementwise layers (TensorRT < 8.6): they could "
                    "not be pinned to FP32 and may overflow in FP16")
    log.info("pinned %d layers to FP32 (%s)", pinned, ", ".join(fp32_ops))


def _load_timing_cache(config: trt.IBuilderConfig, path: Path) -> trt.ITimingCache:
    """Attach the timing cache at `path` (or a new one) to `config` and return it."""
    data = path.read_bytes() if path.is_file() else b""
    cache: trt.ITimingCache | None
    try:
        cache = config.create_timing_cache(data)
    except RuntimeError:  # a damaged file: some versions raise, others return None
        cache = None
    if cache is not None and config.set_timing_cache(cache, ignore_mismatch=False):
        if data:
            log.info("using the timing cache %s", path)
        return cache
    # Made by another TensorRT version or GPU, or damaged: start afresh (it is overwritten after).
    log.warning("timing cache %s does not fit this TensorRT/GPU; starting a new one", path)
    cache = config.create_timing_cache(b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    return cache


def _dtype_name(dtype: trt.DataType) -> str:
    # getattr: BF16 is new in TensorRT 9, and the 8.x fallback path must not fail on reading it
    for trt_type, name in ((trt.DataType.FLOAT, "float32"), (trt.DataType.HALF, "float16"),
                           (getattr(trt.DataType, "BF16", None), "bfloat16"), (trt.DataType.INT32, "int32"),
                           (getattr(trt.DataType, "INT64", None), "int64"), (trt.DataType.BOOL, "bool")):
        if trt_type is not None and dtype == trt_type:
            return name
    return str(dtype)
