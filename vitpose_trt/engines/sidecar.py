"""The TensorRT sidecar: `model.engine.json`, what a plan was built from and for.

One home for its schema: `build_engine` writes it (`make_sidecar`, `write_sidecar`), the runtime
reads it (`read_sidecar`, `check_compatibility`) and both quote the same build defaults. Pure
Python: testable without TensorRT or a GPU.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import vitpose_trt
from vitpose_trt.atomic import atomic_write

log = logging.getLogger(__name__)

SIDECAR_FORMAT = 1
SIDECAR_SUFFIX = ".json"  # model.engine -> model.engine.json
# `vitpose-trt build`'s defaults: most boxes per engine call, the batch TensorRT tunes for, the pipeline.
BUILD_DEFAULTS: dict[str, Any] = {"max_batch": 64, "opt_batch": 8, "mode": "udp"}
# What a plan holds (the sidecar's "kind"; a sidecar without one is a pose model's, as every plan was
# before detectors were built): a ViTPose (crops -> heatmaps) or a person detector (image -> boxes).
KIND_POSE, KIND_DETECTOR = "pose", "detector"
KINDS = (KIND_POSE, KIND_DETECTOR)
# A detector sidecar's "detector" entry: how `Detector` reads the plan (detect.py's names and values).
DETECTOR_KEYS = ("format", "family", "input_size")


class EngineMismatchError(RuntimeError):
    """The engine was built for another TensorRT version or GPU, or TensorRT could not load it."""


@dataclass(frozen=True)
class Platform:
    """What a plan is tied to: the TensorRT version and the GPU.

    Attributes:
        tensorrt_version: `tensorrt.__version__`, e.g. "10.13.0.35".
        gpu_name: e.g. "NVIDIA H100 80GB HBM3" (None: unknown).
        compute_capability: "major.minor", e.g. "9.0" (None: unknown).
    """

    tensorrt_version: str
    gpu_name: str | None = None
    compute_capability: str | None = None


def sidecar_path(engine_path: str | os.PathLike[str]) -> Path:
    """`model.engine` -> `model.engine.json`."""
    path = Path(os.fspath(engine_path))
    return path.with_name(path.name + SIDECAR_SUFFIX)


def read_sidecar(engine_path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The engine's sidecar as a dict, or None when there is none.

    Raises:
        ValueError: the sidecar exists but is not a JSON object.
    """
    path = sidecar_path(engine_path)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e}); delete it and rebuild the engine") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def sidecar_kind(sidecar: Mapping[str, Any] | None) -> str:
    """What the plan holds: KIND_POSE or KIND_DETECTOR (a sidecar without "kind" is a pose model's)."""
    return str((sidecar or {}).get("kind") or KIND_POSE)


def check_kind(sidecar: Mapping[str, Any], kind: str, engine_path: str | os.PathLike[str] = "model.engine") -> None:
    """Refuse a plan of the other kind (a detector given as the pose model, or the reverse) by name.

    Raises:
        ValueError: one line: what the plan is and where it goes instead.
    """
    built = sidecar_kind(sidecar)
    if built == kind:
        return
    use = {KIND_POSE: "the pose model (VitPoseTRT(...), the CLI's --engine)",
           KIND_DETECTOR: "the person detector (Detector(...), the CLI's --detector)"}
    source = (sidecar.get("source") or {}).get("path")
    raise ValueError(f"{os.fspath(engine_path)} is a {built} engine{f' (built from {source})' if source else ''}, "
                     f"not a {kind} model: pass it as {use.get(built, built)}")


def rebuild_command(sidecar: Mapping[str, Any] | None, engine_path: str | os.PathLike[str] = "model.engine") -> str:
    """The `vitpose-trt build` command that rebuilds this engine with the options it was built with.

    The package's only spelling of a build command: a message that suggests a first build passes a
    minimal sidecar ({"source": {"path": ...}}, and "precision" for a Q/DQ graph).
    """
    sidecar = sidecar or {}
    args = sidecar.get("build_args") or {}
    detector = sidecar_kind(sidecar) == KIND_DETECTOR
    source = (sidecar.get("source") or {}).get("path") or ("DETECTOR.onnx" if detector else "CHECKPOINT")
    parts = ["vitpose-trt", "build", shlex.quote(str(source)), "-o", shlex.quote(os.fspath(engine_path))]
    if sidecar.get("precision", "fp16") == "fp16":
        parts.append("--fp16")
    if detector:  # what was named at build time; "auto" was told from the graph and is again
        for key, flag in (("format", "--detector-format"), ("family", "--detector-family")):
            if args.get(key, "auto") != "auto":
                parts += [flag, str(args[key])]
        return " ".join(parts)
    for key, flag in (("max_batch", "--max-batch"), ("opt_batch", "--opt-batch"), ("mode", "--mode")):
        if key in args and args[key] != BUILD_DEFAULTS[key]:
            parts += [flag, str(args[key])]
    if args.get("flip_test", sidecar.get("flip_test", False)):
        parts.append("--flip-test")
    return " ".join(parts)


