"""Person detectors: the boxes that top-down pose estimation starts from.

`Detector(path)` (its settings: `DetectorConfig`) runs a user-supplied person detector: an ONNX graph with ONNX Runtime (CUDA/TensorRT
providers where installed), or the TensorRT plan `vitpose-trt build det.onnx` made of it, on the
engine layer's plan runner (`vitpose_trt.engines.open_graph` chooses by the file's suffix, as for the
pose model). `HogDetector()` is OpenCV's built-in pedestrian detector, a weak fallback that needs no
download. Both are callables `frame -> (M, 5) x1, y1, x2, y2, score` in frame pixels, best first.

Output formats (`format=`), told from the graph's outputs unless given:
    "yolo"        one output (1, 4 + C, A): per anchor cx, cy, w, h + C class scores, no NMS inside
                  (raw Ultralytics YOLOv8 / YOLO11 exports); NMS here with `cv2.dnn.NMSBoxes`.
    "dets_labels" `dets` (1, N, 5) x1, y1, x2, y2, score + `labels` (1, N): mmdeploy end-to-end exports
                  (YOLOX, RTMDet, as rtmlib ships them), NMS inside.
    "xyxy_score_class"  one output (1, N, 6) x1, y1, x2, y2, score, class: end-to-end exports with NMS
                  inside (Ultralytics `nms=True`, YOLOv10-style heads).

Pre-processing (`family=`), each family's own (from the training configs of each, not guessed):
    "yolo"   Ultralytics LetterBox: RGB, /255, aspect kept, centered, padded with 114.
    "yolox"  mmdet/mmdeploy YOLOX (and rtmlib): BGR, raw 0-255 values, aspect kept, image at the
             top-left, padded with 114 bottom/right.
    "rtmdet" mmdet RTMDet: as yolox, then BGR mean (103.53, 116.28, 123.675) / std (57.375, 57.12, 58.395)
             (its `DetDataPreprocessor`, bgr_to_rgb=False; mmdeploy leaves this normalization out of the
             graph). rtmlib feeds RTMDet raw values; pass family="yolox" to reproduce that.
`letterbox(..., impl="numpy")` is that reference (cv2.resize onto a 114 canvas); the detectors run it
as the crop's warp kernel (`impl="cpp"`, or on the GPU for a TensorRT plan: see `Detector`).
The family defaults from the format: "yolo" for raw and (1, N, 6) outputs, "yolox" for dets + labels
(rtmlib's default person detector); Ultralytics' metadata (`task`, `imgsz`) confirms "yolo". A
TensorRT plan is read as `vitpose-trt build` read its graph: the format, family and input size it
recorded in the plan's sidecar.
"""

from __future__ import annotations

import ast
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from vitpose_trt import kernels
from vitpose_trt.crop import IMAGENET_MEAN, IMAGENET_STD
from vitpose_trt.cuda_runtime import runtime
from vitpose_trt.engines import open_graph
from vitpose_trt.engines.onnx_cache import cache_dir
from vitpose_trt.engines.sidecar import KIND_DETECTOR, detector_record
from vitpose_trt.geometry import check_frame
from vitpose_trt.options import with_options

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

FORMATS = ("yolo", "dets_labels", "xyxy_score_class")
FAMILIES = ("yolo", "yolox", "rtmdet")
PAD_VALUE = 114  # all three families pad with 114 grey
LETTERBOX_IMPLS = ("auto", *kernels.IMPLS)  # `Detector(impl=)`
# mmdet RTMDet's BGR mean (103.53, 116.28, 123.675) and std (57.375, 57.12, 58.395) of raw levels: ImageNet's x 255
RTMDET_MEAN = (np.array(IMAGENET_MEAN[::-1]) * 255).astype(np.float32)
RTMDET_STD = (np.array(IMAGENET_STD[::-1]) * 255).astype(np.float32)
DEFAULT_INPUT_SIZE = (640, 640)  # (height, width), when the graph's input is dynamic and says nothing else
# Detectors known by name (`--detector yolo11n`): exported with Ultralytics on the user's machine when
# the .onnx is not there (its weights download there; Ultralytics is AGPL-3.0 and never a dependency).
KNOWN_DETECTORS = tuple(f"{family}{size}" for family in ("yolov8", "yolo11") for size in "nsmlx")


