"""Build a TensorRT engine for a person detector: `vitpose-trt build det.onnx -o det.engine --fp16`.

    det.onnx --read as `Detector` reads it (format, family, input size)--> FP32 graph
        --fp16.convert_detector_to_fp16--> FP16 graph (FP32 image in, FP32 boxes out; NMS, Resize in FP32)
        --tensorrt_build.build_plan, the pose model's builder--> plan: one profile, batch 1 at the input size
        --> sidecar (kind "detector": format, family, input size)
        --> verification: the engine's boxes against ONNX Runtime's on the FP32 graph, on real photos

A detector is recognised by what it is not and what it has: no ViTPose metadata (what `vitpose-trt
export` writes), and outputs in a format `vitpose_trt.detect.detect_format` knows (or a format or
family named by the caller). The input size comes from the graph, or for a graph with a dynamic input
from Ultralytics' recorded `imgsz` (`Detector`'s rule), and is fixed in the plan.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import onnx

from build_engine.fp16 import FP32_OPS, convert_detector_to_fp16
from build_engine.tensorrt_build import (
    BuildConfig,
    EngineVerificationError,
    ProfileShapes,
    build_plan,
    onnx_sha256,
    publish_plan,
    strongly_typed_available,
)
from vitpose_trt.agreement import BOX_TOLERANCE, BoxTolerance, compare_detections, sample_frames
from vitpose_trt.atomic import atomic_write, writable_target
from vitpose_trt.detect import Detector, detect_format
from vitpose_trt.engines.sidecar import PlanRecord, make_detector_sidecar, sidecar_path, write_sidecar
from vitpose_trt.engines.tensorrt import current_platform, require_tensorrt
from vitpose_trt.model_info import META_NUM_KEYPOINTS, META_VARIANT, load_onnx
from vitpose_trt.export import save_onnx
from vitpose_trt.options import with_options

if TYPE_CHECKING:
    import numpy as np
    import torch

log = logging.getLogger(__name__)

__all__ = ["VERIFY_SCORE_THR", "build_detector", "is_detector_graph", "is_detector_source", "judge_detections"]

# Both detectors run at this threshold in the verification: below the tolerance's judging floor
# (BoxTolerance.min_score), so a judged box near the floor still finds its counterpart.
VERIFY_SCORE_THR = 0.1


def is_detector_graph(path: str | os.PathLike[str]) -> bool:
    """True for an .onnx that is a person detector: no ViTPose metadata, and outputs in a known format."""
    proto = load_onnx(path, weights=False)
    if {p.key for p in proto.metadata_props} & {META_NUM_KEYPOINTS, META_VARIANT}:
        return False  # `vitpose-trt export` wrote it: a pose model
    def dims(value: onnx.ValueInfoProto) -> tuple[int | None, ...]:
        return tuple(d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim)

    try:
        detect_format([(o.name, dims(o)) for o in proto.graph.output])
    except ValueError:
        return False
    return True


def is_detector_source(source: str | os.PathLike[str] | torch.nn.Module | None, format: str = "auto",
                       family: str = "auto") -> bool:
    """Whether `build` builds `source` as a person detector: an .onnx that `is_detector_graph`, or any
    .onnx when the caller names its format or family.

    Raises:
        ValueError: a format or family named for a source that is no .onnx file.
    """
    named = format != "auto" or family != "auto"
    onnx_file = isinstance(source, (str, os.PathLike)) and Path(os.fspath(source)).suffix.lower() == ".onnx"
    if named and not onnx_file:
        raise ValueError(f"a detector format or family names a detector's .onnx; {source!r} is not one")
    if not onnx_file or not Path(os.fspath(source)).is_file():  # type: ignore[arg-type]
        return False
    return named or is_detector_graph(source)  # type: ignore[arg-type]


def build_detector(source: str | os.PathLike[str], output: str | os.PathLike[str], config: BuildConfig | None = None,
                   *, input_size: tuple[int, int] | None = None, tolerance: BoxTolerance = BOX_TOLERANCE,
                   **options: Any) -> Path:
    """Build a person detector's TensorRT engine and its sidecar (`build` calls this for a detector).

    As `build`, both are written and verified in a temporary folder beside `output` and renamed
    into place at the end: a failed build or verification writes nothing to `output`.

    Args:
        source: the detector's FP32 .onnx.
        output: the plan path, e.g. "det.engine"; the sidecar goes to "det.engine.json".
        config: the build's settings (`tensorrt_build.BuildConfig`); a detector reads `fp16` (the
            FP16 graph, `convert_detector_to_fp16`, else FP32), `verify` (the engine's boxes against
            ONNX Runtime's on the FP32 graph on the COCO sample photos, judged by `tolerance`),
            `workspace_gb`, `timing_cache`, and `detector_format` / `detector_family` (`Detector`'s
            format and family, default "auto": told from the graph; recorded in the sidecar).
        input_size: (height, width) for a graph with a dynamic input (default: its recorded
            `imgsz`, else 640x640); the plan is fixed to it.
        tolerance: the verification's bounds.
        **options: `BuildConfig` fields by name, replacing `config`'s.

    Raises:
        TensorRTUnavailableError: TensorRT is not installed.
        ValueError: not a detector graph `Detector` can read (named).
        RuntimeError: TensorRT failed to parse or build.
        EngineVerificationError: the engine's boxes disagree with ONNX Runtime's (nothing written to `output`).
    """
    config = with_options(BuildConfig, config, options)
    require_tensorrt()
    source, output = Path(os.fspath(source)), Path(os.fspath(output))
    reference = Detector(source, format=config.detector_format, family=config.detector_family, input_size=input_size,
                         score_thr=VERIFY_SCORE_THR, providers=["CPUExecutionProvider"])
    build_args = {"fp16": config.fp16, "format": config.detector_format, "family": config.detector_family,
                  "input_size": list(input_size) if input_size else None, "workspace_gb": config.workspace_gb}
    try:
        return _build(source, output, reference, config, build_args, tolerance)
    finally:
        reference.close()


def _build(source: Path, output: Path, reference: Detector, config: BuildConfig, build_args: dict[str, Any],
           tolerance: BoxTolerance) -> Path:
    h, w = reference.input_size
    shape = (1, 3, h, w)
    profile = ProfileShapes(shape, shape, shape)
    output.parent.mkdir(parents=True, exist_ok=True)
    writable_target(output)
    strongly_typed = strongly_typed_available()
    with tempfile.TemporaryDirectory(prefix=".vitpose-trt-build-", dir=output.parent) as tmp:
        staged = Path(tmp) / "plan" / output.name  # a folder of its own: no clash with the graphs
        staged.parent.mkdir()
        network_onnx, fp32_ops = _network_graph(source, config.fp16, strongly_typed, Path(tmp))
        log.info("detector %s: format %s, %s pre-processing, input %dx%d", source.name, reference.format,
                 reference.family, w, h)
        plan, io = build_plan(network_onnx, profile, fp16=config.fp16, strongly_typed=strongly_typed,
                              fp32_ops=fp32_ops, workspace_gb=config.workspace_gb,
                              timing_cache=config.timing_cache_path(output), half_input=False)
        record = PlanRecord(profile, "fp16" if config.fp16 else "fp32", fp32_ops, strongly_typed, current_platform(),
                            os.fspath(source), onnx_sha256(source), build_args)
        sidecar = make_detector_sidecar(record, detector={"format": reference.format, "family": reference.family,
                                                          "input_size": [h, w]},
                                        io=io, source_metadata=reference.graph.metadata)
        atomic_write(staged, plan)
        write_sidecar(staged, sidecar)  # beside the plan: the `Detector` that verifies it reads it
        if config.verify:
            sidecar["verification"] = _verify(staged, reference, tolerance, name=str(output))
            write_sidecar(staged, sidecar)
        publish_plan(staged, output)
    return output


def _network_graph(source: Path, fp16: bool, strongly_typed: bool, tmp: Path) -> tuple[Path, tuple[str, ...]]:
    """The graph TensorRT parses and the op types kept in FP32: with FP16 on a strongly typed
    TensorRT, the FP16 graph (`convert_detector_to_fp16`, saved into `tmp`); else `source` itself."""
    if not fp16:
        log.warning("building an FP32 detector engine (fp16=True, the CLI's --fp16, builds the fast one)")
        return source, ()
    if not strongly_typed:
        return source, FP32_OPS
    return save_onnx(convert_detector_to_fp16(source).model, tmp / "detector.fp16.onnx"), FP32_OPS


def _verify(engine_path: Path, reference: Detector, tolerance: BoxTolerance, *,
            name: str | None = None) -> dict[str, Any]:
    """The engine's boxes against `reference`'s (ONNX Runtime, FP32 graph) on the COCO sample photos;
    raises EngineVerificationError past tolerance, after removing the engine and its sidecar.
    `name`: the engine in the messages (default its path)."""
    frames, photos = sample_frames()
    if not frames:
        log.warning("detector verification skipped: %s; the engine was not judged", photos)
        return {"photos": photos, "enforced": False}
    candidate = Detector(engine_path, score_thr=reference.score_thr, nms_thr=reference.nms_thr,
                         person_class=reference.person_class, max_boxes=reference.max_boxes)
    try:
        want, got = [reference(f) for f in frames], [candidate(f) for f in frames]
    finally:
        candidate.close()
    try:
        return judge_detections(want, got, photos=photos, reference_name=f"ONNX Runtime FP32 ({reference.path.name})",
                                engine_name=name or str(engine_path), tolerance=tolerance)
    except EngineVerificationError as e:
        for path in (engine_path, sidecar_path(engine_path)):
            path.unlink(missing_ok=True)
        raise EngineVerificationError(f"{e} (the engine and its sidecar were removed)") from None


def judge_detections(reference: list[np.ndarray], candidate: list[np.ndarray], *, photos: str = "",
                     reference_name: str = "the FP32 graph", engine_name: str = "the engine",
                     tolerance: BoxTolerance = BOX_TOLERANCE) -> dict[str, Any]:
    """The detector's build-time verdict: the engine's boxes against the reference's, per photo.

    Args:
        reference / candidate: one (M, 5) x1, y1, x2, y2, score array per photo.
        photos: where the photos came from (for the log and the sidecar).
        reference_name / engine_name: named in the log and the error.
        tolerance: the bounds (`vitpose_trt.agreement.BoxTolerance`, written next to why).

    Returns:
        The sidecar's "verification" entry: the metric, the tolerance and whether it was enforced.

    Raises:
        EngineVerificationError: past tolerance; the message says by how much.
    """
    d = compare_detections(reference, candidate, tolerance)
    log.info("detector verification on %s against %s: %d boxes judged (score >= %.2f), %d disagree; worst IoU "
             "%.3f, mean %.4f; largest score difference %.4f", photos or "the given photos", reference_name,
             d.judged, tolerance.min_score, d.disagree, d.min_iou, d.mean_iou, d.max_score_diff)
    result: dict[str, Any] = {"photos": photos, "reference": reference_name, "metric": d.as_dict(),
                              "tolerance": vars(tolerance).copy(), "enforced": d.judged > 0}
    if d.judged == 0:
        log.warning("detector verification: no box scored %.2f or more on %s (untrained weights?); the engine was "
                    "not judged", tolerance.min_score, photos or "the given photos")
        return result
    problems = tolerance.violations(d)
    if problems:
        raise EngineVerificationError(f"{engine_name} disagrees with {reference_name} on {photos or 'the photos'}: "
                                      f"{'; '.join(problems)}. Build with verify=False (the CLI's --no-verify) to keep "
                                      "it anyway")
    return result