def check_compatibility(sidecar: Mapping[str, Any], current: Platform,
                        engine_path: str | os.PathLike[str] = "model.engine") -> None:
    """Refuse a plan built for another TensorRT version or GPU architecture, before TensorRT tries.

    A serialized engine only deserializes with the exact TensorRT version that built it, and its
    kernels are compiled for one compute capability. Another GPU model of the same compute
    capability works (TensorRT only warns that the kernel choice may be slower), so a GPU name
    mismatch alone is logged, not raised. Keys missing from the sidecar are not checked.

    Args:
        sidecar: the engine's sidecar (see `make_sidecar`).
        current: this machine's TensorRT version and GPU (`current_platform()`).
        engine_path: used in the message and the rebuild command.

    Raises:
        EngineMismatchError: one line: what differs, and the exact command that rebuilds it here.
    """
    built_trt = sidecar.get("tensorrt_version")
    gpu = sidecar.get("gpu") or {}
    built_cc, built_name = gpu.get("compute_capability"), gpu.get("name")
    problems = []
    if built_trt and built_trt != current.tensorrt_version:
        problems.append(f"TensorRT {built_trt} (this machine has {current.tensorrt_version})")
    if built_cc and current.compute_capability and str(built_cc) != current.compute_capability:
        problems.append(f"compute capability {built_cc} / {built_name or 'unknown GPU'} "
                        f"(this GPU is {current.compute_capability} / {current.gpu_name or 'unknown'})")
    name = os.fspath(engine_path)
    if problems:
        raise EngineMismatchError(
            f"{name} was built for {' and '.join(problems)}; a TensorRT engine only loads with the TensorRT version "
            f"and GPU architecture it was built for: rebuild it here with `{rebuild_command(sidecar, engine_path)}`"
        )
    if built_name and current.gpu_name and built_name != current.gpu_name:
        log.warning("%s was built on a %s and runs on a %s (same compute capability): it works, but may be slower "
                    "than an engine built here (`%s`)", name, built_name, current.gpu_name,
                    rebuild_command(sidecar, engine_path))


@dataclass(frozen=True)
class PlanRecord:
    """What every plan's sidecar records, a pose model's and a detector's alike: how the plan was
    built, from what, and the TensorRT version and GPU it is tied to (`check_compatibility` reads those).

    Attributes:
        profile: the optimization profile (`build_engine.tensorrt_build.ProfileShapes`; its
            `batch_range` is recorded).
        precision: "fp32", "fp16", "int8" or "fp8".
        fp32_ops: op types kept in FP32.
        strongly_typed: whether the network was built strongly typed.
        platform: the TensorRT version and GPU of the build (`current_platform()`).
        source_path: the source as given (None: random weights or an in-memory model).
        source_onnx_sha256: the sha256 of the ONNX the plan was built from.
        build_args: the build's options, as `rebuild_command` reads them.
        built_at: an ISO timestamp (None: now).
        package_version: vitpose_trt's version (None: this one).
    """

    profile: Any
    precision: str
    fp32_ops: Sequence[str]
    strongly_typed: bool
    platform: Platform
    source_path: str | None
    source_onnx_sha256: str
    build_args: Mapping[str, Any]
    built_at: str | None = None
    package_version: str | None = None