def detector_file(spec: str | os.PathLike[str], cache: str | os.PathLike[str] | None = None) -> Path:
    """The detector file (.onnx, or a TensorRT plan) given as a path or a known name (KNOWN_DETECTORS,
    e.g. "yolo11n", whose .onnx is made here).

    A known name whose file is not in the current folder is exported once with Ultralytics into
    `cache` (default: the package's cache folder, `$VITPOSE_TRT_CACHE_DIR`) and reused after.

    Raises:
        FileNotFoundError: a path that does not exist (and is no known name).
        ImportError: a known name, but Ultralytics is not installed (the message says what to run).
    """
    path = Path(os.fspath(spec))
    if path.exists() or path.stem.lower() not in KNOWN_DETECTORS or path.suffix.lower() not in ("", ".onnx"):
        if not path.exists():
            raise FileNotFoundError(f"detector not found: {path} (or a known name: {', '.join(KNOWN_DETECTORS)})")
        return path
    name = path.stem.lower()
    if cache is None:
        cache = cache_dir() / "detectors"
    target = Path(os.fspath(cache)) / f"{name}.onnx"
    if target.is_file():
        return target
    try:
        from ultralytics import YOLO  # lazy: Ultralytics is optional (AGPL-3.0), only to export a known detector
    except ImportError:
        raise ImportError(f"detector {name}: {name}.onnx is not here and Ultralytics is not installed to export it: "
                          f"`pip install ultralytics` (AGPL-3.0; its weights download on first use) and run again, "
                          f"or export it yourself with `yolo export model={name}.pt format=onnx` and pass the "
                          f".onnx") from None
    log.info("exporting %s to ONNX with Ultralytics (its weights %s.pt download from Ultralytics' releases on "
             "first use) into %s", name, name, target.parent)
    target.parent.mkdir(parents=True, exist_ok=True)
    written = Path(YOLO(f"{name}.pt").export(format="onnx"))
    written.replace(target)
    return target


@dataclass(frozen=True)
class LetterboxGeometry:
    """Where a frame lands in a detector's input: resized to (width, height) pixels at (left, top)
    of a (size[0], size[1]) canvas padded with PAD_VALUE; `ratio` maps boxes back to the frame."""

    frame_shape: tuple[int, int]  # (height, width) of the frame
    size: tuple[int, int]  # (height, width) of the detector input
    ratio: float
    left: int
    top: int
    width: int
    height: int

    def region(self) -> tuple[int, int, int, int, int]:
        """(x0, y0, x1, y1, pad): the image region of the canvas (clipped to it) and the pad level,
        as the warp kernel's `letterbox` option takes them."""
        th, tw = self.size
        return self.left, self.top, min(self.left + self.width, tw), min(self.top + self.height, th), PAD_VALUE

    def inverse_matrix(self) -> np.ndarray:
        """(1, 2, 3) float64 canvas -> frame matrix of cv2.resize's INTER_LINEAR sampling: canvas
        pixel x reads frame x' = (x - left + 0.5) * w / width - 0.5 (and likewise in y)."""
        h, w = self.frame_shape
        sx, sy = w / self.width, h / self.height
        return np.array([[[sx, 0.0, sx * (0.5 - self.left) - 0.5],
                          [0.0, sy, sy * (0.5 - self.top) - 0.5]]], dtype=np.float64)

    def to_frame(self, boxes: np.ndarray) -> np.ndarray:
        """(M, 4) x1, y1, x2, y2 in detector-input pixels -> frame pixels, clipped to the frame."""
        h, w = self.frame_shape
        out = (np.asarray(boxes, np.float64) - np.array([self.left, self.top] * 2)) / self.ratio
        out[:, [0, 2]] = out[:, [0, 2]].clip(0, w)
        out[:, [1, 3]] = out[:, [1, 3]].clip(0, h)
        return out


