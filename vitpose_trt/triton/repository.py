"""The Triton model repository: `vitpose/config.pbtxt` + `vitpose/1/model.py` (+ the engine file).

    OUT/
      vitpose/
        config.pbtxt        Python backend; image + boxes -> keypoints; dynamic batching; instance groups;
                            the engine and the pipeline options (mode, flip test) and the model's
                            metadata (variant, K, dataset, keypoint names) in `parameters`
        1/
          model.py          `vitpose_trt/triton/backend.py`, copied
          <engine>          the .engine/.onnx/checkpoint (and its sidecar), unless `copy_engine=False`

Batching. Every request carries a different frame size and box count, so both inputs have -1 dims
and `allow_ragged_batch: true`: without it Triton's dynamic batcher only groups requests whose
shapes are equal, i.e. almost never. A Python-backend model does not get the tensors concatenated;
it gets the gathered requests as a list in one `execute()` call, where `backend.py` runs all their
crops through one `VitPoseTRT.infer_many` call per `max_batch_crops` crops. `max_batch_size` (the
most requests Triton gathers) is set to `max_batch_crops` too: a request with one person is one crop.
(`max_batch_size: 0` would turn the batcher off: every execute() would get one request.)
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vitpose_trt import datasets
from vitpose_trt.engines import BACKENDS, PLAN_SUFFIXES, describe
from vitpose_trt.geometry import check_mode
from vitpose_trt.options import with_options

log = logging.getLogger(__name__)

MODEL_NAME = "vitpose"
BACKEND_FILE = Path(__file__).with_name("backend.py")
KINDS = ("auto", "cpu", "gpu")


@dataclass
class RepositoryInfo:
    """What `write_repository` wrote.

    Attributes:
        path: the repository folder (give it to `tritonserver --model-repository`).
        model_name: the model's name in it ("vitpose").
        config: the config.pbtxt text.
        variant / num_keypoints / dataset: the engine's model, as recorded in the config's parameters
            (dataset None: a model of no known dataset).
    """

    path: Path
    model_name: str
    config: str
    variant: str
    num_keypoints: int
    dataset: str | None = None


def engine_metadata(engine: str | os.PathLike, dataset=None, expert: int | None = None) -> dict:
    """Variant, K, dataset and weights origin of an engine file, read cheaply where the file records them.

    .onnx: the metadata that `export_onnx` writes (weights not loaded); .engine/.plan: the sidecar
    `<engine>.json`; a checkpoint: loaded on the CPU (`load_model`, with `dataset` / `expert`).
    The dataset is `dataset` checked against the file, else the recorded one, else K's
    (`vitpose_trt.datasets.resolve`).

    Raises:
        FileNotFoundError: the file is missing.
        ValueError: a TensorRT plan without its sidecar (K is unknown without a GPU to open it).
    """
    path = Path(os.fspath(engine))
    if not path.exists():
        raise FileNotFoundError(f"engine, model or checkpoint not found: {path}")
    suffix = path.suffix.lower()
    if expert is not None and suffix in PLAN_SUFFIXES + (".onnx",):
        raise ValueError(f"expert={expert} picks a ViTPose++ expert when a checkpoint is loaded; {path} has one already")
    if suffix == ".onnx" or suffix in PLAN_SUFFIXES:
        info = describe(path)
        meta = {"variant": info.variant, "num_keypoints": info.num_keypoints, "random_weights": info.random_weights,
                "dataset": info.dataset}
    else:
        from vitpose_trt.checkpoint import load_model  # lazy: imports torch; client.py imports this module

        model = load_model(path, dataset=dataset, expert=expert)
        meta = {"variant": model.config.variant, "num_keypoints": int(model.config.num_keypoints),
                "random_weights": bool(getattr(model, "random_weights", False)), "dataset": model.dataset}
    found = datasets.resolve(dataset, meta["num_keypoints"], meta["dataset"], what=str(path))
    meta["dataset"] = found.name if found is not None else None
    meta["keypoint_names"] = datasets.keypoint_names(found, meta["num_keypoints"])
    return meta


def _engine_files(path: Path) -> list[Path]:
    """The engine and the files that travel with it: a plan's sidecar, an ONNX model's external weights."""
    files = [path]
    for extra in (path.with_name(path.name + ".json"), path.with_name(path.name + ".data")):
        if extra.is_file() and path.suffix.lower() in PLAN_SUFFIXES + (".onnx",):
            files.append(extra)
    return files


def _pbtxt_string(value: str) -> str:
    return json.dumps(value)  # a JSON string literal is a valid protobuf text-format string


def make_config(*, model_name: str, num_keypoints: int, max_batch_crops: int, instances: int,
                max_queue_delay_us: int, kind: str, gpus: list[int] | None, parameters: dict[str, str]) -> str:
    """The config.pbtxt text (see the module docstring for why each batching setting is what it is)."""
    if kind == "gpu":
        gpu_list = f" gpus: [ {', '.join(str(g) for g in gpus)} ]" if gpus else ""
        group = f"{{ count: {instances} kind: KIND_GPU{gpu_list} }}"
    else:
        group = f"{{ count: {instances} kind: KIND_CPU }}"
    params = "\n".join(
        f"parameters: {{ key: {_pbtxt_string(k)} value: {{ string_value: {_pbtxt_string(v)} }} }}"
        for k, v in parameters.items())
    return f"""# Written by vitpose_trt.triton.write_repository: VitPoseTRT.infer's contract behind Triton.