def _plan_entries(plan: PlanRecord, io: dict[str, Any], source: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The sidecar entries every plan has, from "batch" to "vitpose_trt_version" (`io` as given)."""
    package_version = plan.package_version
    if package_version is None:
        package_version = vitpose_trt.__version__
    return {
        "batch": plan.profile.batch_range,
        "precision": plan.precision,
        "fp32_ops": list(plan.fp32_ops),
        "strongly_typed": bool(plan.strongly_typed),
        "io": io,
        "tensorrt_version": plan.platform.tensorrt_version,
        "gpu": {"name": plan.platform.gpu_name, "compute_capability": plan.platform.compute_capability},
        "source": {"path": plan.source_path, "onnx_sha256": plan.source_onnx_sha256, **(source or {})},
        "build_args": dict(plan.build_args),
        "built_at": plan.built_at or datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "vitpose_trt_version": package_version,
    }


def make_sidecar(plan: PlanRecord, *, model: Any, mode: str, flip_test: bool,
                 io: Mapping[str, Mapping[str, str]]) -> dict[str, Any]:
    """The sidecar dict written next to a pose model's plan as `model.engine.json`.

    Everything the runtime and a reader need without deserializing the plan: the model, the
    pipeline options it was built for, the batch range, the precision recipe and I/O dtypes, and
    the TensorRT version and GPU that the plan is tied to (`check_compatibility` reads those).

    Args:
        plan: how the plan was built (the entries every sidecar has).
        model: what the plan computes (`model_info.ModelInfo`).
        mode / flip_test: the pipeline the plan was built for.
        io: {"input": {"name", "dtype"}, "output": {"name", "dtype"}}.
    """
    return {
        "format": SIDECAR_FORMAT,
        "kind": KIND_POSE,
        "variant": model.variant,
        "decoder": model.decoder,
        "num_keypoints": int(model.num_keypoints),
        "dataset": getattr(model, "dataset", None),
        "input_size": [int(s) for s in model.input_size],
        "random_weights": bool(model.random_weights),
        "mode": mode,
        "flip_test": bool(flip_test),
        **_plan_entries(plan, {k: dict(v) for k, v in io.items()}),
    }


def make_detector_sidecar(plan: PlanRecord, *, detector: Mapping[str, Any], io: Mapping[str, Any],
                          source_metadata: Mapping[str, str]) -> dict[str, Any]:
    """The sidecar of a person detector's plan (kind "detector").

    Args:
        plan: how the plan was built (the entries every sidecar has).
        detector: {"format", "family", "input_size": [h, w]}: how `Detector` reads the plan, decided
            at build time from the graph (or named on the command line) and verified with it.
        io: {"inputs": [{"name", "dtype"}], "outputs": [{"name", "dtype"}, ...]}.
        source_metadata: the ONNX graph's metadata_props (Ultralytics' `task`, `imgsz`, ...), kept so
            that the plan is read like the graph it was built from.
    """
    missing = [k for k in DETECTOR_KEYS if k not in detector]
    if missing:
        raise ValueError(f"detector sidecar: missing {missing}")
    return {
        "format": SIDECAR_FORMAT,
        "kind": KIND_DETECTOR,
        "detector": {"format": str(detector["format"]), "family": str(detector["family"]),
                     "input_size": [int(s) for s in detector["input_size"]]},
        **_plan_entries(plan, {k: [dict(t) for t in v] for k, v in io.items()}, {"metadata": dict(source_metadata)}),
    }


def detector_record(sidecar: Mapping[str, Any] | None) -> dict[str, Any]:
    """A detector plan's recorded {"format", "family", "input_size": (h, w)}; {} without a sidecar.

    Raises:
        ValueError: the sidecar is a detector's but its "detector" entry is malformed.
    """
    if not sidecar or sidecar_kind(sidecar) != KIND_DETECTOR:
        return {}
    entry = sidecar.get("detector")
    size = entry.get("input_size") if isinstance(entry, dict) else None
    if (not isinstance(entry, dict) or not isinstance(size, list) or len(size) != 2
            or not all(isinstance(v, int) and v > 0 for v in size)):
        raise ValueError(f"the detector sidecar's \"detector\" entry is malformed ({entry!r}); rebuild the engine")
    return {"format": entry.get("format"), "family": entry.get("family"), "input_size": (size[0], size[1])}


def write_sidecar(engine_path: str | os.PathLike[str], sidecar: Mapping[str, Any]) -> Path:
    """Write `<engine>.json` atomically (a reader never sees half a file). Plain `json.dumps`, not
    `atomic.write_json`: a tolerance of math.inf must read back as a float (JSON's `Infinity`)."""
    path = sidecar_path(engine_path)
    atomic_write(path, json.dumps(sidecar, indent=2) + "\n")
    return path