def letterbox_geometry(frame_shape: tuple[int, ...], size: tuple[int, int], family: str) -> LetterboxGeometry:
    """The letterbox of a frame of `frame_shape` into `size` (height, width), as `family` makes it."""
    if family not in FAMILIES:
        raise ValueError(f"unknown detector family {family!r}: expected one of {FAMILIES}")
    h, w = int(frame_shape[0]), int(frame_shape[1])
    th, tw = size
    ratio = min(th / h, tw / w)
    if family == "yolo":
        # Ultralytics rounds the new size, then splits the padding around it (round(d -/+ 0.1)).
        nw, nh = int(round(w * ratio)), int(round(h * ratio))
        left, top = int(round((tw - nw) / 2 - 0.1)), int(round((th - nh) / 2 - 0.1))
    else:
        # mmdet's keep-ratio Resize + Pad (rtmlib truncates the same way): image at the top-left.
        nw, nh = int(w * ratio), int(h * ratio)
        left = top = 0
    return LetterboxGeometry((h, w), (th, tw), ratio, left, top, max(nw, 1), max(nh, 1))


def letterbox(frame: np.ndarray, size: tuple[int, int], family: str,
              impl: str = "numpy") -> tuple[np.ndarray, LetterboxGeometry]:
    """A frame resized into `size` with its aspect ratio kept, as the detector family was trained.

    Args:
        frame: HxWx3 uint8 BGR.
        size: (height, width) of the detector input.
        family: one of FAMILIES.
        impl: "numpy": the families' own reference (cv2.resize, a 114 canvas, the family's
            normalization in numpy); "cpp": the C++ warp kernel in one pass (a letterbox is an affine
            warp; see csrc/warp.h), within a few levels of the reference at sharp edges
            (tests/test_letterbox.py states the bound).

    Returns:
        (1, 3, H, W) float32 input and its geometry (`geometry.to_frame(boxes)` maps boxes back).
    """
    geometry = letterbox_geometry(frame.shape, size, family)
    th, tw = size
    if impl == "cpp":
        x = np.empty((1, 3, th, tw), np.float32)
        kernels.warp(frame, geometry.inverse_matrix(), x, normalize=family, letterbox=geometry.region())
        return x, geometry
    if impl != "numpy":
        raise ValueError(f"letterbox impl must be 'numpy' or 'cpp', got {impl!r}")
    nw, nh, left, top = geometry.width, geometry.height, geometry.left, geometry.top
    h, w = frame.shape[:2]
    resized = cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_LINEAR) if (nw, nh) != (w, h) else frame
    canvas = np.full((th, tw, 3), PAD_VALUE, dtype=np.uint8)
    canvas[top:top + nh, left:left + nw] = resized[:th - top, :tw - left]
    if family == "yolo":
        x = canvas[:, :, ::-1].astype(np.float32) / 255.0
    elif family == "rtmdet":
        x = (canvas.astype(np.float32) - RTMDET_MEAN) / RTMDET_STD
    else:
        x = canvas.astype(np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None]), geometry


def detect_format(outputs: list[tuple[str, tuple]]) -> str:
    """The output format from the graph's outputs [(name, shape)]; shapes may hold None/str for
    dynamic axes.

    Raises:
        ValueError: no known format matches (the message lists what it saw and what it accepts).
    """
    names = [n for n, _ in outputs]
    shapes = {n: tuple(s) for n, s in outputs}
    if "dets" in names and "labels" in names:
        return "dets_labels"
    if len(outputs) == 2:
        (_, a), (_, b) = outputs
        if len(a) == 3 and a[-1] == 5 and len(b) == 2:
            return "dets_labels"
    if len(outputs) >= 1:
        name, shape = outputs[0]
        if len(shape) == 3:
            channels, anchors = shape[1], shape[2]
            # raw YOLO: 4 + C channels, far fewer than its anchors (84 x 8400 for COCO at 640)
            if isinstance(channels, int) and channels >= 5 and (not isinstance(anchors, int) or anchors > channels):
                return "yolo"
            if anchors == 6:
                return "xyxy_score_class"
    seen = ", ".join(f"{n} {list(s)}" for n, s in shapes.items()) or "none"
    raise ValueError(
        f"unknown detector outputs ({seen}); accepted: raw YOLOv8/YOLO11 (1, 4+C, anchors), "
        f"mmdeploy dets (1, N, 5) + labels (1, N), or (1, N, 6) x1,y1,x2,y2,score,class "
        f"(or name its format, one of {', '.join(FORMATS)}: format= (the CLI's --detector-format))")