name: {_pbtxt_string(model_name)}
backend: "python"
# The most requests the dynamic batcher gathers into one execute(); their crops share engine calls.
max_batch_size: {max_batch_crops}
input [
  {{ name: "image" data_type: TYPE_UINT8 dims: [ -1, -1, 3 ] allow_ragged_batch: true }},
  {{ name: "boxes" data_type: TYPE_FP32 dims: [ -1, 4 ] allow_ragged_batch: true }}
]
output [
  {{ name: "keypoints" data_type: TYPE_FP32 dims: [ -1, {num_keypoints}, 3 ] }}
]
dynamic_batching {{
  max_queue_delay_microseconds: {max_queue_delay_us}
}}
instance_group [ {group} ]
{params}
"""


@dataclass(frozen=True)
class RepositoryConfig:
    """The settings of `write_repository`: `vitpose-trt triton-repo`'s options, by the same names.

    Attributes:
        model_name: the model's name in the repository (clients address it by this name).
        max_batch_crops: the most crops in one engine call, and the most requests one execute() gathers.
        instances: model instances (each holds its own `VitPoseTRT`): per GPU with kind "gpu", else in all.
        max_queue_delay_us: how long the dynamic batcher may hold a request to gather more.
        mode / flip_test / backend / device / precision: as `VitPoseTRT`'s, applied in every instance.
        kind: "gpu" (instances per GPU; the instance's GPU becomes the engine's device), "cpu" (Triton
            assigns no GPU; `device` decides), or "auto": "gpu" for a TensorRT plan, else "cpu".
        gpus: with kind "gpu", the GPU indices to put instances on (None: every visible GPU).
        copy_engine: copy the engine into the repository (a self-contained folder to ship); False
            records its absolute path instead (`serve`'s throw-away repositories).
        dataset / expert: as `VitPoseTRT`'s: the keypoint dataset (recorded in the config, with its
            keypoint names) and a ViTPose++ checkpoint's expert.

    Raises:
        ValueError: a bad option (named).
    """

    model_name: str = MODEL_NAME
    max_batch_crops: int = 64
    instances: int = 1
    max_queue_delay_us: int = 500
    mode: str = "udp"
    flip_test: bool = False
    backend: str = "auto"
    device: str | None = None
    precision: str | None = None
    kind: str = "auto"
    gpus: list[int] | None = None
    copy_engine: bool = True
    dataset: Any = None
    expert: int | None = None

    def __post_init__(self) -> None:
        check_mode(self.mode)
        for name, low in (("max_batch_crops", 1), ("instances", 1), ("max_queue_delay_us", 0)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        name = self.model_name
        if not name or any(c in name for c in "/\\ \"") or name.startswith("."):
            raise ValueError(f"model_name must be a plain folder name, got {name!r}")
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown backend {self.backend!r}: expected one of {BACKENDS}")

    def instance_kind(self, engine_path: Path) -> str:
        """`kind`, with "auto" decided by the engine: "gpu" for a TensorRT plan, else "cpu"."""
        if self.kind != "auto":
            return self.kind
        return "gpu" if engine_path.suffix.lower() in PLAN_SUFFIXES else "cpu"


def write_repository(out: str | os.PathLike, engine: str | os.PathLike, config: RepositoryConfig | None = None,
                     **options: Any) -> RepositoryInfo:
    """Write a Triton model repository serving `engine` as model `vitpose`.

    The folder appears whole or not at all (written beside `out`, then renamed).

    Args:
        out: the repository folder to create; it must not exist, or be an empty folder.
        engine: a TensorRT plan (.engine/.plan, with its .json sidecar), an .onnx file or a checkpoint.
        config: the settings (default `RepositoryConfig()`).
        **options: `RepositoryConfig` fields by name, replacing `config`'s
            (`write_repository(out, engine, instances=2)`).

    Returns:
        What was written.

    Raises:
        ValueError: a bad option, or `out` exists and is not empty.
        FileNotFoundError: the engine is missing.
        TypeError: an option that is no `RepositoryConfig` field.
    """
    config = with_options(RepositoryConfig, config, options)
    engine_path = Path(os.fspath(engine)).resolve()
    meta = engine_metadata(engine_path, config.dataset, config.expert)
    kind = config.instance_kind(engine_path)
    if config.gpus is not None and kind != "gpu":
        raise ValueError("gpus is only meaningful with kind='gpu'")
    out = Path(os.fspath(out))
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"{out} already exists and is not an empty folder: choose a new repository path")

    params = _parameters(config, engine_path, meta)
    text = make_config(model_name=config.model_name, num_keypoints=meta["num_keypoints"],
                       max_batch_crops=config.max_batch_crops, instances=config.instances,
                       max_queue_delay_us=config.max_queue_delay_us, kind=kind, gpus=config.gpus, parameters=params)
    _write_folder(out, config.model_name, text, engine_path if config.copy_engine else None)
    log.info("wrote Triton model repository %s (model %r, %s engine %s)", out, config.model_name, meta["variant"],
             params["engine"])
    return RepositoryInfo(path=out, model_name=config.model_name, config=text, variant=meta["variant"],
                          num_keypoints=meta["num_keypoints"], dataset=meta["dataset"])


def _parameters(config: RepositoryConfig, engine_path: Path, meta: dict) -> dict[str, str]:
    """The config's `parameters`: what `backend.py` reads to open the engine, and the model's metadata."""
    return {
        "engine": engine_path.name if config.copy_engine else str(engine_path),
        "mode": config.mode,
        "flip_test": "true" if config.flip_test else "false",
        "backend": config.backend,
        "device": config.device or "",
        "precision": config.precision or "",
        "max_batch_crops": str(config.max_batch_crops),
        "variant": meta["variant"],
        "num_keypoints": str(meta["num_keypoints"]),
        "dataset": meta["dataset"] or "",
        "expert": "" if config.expert is None else str(config.expert),
        "keypoint_names": json.dumps(meta["keypoint_names"]),
        "random_weights": "true" if meta["random_weights"] else "false",
    }


def _write_folder(out: Path, model_name: str, config_text: str, engine_path: Path | None) -> None:
    """Write the repository into a temporary folder beside `out` and rename it onto `out` (an empty
    folder or none): config.pbtxt, the backend's model.py, and the engine's files unless `engine_path`
    is None."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        version = tmp / model_name / "1"
        version.mkdir(parents=True)
        (tmp / model_name / "config.pbtxt").write_text(config_text)
        shutil.copyfile(BACKEND_FILE, version / "model.py")
        for f in _engine_files(engine_path) if engine_path is not None else []:
            if f.is_dir():  # a Hugging Face checkpoint folder
                shutil.copytree(f, version / f.name)
            else:
                shutil.copyfile(f, version / f.name)
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; a server in a container may run as another user
        if out.exists():
            out.rmdir()  # empty (checked by the caller)
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