def _check_format(format: str) -> str:
    if format not in FORMATS:
        raise ValueError(f"unknown detector format {format!r}: expected one of {FORMATS}")
    return format


def _check_family(family: str) -> str:
    if family not in FAMILIES:
        raise ValueError(f"unknown detector family {family!r}: expected one of {FAMILIES}")
    return family


@dataclass(frozen=True)
class DetectorConfig:
    """How a `Detector` reads and runs its graph; each field is also a `Detector` keyword.

    Attributes:
        format: one of FORMATS, or "auto" (a plan's recorded one, else from the graph's outputs).
        family: pre-processing, one of FAMILIES, or "auto" (a plan's recorded one, else from the
            format and metadata).
        score_thr: boxes scoring below this are dropped.
        nms_thr: IoU above which the lower-scoring box is suppressed ("yolo" format only: the others
            have NMS inside).
        person_class: the person class index (0 in COCO-trained YOLO / YOLOX / RTMDet).
        input_size: (height, width) when the graph's input is dynamic (default: Ultralytics' recorded
            `imgsz`, else 640x640); a plan's is fixed when it is built.
        providers: ONNX Runtime providers of an .onnx (default: TensorRT, CUDA where available, then CPU).
        max_boxes: most boxes returned per frame (best first).
        threads: CPU threads of ONNX Runtime's CPU provider (default: one per core).
        device: the CUDA device of a TensorRT plan (default: the current one).
        impl: the letterbox: "auto" ("cuda" for a TensorRT plan: on its device and stream; else "cpp",
            the C++ warp kernel, where built), "cpp", or "numpy" (the families' reference).

    Raises:
        ValueError: a format, family or impl that is none of the known ones (checked when the config
            is made, before any graph is opened; whether "cuda" fits the file is told when it is opened).
    """

    format: str = "auto"
    family: str = "auto"
    score_thr: float = 0.3
    nms_thr: float = 0.45
    person_class: int = 0
    input_size: tuple[int, int] | None = None
    providers: list[str] | None = None
    max_boxes: int = 300
    threads: int | None = None
    device: str | int | None = None
    impl: str = "auto"

    def __post_init__(self) -> None:
        if self.format != "auto":
            _check_format(self.format)
        if self.family != "auto":
            _check_family(self.family)
        if self.impl not in LETTERBOX_IMPLS:
            raise ValueError(f"impl (the letterbox) must be 'auto', 'numpy', 'cpp' or, for a TensorRT plan, 'cuda'; "
                             f"got {self.impl!r}")


class Detector:
    """A person detector: `detector(frame) -> (M, 5)` x1, y1, x2, y2, score, best first.

        detector = Detector("yolo11n.onnx", score_thr=0.5, family="yolo")
        detector = Detector("yolo11n.onnx", DetectorConfig(score_thr=0.5, family="yolo"))  # the same

    Args:
        path: the .onnx file, a TensorRT plan built from one (`vitpose-trt build det.onnx -o
            det.engine --fp16`: .engine/.plan/.trt), or a known name (KNOWN_DETECTORS, e.g.
            "yolo11n": see `detector_file`).
        config: the settings (default: `DetectorConfig()`).
        options: any `DetectorConfig` field by name (format=, family=, score_thr=, nms_thr=,
            person_class=, input_size=, providers=, max_boxes=, threads=, device=, impl=), over
            `config`'s value; see `DetectorConfig` for each.

    Attributes:
        config: the settings in use (`config` with `options` over it; "auto" where it was left so).
        graph: the runner (`vitpose_trt.engines.Graph`): ONNX Runtime, or TensorRT for a plan.
        format, family, input_size, impl: what each came to for this file ("auto" resolved).
        score_thr, nms_thr, person_class, max_boxes: `config`'s.

    Raises:
        FileNotFoundError: no such file.
        TypeError: an option that is no `DetectorConfig` field.
        ValueError: a bad setting (see `DetectorConfig`), not a loadable ONNX graph or plan, a pose
            model's plan, or outputs in no known format.
    """

    def __init__(self, path, config: DetectorConfig | None = None, **options: Any) -> None:
        self.config = cfg = with_options(DetectorConfig, config, options)
        path = detector_file(path)
        self.graph = open_graph(path, kind=KIND_DETECTOR, providers=cfg.providers, threads=cfg.threads,
                                device=cfg.device)
        recorded = detector_record(self.graph.sidecar)  # a plan's: what `vitpose-trt build` decided and verified
        self.input_name, self.input_size = self._read_input(path, cfg.input_size or recorded.get("input_size"))
        self._output_names = [o.name for o in self.graph.outputs]
        self.format = self._read_format(path, cfg.format, recorded)
        family = cfg.family
        if family == "auto":
            family = _check_family(recorded.get("family") or default_family(self.format, self.graph.metadata))
        self.path, self.family = path, family
        self.score_thr, self.nms_thr, self.person_class = cfg.score_thr, cfg.nms_thr, cfg.person_class
        self.max_boxes = cfg.max_boxes
        self.providers = self.graph.providers
        self.impl = self._letterbox_impl(path, cfg.impl)
        log.info("detector %s: format %s, %s pre-processing (%s), input %dx%d, %s", path.name, self.format, family,
                 self.impl, self.input_size[1], self.input_size[0], self.providers[0])

    def _read_input(self, path: Path, given: tuple[int, int] | None) -> tuple[str, tuple[int, int]]:
        """The graph's one image input: its name and (height, width) (`given` where the graph's is dynamic)."""
        inputs = self.graph.inputs
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise ValueError(f"detector {path}: expected one (1, 3, H, W) image input, got "
                             f"{[(i.name, i.shape) for i in inputs]}")
        return inputs[0].name, _input_size(inputs[0].shape, given, self.graph.metadata)

    def _read_format(self, path: Path, format: str, recorded: dict) -> str:
        """The output format: the one named, else a plan's recorded one, else read from the graph's outputs."""
        if format != "auto":
            return format  # checked by DetectorConfig
        try:
            format = recorded.get("format") or detect_format([(o.name, o.shape) for o in self.graph.outputs])
        except ValueError as e:
            raise ValueError(f"detector {path}: {e}") from None
        return _check_format(format)

    def _letterbox_impl(self, path: Path, impl: str) -> str:
        """The letterbox implementation: "auto" is "cuda" for a TensorRT plan, else the CPU default."""
        on_gpu = self.graph.name == "tensorrt"
        if impl == "auto":
            impl = "cuda" if on_gpu else kernels.default_cpu_impl()
        if impl == "cuda" and not on_gpu:  # (other names were refused by DetectorConfig)
            raise ValueError(f"impl (the letterbox) must be 'auto', 'numpy', 'cpp' or, for a TensorRT plan, 'cuda'; "
                             f"got {impl!r} for {path.name}")
        return impl

    def __call__(self, frame) -> np.ndarray:
        """Person boxes in one HxWx3 uint8 BGR frame: (M, 5) float64 x1, y1, x2, y2, score, best first.

        The frame is a numpy array, or for a TensorRT plan also a CUDA array (letterboxed in place).
        """
        if self.impl == "cuda":
            x, geometry = self._letterbox_cuda(frame)
        else:
            x, geometry = letterbox(check_frame(frame), self.input_size, self.family, impl=self.impl)
        outs = self.graph.run({self.input_name: x})
        boxes, scores = self._decode(outs)
        boxes = geometry.to_frame(np.asarray(boxes, np.float64).reshape(-1, 4))
        keep = (scores >= self.score_thr) & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        boxes, scores = boxes[keep], scores[keep]
        order = np.argsort(-scores, kind="stable")[: self.max_boxes]
        return np.concatenate([boxes[order], scores[order, None]], axis=1).astype(np.float64)

    def close(self) -> None:
        """Release the runner (its session or plan). Idempotent."""
        self.graph.close()

    def _letterbox_cuda(self, frame) -> tuple[torch.Tensor, LetterboxGeometry]:
        """The letterbox on the plan's device, by the warp kernel, queued on the plan's stream (which
        its `run` then uses): the frame goes up once (or not at all, when it is already there) and
        only the detector's outputs come back."""
        # lazy: torch (cuda_memory imports it) only for a TensorRT plan's GPU letterbox; the CPU detector runs without
        import torch

        from vitpose_trt.cuda_memory import as_cuda_frame

        rt, plan = runtime(), self.graph
        caller = rt.current_stream(plan.device)
        with rt.use(plan.stream), torch.inference_mode():
            frame_dev = as_cuda_frame(frame, plan.device)
            if not isinstance(frame, np.ndarray):  # the caller's: written on its stream, read on the plan's
                plan.stream.wait_stream(caller)
                rt.record_stream(frame_dev, plan.stream)
            geometry = letterbox_geometry(tuple(frame_dev.shape), self.input_size, self.family)
            x = rt.empty((1, 3, *self.input_size), plan.torch_dtype(self.input_name), plan.device)
            inv = rt.empty((1, 2, 3), torch.float64, plan.device)
            rt.copy(inv, torch.from_numpy(geometry.inverse_matrix()))
            rt.warp(frame_dev, inv, x, False, normalize=self.family, letterbox=geometry.region())
        return x, geometry

    def _decode(self, outs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Person boxes in detector-input pixels and their scores."""
        if self.format == "dets_labels":
            by_name = dict(zip(self._output_names, outs))
            dets = by_name.get("dets", outs[0])
            labels = by_name.get("labels", outs[1])
            dets, labels = np.asarray(dets, np.float64)[0], np.asarray(labels).reshape(-1)
            person = labels == self.person_class
            return dets[person, :4], dets[person, 4]
        if self.format == "xyxy_score_class":
            d = np.asarray(outs[0], np.float64)[0]
            person = np.round(d[:, 5]) == self.person_class
            return d[person, :4], d[person, 4]
        # Raw YOLO: (1, 4 + C, A) -> per anchor. As Ultralytics' NMS (multi_label off) a box takes
        # its best class; only boxes whose best class is the person survive.
        p = np.asarray(outs[0], np.float32)[0]
        if p.shape[0] < 5:
            raise ValueError(f"detector output {p.shape} has no class scores")
        cls = p[4:]
        if not 0 <= self.person_class < cls.shape[0]:
            raise ValueError(f"person_class {self.person_class} is out of range for {cls.shape[0]} classes")
        scores = cls[self.person_class]
        best = cls.argmax(axis=0) == self.person_class
        keep = best & (scores >= self.score_thr)
        cx, cy, w, h = p[0, keep], p[1, keep], p[2, keep], p[3, keep]
        scores = scores[keep]
        if not len(scores):
            return np.zeros((0, 4)), np.zeros(0)
        xywh = np.stack([cx - w / 2, cy - h / 2, w, h], axis=1)
        kept = cv2.dnn.NMSBoxes(xywh.tolist(), scores.tolist(), self.score_thr, self.nms_thr)
        idx = np.asarray(kept, dtype=np.int64).reshape(-1)
        xyxy = np.concatenate([xywh[idx, :2], xywh[idx, :2] + xywh[idx, 2:]], axis=1).astype(np.float64)
        return xyxy, scores[idx].astype(np.float64)


def default_family(format: str, meta: dict) -> str:
    """The pre-processing of a detector whose family is not named: "yolox" for mmdeploy's dets + labels
    (rtmlib's default person detector), "yolo" for the rest and for anything Ultralytics exported."""
    if "task" in meta and "imgsz" in meta:  # Ultralytics writes these into every export
        return "yolo"
    return "yolox" if format == "dets_labels" else "yolo"


def _input_size(shape, given, meta: dict) -> tuple[int, int]:
    """(height, width) of the detector input: the graph's when fixed, else `given`, else the size
    Ultralytics recorded at export (`imgsz`), else DEFAULT_INPUT_SIZE."""
    ih, iw = shape[2:]
    if isinstance(ih, int) and isinstance(iw, int):
        return ih, iw
    if given:
        return int(given[0]), int(given[1])
    try:
        size = ast.literal_eval(meta.get("imgsz", "None"))
    except (ValueError, SyntaxError):
        size = None
    if isinstance(size, (list, tuple)) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size):
        return int(size[0]), int(size[1])
    if isinstance(size, int) and size > 0:
        return size, size
    return DEFAULT_INPUT_SIZE


class HogDetector:
    """OpenCV's built-in HOG + linear SVM people detector (Dalal-Triggs): no download, weak.

    It finds upright, mostly unoccluded pedestrians at least ~64x128 px; it misses sitting, small,
    partly visible or sideways people that a CNN detector finds. Use an ONNX `Detector` for real work.
    Scores are the SVM margins squashed to (0, 1) with a logistic, so they rank but are not calibrated.

    Args:
        score_thr: boxes scoring below this are dropped (0.5 = SVM margin 0).
        nms_thr: overlapping hits are merged with `cv2.dnn.NMSBoxes` at this IoU.
        max_side: frames are downscaled so their longer side is at most this (HOG is slow on big frames).
    """

    def __init__(self, score_thr: float = 0.5, nms_thr: float = 0.45, max_side: int = 800) -> None:
        self.hog = cv2.HOGDescriptor()
        self.hog.setSVMDetector(np.asarray(cv2.HOGDescriptor.getDefaultPeopleDetector(), np.float32))
        self.score_thr, self.nms_thr, self.max_side = score_thr, nms_thr, max_side

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        h, w = frame.shape[:2]
        scale = min(1.0, self.max_side / max(h, w))
        small = cv2.resize(frame, (int(w * scale), int(h * scale))) if scale < 1 else frame
        if min(small.shape[:2]) < 128:
            return np.zeros((0, 5))
        rects, weights = self.hog.detectMultiScale(small, winStride=(8, 8), padding=(8, 8), scale=1.05)
        if len(rects) == 0:
            return np.zeros((0, 5))
        rects = np.asarray(rects, np.float64) / scale
        scores = 1.0 / (1.0 + np.exp(-np.asarray(weights, np.float64).reshape(-1)))
        idx = np.asarray(cv2.dnn.NMSBoxes(rects.tolist(), scores.tolist(), self.score_thr, self.nms_thr),
                         dtype=np.int64).reshape(-1)
        rects, scores = rects[idx], scores[idx]
        out = np.concatenate([rects[:, :2], rects[:, :2] + rects[:, 2:], scores[:, None]], axis=1)
        return out[np.argsort(-out[:, 4], kind="stable")]


def make_detector(detector, **kwargs) -> Callable[[np.ndarray], np.ndarray]:
    """A detector callable from what the user gave: None or "hog" (OpenCV HOG, logged as weak), a
    path to an .onnx (`Detector`), or any callable frame -> (M, 5) boxes (returned as is).

    Args:
        kwargs: passed to `Detector` for a path: a `DetectorConfig` (config=) and/or its fields by name.
    """
    if detector is None or (isinstance(detector, str) and detector.lower() == "hog"):
        log.warning("no person detector given: using OpenCV's HOG people detector, a WEAK fallback (upright, "
                    "unoccluded, larger than ~64x128 px people only); pass an ONNX detector for real work")
        return HogDetector()
    if isinstance(detector, (str, Path)):
        return Detector(detector, **kwargs)
    if callable(detector):
        return detector
    raise TypeError(f"detector must be None, 'hog', an .onnx path or a callable, got {type(detector).__name__}")
