"""`vitpose-trt bench`: latency per stage and per frame, model throughput, and correctness, for this
package on each backend and for the alternatives a user would otherwise run.

What is measured (see docs/BENCHMARKS.md for how to read it):
    * per frame (a 1920x1080 BGR frame in host memory and N person boxes -> (N, K, 3) keypoints in
      host memory): the stages upload, crop, model, decode, download, and end to end (e2e). GPU
      stages are timed with CUDA events on the stream the work runs on, CPU stages with
      time.perf_counter; e2e is wall clock. Warm-up first; median, p90, p99 and the iteration count.
    * model throughput in crops/s against the batch size (the model alone, crops already in place),
      and as a fraction of the dense matmul rate measured in the same run (FP16 8192^3 on the GPU,
      FP32 on the CPU).
    * correctness: before timing, each alternative's keypoints on the benchmark frames are compared
      with the FP32 reference (PyTorch FP32 on the CPU + the numpy/OpenCV pre/post); the largest
      distance in frame pixels is reported next to each row.

Alternatives (each only where installed and runnable; all from the same weights and frames):
    tensorrt          this package, TensorRT FP16 engine (needs --engine model.engine, tensorrt, a GPU)
    pytorch-cuda      this package, PyTorch CUDA FP16 engine, CUDA pre/post kernels
    onnxruntime       this package, ONNX Runtime CPU (the weights exported to a temporary .onnx)
    pytorch-cpu       this package, PyTorch CPU FP32, C++ pre/post (numpy where the extension is not built)
    baseline          the seed-style pipeline: PyTorch FP32 eager, numpy/OpenCV pre/post, one box at a time
    transformers      Hugging Face VitPoseForPoseEstimation with the same weights, our crops and decode
    torch-fp16-eager  the model alone, PyTorch FP16 eager on the GPU (no pre/post)

Weights are the fixed-seed random ViTPose-B by default (speed does not depend on the weights) and
the output says so.

The per-stage numbers of the package's rows come from `VitPoseTRT`'s own paths through their stage
hooks (CUDA events on its compute stream on the GPU, perf_counter on the CPU); the e2e column times
`VitPoseTRT.infer`. On the GPU, "upload" also holds the host-side staging of the frame and the
per-box matrices that precede the copy.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from vitpose_trt.coco import sample_dir
from vitpose_trt.engines.tensorrt import tensorrt_available

log = logging.getLogger(__name__)

STAGES = ("upload", "crop", "model", "decode", "download")
ALTERNATIVES = ("tensorrt", "pytorch-cuda", "onnxruntime", "pytorch-cpu", "baseline", "transformers",
                "torch-fp16-eager")
ALIASES = {
    "auto": ALTERNATIVES,
    "all": ALTERNATIVES,
    "pipeline": ("tensorrt", "pytorch-cuda", "onnxruntime", "pytorch-cpu"),
    "gpu": ("tensorrt", "pytorch-cuda", "baseline", "transformers", "torch-fp16-eager"),
    "cpu": ("onnxruntime", "pytorch-cpu", "baseline", "transformers"),
}
FRAME_SIZE = (1080, 1920)  # (H, W) of the benchmark frame
COCO_MIN_SCORE = 0.3  # detector boxes below this are not used
MATMUL_N_CUDA = 8192
MATMUL_N_CPU = 2048
CPU_EXTRA_WARMUP = 0  # on CPU rows the correctness run is the only warm-up (one ViTPose-B crop ~0.3-1 s)


# --------------------------------------------------------------------------------------------
# statistics and timing


def summarize(samples: Iterable[float]) -> dict[str, float | int | None]:
    """Median, p90, p99 (linear interpolation, numpy's default), mean, min, max and n of samples.

    An empty list gives n = 0 and None for every statistic.
    """
    x = np.asarray(list(samples), dtype=np.float64)
    if x.size == 0:
        return {"median": None, "p90": None, "p99": None, "mean": None, "min": None, "max": None, "n": 0}
    p50, p90, p99 = np.percentile(x, [50, 90, 99])
    return {"median": float(p50), "p90": float(p90), "p99": float(p99), "mean": float(x.mean()),
            "min": float(x.min()), "max": float(x.max()), "n": int(x.size)}


class Timer:
    """Times the stages of one iteration.

    `start()`, then `mark(stage, gpu=...)` at the end of each stage, then `stop()`. A GPU stage's
    time is the CUDA-event interval from the previous mark to this one on `stream` (events are only
    used when `cuda` is true); a CPU stage's time is the perf_counter interval. A stage marked
    more than once (e.g. one box at a time) is summed. `stop()` synchronizes the stream and adds
    "e2e", the wall-clock time from `start()`.

    All times are in milliseconds.
    """

    def __init__(self, cuda: bool = False, stream=None) -> None:
        self.cuda = cuda
        self.stream = stream
        self._marks: list[tuple[str, bool, float, float, Any, Any]] = []
        self._t0: float | None = None
        self._last: tuple[float, Any] = (0.0, None)
        self.result: dict[str, float] | None = None

    def _event(self):
        if not self.cuda:
            return None
        import torch

        ev = torch.cuda.Event(enable_timing=True)
        ev.record(self.stream if self.stream is not None else torch.cuda.current_stream())
        return ev

    def start(self) -> Timer:
        self._marks, self.result = [], None
        ev = self._event()
        self._t0 = time.perf_counter()
        self._last = (self._t0, ev)
        return self

    def mark(self, stage: str, gpu: bool = False) -> None:
        if self._t0 is None:
            raise RuntimeError("Timer.mark() before start()")
        if self.result is not None:
            return  # stopped early by the runner: later work is untimed
        ev = self._event()
        t = time.perf_counter()
        self._marks.append((stage, gpu and self.cuda, self._last[0], t, self._last[1], ev))
        self._last = (t, ev)

    def stop(self) -> dict[str, float]:
        if self.result is not None:
            return self.result
        if self._t0 is None:
            raise RuntimeError("Timer.stop() before start()")
        if self.cuda:
            import torch

            (self.stream if self.stream is not None else torch.cuda.current_stream()).synchronize()
        t_end = time.perf_counter()
        stages: dict[str, float] = defaultdict(float)
        for stage, gpu, t_a, t_b, e_a, e_b in self._marks:
            stages[stage] += e_a.elapsed_time(e_b) if gpu else (t_b - t_a) * 1e3
        stages["e2e"] = (t_end - self._t0) * 1e3
        self.result = dict(stages)
        return self.result


class Skip(Exception):
    """An alternative that cannot run here; the message is the reason shown in the table."""


# --------------------------------------------------------------------------------------------
# FLOPs


def count_macs(config, include_attention: bool = True) -> dict[str, int]:
    """Multiply-accumulates of one crop through the model, counted from the config.

    With T = Hp*Wp tokens (16*12 = 192 for 256x192), D = embed_dim, r = mlp_ratio, p = patch size,
    L = depth, K = keypoints, C = deconv channels (256):
        patch_embed   T * D * 3 * p^2                       (the 16x16 stride-16 conv)
        per block     qkv T*D*3D + proj T*D*D + mlp 2*T*D*rD = T*D^2*(4 + 2r)
                      attention q@k^T T*T*D + attn@v T*T*D   = 2*T^2*D
        classic head  deconv1 T*D*C*16 + deconv2 4T*C*C*16 + final 1x1 16T*C*K
        simple head   final 3x3 16T*D*K*9                   (the bilinear upsampling is not counted)
    FLOPs = 2 * MACs. Biases, LayerNorm, GELU, softmax, BatchNorm are not counted (they are
    O(T*D) per layer, well under 1%). ViTPose-B 256x192: 18.52 GMAC = 37.0 GFLOP per crop.

    Returns:
        {"patch_embed", "linear" (qkv+proj+mlp, all blocks), "attention" (q@k^T and attn@v, all
        blocks), "head", "total"} in MACs.
    """
    T, D, L = config.num_patches, config.embed_dim, config.depth
    p, K = config.patch_size, config.num_keypoints
    hidden = config.mlp_hidden_dim
    patch = T * D * 3 * p * p
    linear = L * T * (3 * D * D + D * D + 2 * D * hidden)
    attention = L * 2 * T * T * D if include_attention else 0
    if config.decoder == "classic":
        c = config.deconv_channels
        head = T * D * c * 16 + 4 * T * c * c * 16 + 16 * T * c * K
    else:
        head = 16 * T * D * K * 9
    out = {"patch_embed": patch, "linear": linear, "attention": attention, "head": head}
    out["total"] = sum(out.values())
    return out


def model_flops(config) -> int:
    """FLOPs (2 x MACs) of one crop, see `count_macs`."""
    return 2 * count_macs(config)["total"]


# --------------------------------------------------------------------------------------------
# scenarios


@dataclass
class Scenario:
    """One benchmark frame: a (H, W, 3) uint8 BGR frame in host memory and (N, 4) x1,y1,x2,y2 boxes."""

    people: int
    frame: np.ndarray
    boxes: np.ndarray
    source: str  # "coco-sample" or "synthetic"

    @property
    def name(self) -> str:
        return f"{self.people} people"


def compose_coco_frame(root: Path, frame_size: tuple[int, int] = FRAME_SIZE,
                       min_score: float = COCO_MIN_SCORE) -> tuple[np.ndarray, np.ndarray]:
    """The coco-sample photos on a grid over one frame, and their detector boxes moved with them.

    Each photo is resized to fit its grid cell (aspect ratio kept, placed at the cell's centre) and
    its person boxes (score >= min_score) are scaled and shifted the same way.

    Returns:
        frame (H, W, 3) uint8 BGR, boxes (M, 5) float64 x1, y1, x2, y2, score, sorted by score.
    """
    import cv2

    from vitpose_trt.coco import load_sample

    photos = load_sample(root)
    if not photos:
        raise ValueError(f"{root}: no photo has detections in person_detections.json")
    fh, fw = frame_size
    cols = math.ceil(math.sqrt(len(photos)))
    rows = math.ceil(len(photos) / cols)
    ch, cw = fh // rows, fw // cols
    frame = np.zeros((fh, fw, 3), dtype=np.uint8)
    boxes = []
    for i, (_, img, dets) in enumerate(photos):
        h, w = img.shape[:2]
        s = min(cw / w, ch / h)
        nw, nh = max(1, int(round(w * s))), max(1, int(round(h * s)))
        ox = (i % cols) * cw + (cw - nw) // 2
        oy = (i // cols) * ch + (ch - nh) // 2
        frame[oy:oy + nh, ox:ox + nw] = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR)
        for x1, y1, x2, y2, score in dets:
            if score >= min_score:
                boxes.append([x1 * s + ox, y1 * s + oy, x2 * s + ox, y2 * s + oy, score])
    if not boxes:
        raise ValueError(f"{root}: no detection scores >= {min_score}")
    arr = np.array(boxes, dtype=np.float64)
    return frame, arr[np.argsort(-arr[:, 4], kind="stable")]


def synthetic_frame(frame_size: tuple[int, int] = FRAME_SIZE, seed: int = 0) -> np.ndarray:
    """A deterministic smooth-noise BGR frame (not all zeros, so every crop has texture)."""
    import cv2

    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(frame_size[0] // 8, frame_size[1] // 8, 3), dtype=np.uint8)
    return cv2.resize(small, (frame_size[1], frame_size[0]), interpolation=cv2.INTER_LINEAR)


def synthetic_boxes(n: int, frame_size: tuple[int, int] = FRAME_SIZE, seed: int = 0) -> np.ndarray:
    """n person-shaped boxes (height 150-700 px, width 0.35-0.6 x height) inside the frame."""
    rng = np.random.default_rng(seed + 1)
    fh, fw = frame_size
    h = rng.uniform(150, min(700, fh - 1), n)
    w = h * rng.uniform(0.35, 0.6, n)
    x1 = rng.uniform(0, fw - w)
    y1 = rng.uniform(0, fh - h)
    return np.stack([x1, y1, x1 + w, y1 + h], axis=1)


def build_scenarios(people: Sequence[int], coco_sample: str | os.PathLike | bool | None = None,
                    frame_size: tuple[int, int] = FRAME_SIZE, seed: int = 0) -> list[Scenario]:
    """One frame per people count.

    Args:
        people: people per frame, e.g. (1, 4, 16).
        coco_sample: the coco-sample folder; None: found as `vitpose_trt.coco.sample_dir` does; False: synthetic.
            Real detector boxes are used where the folder exists; they repeat (in score order) to
            reach the count.
    """
    if coco_sample is False:
        sample = None
    else:
        sample = sample_dir(None if coco_sample is None or coco_sample is True else coco_sample)
    if sample is not None:
        frame, boxes = compose_coco_frame(sample, frame_size)
        source = "coco-sample"
        log.info("frames: %d coco-sample photos on %dx%d, %d detector boxes (score >= %.1f)",
                 len(list(sample.glob("*.jpg"))), frame_size[1], frame_size[0], len(boxes), COCO_MIN_SCORE)
    else:
        if coco_sample is not False:
            log.info("coco-sample not found (set VITPOSE_TRT_COCO_SAMPLE): synthetic frame and boxes")
        frame, boxes, source = synthetic_frame(frame_size, seed), None, "synthetic"
    out = []
    for n in people:
        if n < 1:
            raise ValueError(f"people per frame must be >= 1, got {n}")
        b = boxes[np.arange(n) % len(boxes), :4].copy() if boxes is not None else synthetic_boxes(n, frame_size, seed)
        out.append(Scenario(people=int(n), frame=frame, boxes=b, source=source))
    return out


# --------------------------------------------------------------------------------------------
# reference and correctness


TIE_FRACTION = 0.05  # a reference heatmap value within 5% of the peak's prominence counts as a tie


@dataclass
class Reference:
    """The FP32 reference of one scenario: keypoints (N, K, 3), the heatmaps they were decoded from
    (N, K, h, w; flip-merged with flip test) and the transforms (N, 4)."""

    keypoints: np.ndarray
    heatmaps: np.ndarray
    transforms: np.ndarray
    mode: str = "udp"


def reference_keypoints(model, frame: np.ndarray, boxes: np.ndarray, mode: str = "udp", flip: bool = False,
                        flip_pairs=None, chunk: int = 16) -> Reference:
    """The FP32 reference: PyTorch FP32 on the CPU + the numpy/OpenCV pre/post."""
    import torch

    from vitpose_trt.crop import preprocess
    from vitpose_trt.decode import merge_flip, postprocess

    input_size = tuple(model.config.input_size)
    crops, transforms = preprocess(frame, boxes, mode, input_size=input_size, impl="numpy", flip=flip)
    n = len(boxes)
    with torch.inference_mode():
        heat = np.concatenate([model(torch.from_numpy(crops[i:i + chunk])).numpy()
                               for i in range(0, len(crops), chunk)])
    merged = merge_flip(heat[:n], heat[n:], mode, flip_pairs) if flip else heat
    keypoints = postprocess(merged, transforms, mode, impl="numpy")
    return Reference(keypoints=keypoints, heatmaps=merged, transforms=transforms, mode=mode)


def _frame_to_heatmap(xy: np.ndarray, transforms: np.ndarray, heatmap_size: tuple[int, int], mode: str) -> np.ndarray:
    """Inverse of geometry.heatmap_to_frame: (N, K, 2) frame pixels -> heatmap pixels."""
    hm_h, hm_w = heatmap_size
    t = transforms.astype(np.float64)[:, None, :]
    if mode == "udp":
        step_x, step_y = t[..., 2] / (hm_w - 1.0), t[..., 3] / (hm_h - 1.0)
    else:
        step_x, step_y = t[..., 2] / hm_w, t[..., 3] / hm_h
    out = np.empty(xy.shape, dtype=np.float64)
    out[..., 0] = (xy[..., 0] - t[..., 0] + t[..., 2] * 0.5) / step_x
    out[..., 1] = (xy[..., 1] - t[..., 1] + t[..., 3] * 0.5) / step_y
    return out


def keypoint_disagreement(keypoints: np.ndarray, reference, tie_fraction: float = TIE_FRACTION) -> dict:
    """How far an alternative's keypoints are from the reference, in frame pixels.

    Args:
        keypoints: (N, K, 3) from the alternative.
        reference: a `Reference`, or a bare (N, K, 3) keypoint array (then no tie analysis).
        tie_fraction: see below.

    Returns:
        max_px, median_px: over all keypoints (x, y distance; NaN or a shape mismatch is inf).
        ties: keypoints that landed on a different peak (> 1.5 heatmap px away) whose reference
            heatmap value there is within tie_fraction x (max - mean) of the reference maximum:
            an argmax between near-equal maxima, which any rounding difference can flip. Random
            weights give flat heatmaps full of such ties; trained weights give almost none.
        max_px_excl_ties: max_px over the other keypoints (None without heatmaps).
    """
    ref_kp = reference.keypoints if isinstance(reference, Reference) else reference
    kp = np.asarray(keypoints, dtype=np.float64)
    ref = np.asarray(ref_kp, dtype=np.float64)
    if kp.shape != ref.shape:
        return {"max_px": math.inf, "median_px": math.inf, "ties": 0, "max_px_excl_ties": math.inf}
    if kp.size == 0:
        return {"max_px": 0.0, "median_px": 0.0, "ties": 0, "max_px_excl_ties": 0.0}
    d = np.linalg.norm(kp[..., :2] - ref[..., :2], axis=-1)
    d[~np.isfinite(d)] = math.inf
    out: dict[str, Any] = {"max_px": float(d.max()), "median_px": float(np.median(d)), "ties": 0,
                           "max_px_excl_ties": None}
    if not isinstance(reference, Reference):
        return out
    hm = reference.heatmaps.astype(np.float64)
    n, k, h, w = hm.shape
    alt = _frame_to_heatmap(kp[..., :2], reference.transforms, (h, w), reference.mode)
    ref_hm = _frame_to_heatmap(ref[..., :2], reference.transforms, (h, w), reference.mode)
    far = np.linalg.norm(alt - ref_hm, axis=-1) > 1.5
    finite = np.isfinite(alt).all(axis=-1)
    xi = np.clip(np.rint(np.where(finite, alt[..., 0], 0)), 0, w - 1).astype(np.int64)
    yi = np.clip(np.rint(np.where(finite, alt[..., 1], 0)), 0, h - 1).astype(np.int64)
    flat = hm.reshape(n, k, h * w)
    peak = flat.max(axis=2)
    prominence = peak - flat.mean(axis=2)
    value = hm[np.arange(n)[:, None], np.arange(k)[None, :], yi, xi]
    tie = far & finite & (value >= peak - tie_fraction * prominence)
    rest = d[~tie]
    out["ties"] = int(tie.sum())
    out["max_px_excl_ties"] = float(rest.max()) if rest.size else 0.0
    return out


# --------------------------------------------------------------------------------------------
# Hugging Face transformers model from our weights


_HF_BLOCK = [
    ("norm1.", "layernorm_before."),
    ("norm2.", "layernorm_after."),
    ("attn.proj.", "attention.output.dense."),
    ("mlp.", "mlp."),
]
_HF_HEAD = {
    "keypoint_head.final_layer.": "head.conv.",
    "keypoint_head.deconv_layers.0.": "head.deconv1.",
    "keypoint_head.deconv_layers.1.": "head.batchnorm1.",
    "keypoint_head.deconv_layers.3.": "head.deconv2.",
    "keypoint_head.deconv_layers.4.": "head.batchnorm2.",
}


def to_hf_state_dict(state_dict) -> dict:
    """Our (official) names -> transformers VitPoseForPoseEstimation names: the inverse of
    `vitpose_trt.checkpoint`'s HF conversion (the fused qkv is split into query, key, value)."""
    out = {}
    for key, value in state_dict.items():
        if key == "backbone.pos_embed":
            out["backbone.embeddings.position_embeddings"] = value
            continue
        if key.startswith("backbone.patch_embed.proj."):
            out["backbone.embeddings.patch_embeddings.projection." + key.rsplit(".", 1)[1]] = value
            continue
        if key.startswith("backbone.last_norm."):
            out["backbone.layernorm." + key.rsplit(".", 1)[1]] = value
            continue
        m = re.match(r"^backbone\.blocks\.(\d+)\.(.+)$", key)
        if m:
            prefix, rest = f"backbone.encoder.layer.{m.group(1)}.", m.group(2)
            if rest.startswith("attn.qkv."):
                kind = rest.rsplit(".", 1)[1]
                for name, part in zip(("query", "key", "value"), value.chunk(3, dim=0)):
                    out[f"{prefix}attention.attention.{name}.{kind}"] = part
                continue
            for ours, theirs in _HF_BLOCK:
                if rest.startswith(ours):
                    out[prefix + theirs + rest[len(ours):]] = value
                    break
            else:
                raise ValueError(f"no transformers name for {key}")
            continue
        for ours, theirs in _HF_HEAD.items():
            if key.startswith(ours):
                out[theirs + key[len(ours):]] = value
                break
        else:
            raise ValueError(f"no transformers name for {key}")
    return out


def build_hf_model(model):
    """A transformers `VitPoseForPoseEstimation` holding `model`'s weights (FP32, CPU, eval)."""
    from transformers import VitPoseBackboneConfig, VitPoseConfig, VitPoseForPoseEstimation

    c = model.config
    if c.decoder == "classic" and c.deconv_channels != 256:
        raise Skip(f"transformers' classic decoder has 256 channels, this model {c.deconv_channels}")
    if c.mlp_ratio != int(c.mlp_ratio):
        raise Skip(f"transformers needs an integer mlp_ratio, got {c.mlp_ratio}")
    backbone = VitPoseBackboneConfig(
        image_size=list(c.input_size), patch_size=[c.patch_size, c.patch_size], hidden_size=c.embed_dim,
        num_hidden_layers=c.depth, num_attention_heads=c.num_heads, mlp_ratio=int(c.mlp_ratio),
        layer_norm_eps=c.layer_norm_eps, qkv_bias=c.qkv_bias, out_indices=[c.depth])
    config = VitPoseConfig(backbone_config=backbone, use_simple_decoder=c.decoder == "simple",
                           num_labels=c.num_keypoints)
    hf = VitPoseForPoseEstimation(config)
    sd = {k: v.detach().float().cpu() for k, v in model.state_dict().items()}
    hf.load_state_dict(to_hf_state_dict(sd), strict=True)
    return hf.eval()


# --------------------------------------------------------------------------------------------
# runners: one factory per alternative


@dataclass
class Runner:
    """One alternative, ready to run.

    infer(frame, boxes, timer) -> (N, K, 3) keypoints, marking the stages on `timer` (started by
        the caller; it may call timer.stop() itself before untimed work).
    e2e: the real, uninstrumented API call (frame, boxes) -> keypoints, timed by wall clock; when
        None, the e2e of the instrumented `infer` is used.
    prepare(frame, boxes): untimed per-scenario setup (e.g. crops already on the GPU).
    batch(b) -> fn: for throughput, a no-argument function running the model once on a batch of b
        crops already in place (None: the alternative has no batched model).
    """

    name: str
    device: str
    precision: str
    description: str
    infer: Callable[[np.ndarray, np.ndarray, Timer], np.ndarray]
    e2e: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None
    prepare: Callable[[np.ndarray, np.ndarray], None] | None = None
    batch: Callable[[int], Callable[[], Any]] | None = None
    stream: Any = None
    notes: list[str] = field(default_factory=list)

    @property
    def cuda(self) -> bool:
        return self.device == "cuda"


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
    cpu_impl: str = "numpy"
    threads: int | None = None  # CPU threads for ONNX Runtime (PyTorch's are set globally)

    @property
    def input_size(self) -> tuple[int, int]:
        return tuple(self.model.config.input_size)

    def need_cuda(self) -> None:
        if not self.cuda:
            raise Skip(self.no_cuda_reason)


def _cpu_pipeline_runner(name: str, pose, description: str) -> Runner:
    """VitPoseTRT's own CPU path, timed per stage through its stage hook."""
    eng = pose.engine
    host_roundtrip = eng.device == "cuda"

    def infer(frame, boxes, timer):
        return pose._infer_cpu(frame, boxes, stage_hook=timer.mark)

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
        pending = pose._gpu.infer_async(frame, boxes, stage_hook=lambda stage: timer.mark(stage, gpu=True))
        timer.stop()
        return pending.result()

    return infer


def _pipeline_runner(name: str, pose, description: str) -> Runner:
    """A `VitPoseTRT` as a runner: its GPU path when it has one, else its CPU path."""
    if pose._gpu is None:
        return _cpu_pipeline_runner(name, pose, description)
    import torch

    eng, stream = pose.engine, pose._gpu.compute

    def batch(b):
        x = torch.randn(b, 3, *eng.input_size, device=eng.torch_device).to(eng.input_dtype)
        return lambda: eng.run_cuda(x, stream)

    return Runner(name=name, device="cuda", precision=eng.precision, description=description,
                  infer=_gpu_staged(pose), e2e=pose.infer, batch=batch, stream=stream,
                  notes=["stages: CUDA events inside the GPU path of VitPoseTRT; e2e: VitPoseTRT.infer"])


def tensorrt_version() -> str | None:
    """TensorRT's version, or None where it is not installed (the `tensorrt-stubs` typing package
    alone leaves an empty `tensorrt` namespace package, which does not count)."""
    try:
        import tensorrt
    except ImportError:
        return None
    return getattr(tensorrt, "__version__", None)


def _cuda_reason() -> str:
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if not torch.cuda.is_available():
        return "no CUDA GPU visible (torch.cuda.is_available() is False)"
    return ""


def runner_tensorrt(ctx: BenchContext) -> Runner:
    if ctx.plan_path is None:
        raise Skip("no TensorRT engine given (pass --engine model.engine, built with `vitpose-trt build`)")
    if not tensorrt_available():
        raise Skip("the tensorrt package is not installed")
    ctx.need_cuda()
    from vitpose_trt.engines import open_engine
    from vitpose_trt.pipeline import VitPoseTRT

    engine = open_engine(ctx.plan_path, backend="tensorrt")
    pose = VitPoseTRT(engine, mode=ctx.mode, flip_test=ctx.flip_test, flip_pairs=ctx.flip_pairs)
    return _pipeline_runner("tensorrt", pose, f"VitPoseTRT, TensorRT {engine.precision} engine {ctx.plan_path.name}")


def runner_pytorch_cuda(ctx: BenchContext) -> Runner:
    ctx.need_cuda()
    from vitpose_trt.engines.torch_engine import TorchEngine
    from vitpose_trt.pipeline import VitPoseTRT

    engine = TorchEngine(copy.deepcopy(ctx.model), device="cuda", precision="fp16")
    pose = VitPoseTRT(engine, mode=ctx.mode, flip_test=ctx.flip_test, flip_pairs=ctx.flip_pairs)
    return _pipeline_runner("pytorch-cuda", pose, "VitPoseTRT, PyTorch CUDA FP16 engine")


def runner_onnxruntime(ctx: BenchContext) -> Runner:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        raise Skip("onnxruntime is not installed") from None
    from vitpose_trt.engines.onnxruntime import OnnxRuntimeEngine
    from vitpose_trt.pipeline import VitPoseTRT

    path = ctx.onnx_path
    if path is None:
        from vitpose_trt.export import export_onnx

        path = Path(ctx.tmpdir or tempfile.mkdtemp()) / "bench_model.onnx"
        log.info("exporting the benchmark weights to %s for ONNX Runtime", path)
        export_onnx(ctx.model, path, check=False)
    engine = OnnxRuntimeEngine(path, threads=ctx.threads)
    pose = VitPoseTRT(engine, mode=ctx.mode, flip_test=ctx.flip_test, flip_pairs=ctx.flip_pairs, impl=ctx.cpu_impl)
    return _cpu_pipeline_runner("onnxruntime", pose, "VitPoseTRT, ONNX Runtime CPU FP32")


def runner_pytorch_cpu(ctx: BenchContext) -> Runner:
    from vitpose_trt.engines.torch_engine import TorchEngine
    from vitpose_trt.pipeline import VitPoseTRT

    engine = TorchEngine(ctx.model, device="cpu", precision="fp32")  # CPU FP32: .to() is a no-op, no copy
    pose = VitPoseTRT(engine, mode=ctx.mode, flip_test=ctx.flip_test, flip_pairs=ctx.flip_pairs, impl=ctx.cpu_impl)
    return _cpu_pipeline_runner("pytorch-cpu", pose, "VitPoseTRT, PyTorch CPU FP32")


def runner_baseline(ctx: BenchContext) -> Runner:
    """The seed-style pipeline: FP32 eager model (GPU where there is one), numpy/OpenCV pre/post,
    one box at a time."""
    import torch

    from vitpose_trt.crop import preprocess
    from vitpose_trt.decode import postprocess
    from vitpose_trt.geometry import check_boxes

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
    try:
        import transformers
    except ImportError:
        raise Skip("transformers is not installed") from None
    try:
        from transformers import VitPoseForPoseEstimation  # noqa: F401
    except ImportError:
        raise Skip(f"transformers {transformers.__version__} has no VitPoseForPoseEstimation") from None
    import torch

    from vitpose_trt.crop import preprocess
    from vitpose_trt.decode import postprocess
    from vitpose_trt.geometry import check_boxes

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
    import torch

    from vitpose_trt.crop import preprocess
    from vitpose_trt.decode import postprocess

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


# --------------------------------------------------------------------------------------------
# measuring


def _release_cuda() -> None:
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
    except ImportError:
        pass


def measure_frames(runner: Runner, scenario: Scenario, *, iters: int, warmup: int, budget_s: float) -> dict:
    """Time one alternative on one scenario (its correctness run already served as the first warm-up).

    Iterates until `iters` iterations or until the next one would exceed `budget_s` (at least one).
    """
    frame, boxes = scenario.frame, scenario.boxes
    for _ in range(warmup):
        timer = Timer(runner.cuda, runner.stream).start()
        runner.infer(frame, boxes, timer)
        timer.stop()
        if runner.e2e is not None:
            runner.e2e(frame, boxes)
    samples: dict[str, list[float]] = defaultdict(list)
    t0 = time.perf_counter()
    n = 0
    while n < iters:
        t_iter = time.perf_counter()
        timer = Timer(runner.cuda, runner.stream).start()
        runner.infer(frame, boxes, timer)
        for stage, ms in timer.stop().items():
            samples[stage].append(ms)
        if runner.e2e is not None:
            t = time.perf_counter()
            runner.e2e(frame, boxes)
            samples["e2e"][-1] = (time.perf_counter() - t) * 1e3
        n += 1
        now = time.perf_counter()
        if now - t0 + (now - t_iter) > budget_s:
            break
    return {"iterations": n, "seconds": time.perf_counter() - t0, "samples": dict(samples)}


def measure_throughput(runner: Runner, batches: Sequence[int], *, iters: int, warmup: int, budget_s: float,
                       progress=None) -> list[dict]:
    """crops/s of the model alone at each batch size; a batch whose first run would take more than
    3x the budget (predicted from the previous batch) is skipped."""
    rows = []
    per_crop_s = None
    for b in batches:
        row: dict[str, Any] = {"alternative": runner.name, "batch": int(b), "device": runner.device,
                               "precision": runner.precision}
        if per_crop_s is not None and per_crop_s * b > 3 * budget_s:
            row.update(status="skipped", reason=f"predicted {per_crop_s * b:.1f} s per run > 3 x budget {budget_s:g} s")
            rows.append(row)
            if progress is not None:
                progress.update(1)
            continue
        try:
            if runner.batch is None:
                raise Skip("no batched model")
            fn = runner.batch(b)
            if runner.cuda:
                import torch

                torch.cuda.synchronize()  # the batch was made on the default stream; the model may use another
            t_first = time.perf_counter()
            for _ in range(max(1, warmup)):
                fn()
                if runner.cuda:
                    _sync(runner.stream)
            per_crop_s = (time.perf_counter() - t_first) / max(1, warmup) / b
            ms: list[float] = []
            t0 = time.perf_counter()
            while len(ms) < iters:
                t_iter = time.perf_counter()
                timer = Timer(runner.cuda, runner.stream).start()
                fn()
                timer.mark("model", gpu=True)
                ms.append(timer.stop()["model"])
                now = time.perf_counter()
                if now - t0 + (now - t_iter) > budget_s:
                    break
            median_ms = float(np.median(ms))
            per_crop_s = median_ms / 1e3 / b
            row.update(status="ok", model_ms=summarize(ms), samples=ms, crops_per_s=b / (median_ms / 1e3))
        except Exception as e:  # out of memory at a large batch, a profile limit, ...
            log.debug("throughput %s batch %d failed", runner.name, b, exc_info=True)
            row.update(status="skipped", reason=f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
            _release_cuda()
        rows.append(row)
        if progress is not None:
            progress.update(1)
    return rows


def _sync(stream) -> None:
    import torch

    (stream if stream is not None else torch.cuda.current_stream()).synchronize()


def measure_matmul_rate(device: str = "cuda", n: int | None = None, iters: int = 10) -> dict:
    """Dense matmul rate: an n^3 FP16 matmul on the GPU (CUDA events), FP32 on the CPU; median."""
    import torch

    if device == "cuda":
        n = n or MATMUL_N_CUDA
        a = torch.randn(n, n, device="cuda", dtype=torch.float16)
        b = torch.randn(n, n, device="cuda", dtype=torch.float16)
        for _ in range(3):
            a @ b
        torch.cuda.synchronize()
        ms = []
        for _ in range(iters):
            timer = Timer(True).start()
            a @ b
            timer.mark("mm", gpu=True)
            ms.append(timer.stop()["mm"])
        dtype = "fp16"
        del a, b
        _release_cuda()
    else:
        n = n or MATMUL_N_CPU
        a = torch.randn(n, n)
        b = torch.randn(n, n)
        a @ b
        ms = []
        for _ in range(max(3, iters // 2)):
            t = time.perf_counter()
            a @ b
            ms.append((time.perf_counter() - t) * 1e3)
        dtype = "fp32"
    return {"device": device, "dtype": dtype, "n": n, "ms": summarize(ms),
            "tflops": 2 * n**3 / (float(np.median(ms)) / 1e3) / 1e12}


# --------------------------------------------------------------------------------------------
# environment


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _loadavg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def _cv2_version() -> str | None:
    try:
        import cv2

        return cv2.__version__
    except ImportError:
        return None


def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:
        return None


def environment() -> dict:
    """GPU, driver, CPU and library versions."""
    import torch

    from vitpose_trt import __version__, _ext

    env: dict[str, Any] = {
        "vitpose_trt": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "onnxruntime": _version("onnxruntime"),
        "transformers": _version("transformers"),
        "tensorrt": None,
        "numpy": np.__version__,
        "opencv": _cv2_version(),
        "extension_cpp": _ext.has_cpp(),
        "extension_cuda": _ext.has_cuda_kernels(),
        "gpu": None,
        "driver": None,
        "load_average": _loadavg(),  # other processes competing for the CPU make CPU rows slower
    }
    env["tensorrt"] = tensorrt_version()
    if torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name()
        cap = torch.cuda.get_device_capability()
        env["gpu_capability"] = f"{cap[0]}.{cap[1]}"
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=20, check=True)
            env["driver"] = out.stdout.strip().splitlines()[0]
        except (OSError, subprocess.SubprocessError, IndexError):
            pass
    return env


# --------------------------------------------------------------------------------------------
# the benchmark


def _load_weights(model, checkpoint, variant, engine):
    """(model, plan_path, onnx_path, checkpoint): the FP32 CPU weights every alternative shares, the
    engine file, and where the weights came from."""
    import torch

    from vitpose_trt.engines import PLAN_SUFFIXES

    plan = onnx_path = None
    if engine is not None:
        p = Path(os.fspath(engine))
        if not p.exists():
            raise FileNotFoundError(f"engine, model or checkpoint not found: {p}")
        if p.suffix.lower() in PLAN_SUFFIXES:
            plan = p
        elif p.suffix.lower() == ".onnx":
            onnx_path = p
        elif checkpoint is not None and Path(checkpoint) != p:
            raise ValueError("--engine is a checkpoint and --checkpoint names another: give one of them")
        else:
            checkpoint = p
    if model is None:
        from vitpose_trt.checkpoint import build_random_model, load_model

        model = load_model(checkpoint, variant=variant) if checkpoint is not None else build_random_model(variant)
    p = next(model.parameters(), None)
    if p is not None and (p.device.type != "cpu" or p.dtype != torch.float32):
        model = copy.deepcopy(model)  # leave the caller's model where it is
    model = model.eval().float().cpu()
    return model, plan, onnx_path, checkpoint


def run_benchmark(*, model=None, checkpoint=None, variant: str = "b", engine=None,
                  people: Sequence[int] = (1, 4, 16), batches: Sequence[int] = (),
                  alternatives: str | Sequence[str] = "auto", iters: int = 50, warmup: int = 5,
                  max_seconds_per_row: float = 10.0, mode: str = "udp", flip_test: bool = False, flip_pairs=None,
                  device: str | None = None, coco_sample=None, frame_size: tuple[int, int] = FRAME_SIZE,
                  threads: int | None = None, matmul: bool = True, progress: bool = True,
                  extra: dict[str, Callable[[BenchContext], Runner]] | None = None) -> dict:
    """Run the benchmark and return every number (the dict `--json` writes).

    Args:
        model: a ViTPose to benchmark (its FP32 CPU copy is the reference); default: `checkpoint`,
            else the fixed-seed random `variant`.
        checkpoint: weights for every alternative (official/HF checkpoint).
        variant: the random model's size when neither model nor checkpoint is given ("b").
        engine: a TensorRT plan (the tensorrt row), an .onnx (the onnxruntime row) or a checkpoint.
            A plan built from random weights matches the default random weights (same seed).
        people: people per frame, one scenario each.
        batches: batch sizes for the model-throughput table (empty: skipped).
        alternatives: "auto" or a comma-separated list of names / aliases (see ALTERNATIVES, ALIASES).
        iters: timed iterations per row (GPU; CPU rows usually stop at the time budget first).
        warmup: untimed iterations first on GPU rows (CPU rows: the correctness run is the warm-up).
        max_seconds_per_row: time budget per (alternative, scenario) and per (alternative, batch).
        device: "cpu" skips every CUDA row; None uses the GPU where there is one.
        coco_sample: the coco-sample folder; None: the default place; False: synthetic frames.
        threads: CPU threads for PyTorch and ONNX Runtime (None: their defaults, one per core).
        matmul: measure the dense matmul rate (for the throughput fraction).
        progress: show a tqdm progress bar on stderr.
        extra: more alternatives, name -> factory(BenchContext) -> Runner (tests, experiments).

    Returns:
        {"environment", "model", "settings", "scenarios", "rows", "throughput", "matmul", "skipped"}.
    """
    import torch

    from vitpose_trt.geometry import check_mode

    check_mode(mode)
    if iters < 1 or warmup < 0 or max_seconds_per_row <= 0:
        raise ValueError(f"need iters >= 1, warmup >= 0 and max_seconds_per_row > 0; got {iters}, {warmup}, "
                         f"{max_seconds_per_row}")
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    saved_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _run_benchmark(model, checkpoint, variant, engine, people, batches, alternatives, iters, warmup,
                              max_seconds_per_row, mode, flip_test, flip_pairs, device, coco_sample, frame_size,
                              threads, matmul, progress, extra)
    finally:
        torch.set_num_threads(saved_threads)


def _run_benchmark(model, checkpoint, variant, engine, people, batches, alternatives, iters, warmup,
                   max_seconds_per_row, mode, flip_test, flip_pairs, device, coco_sample, frame_size,
                   threads, matmul, progress, extra) -> dict:
    from tqdm import tqdm

    from vitpose_trt import _ext

    names = resolve_alternatives(alternatives) if alternatives else []
    factories = {n: FACTORIES[n] for n in names}
    factories.update(extra or {})
    people = [int(p) for p in people]
    batches = [int(b) for b in batches]
    model, plan, onnx_path, checkpoint = _load_weights(model, checkpoint, variant, engine)
    config = model.config
    random_weights = bool(getattr(model, "random_weights", False))
    no_cuda = "--device cpu was given" if device == "cpu" else _cuda_reason()

    macs = count_macs(config)
    result: dict[str, Any] = {
        "environment": environment(),
        "model": {
            "variant": config.variant, "embed_dim": config.embed_dim, "depth": config.depth,
            "num_heads": config.num_heads, "decoder": config.decoder, "num_keypoints": config.num_keypoints,
            "input_size": list(config.input_size), "random_weights": random_weights,
            "weights": "random (fixed seed)" if random_weights else str(checkpoint or "given model"),
            "macs_per_crop": macs, "flops_per_crop": 2 * macs["total"],
        },
        "settings": {
            "people": people, "batches": batches, "alternatives": list(factories), "iters": iters, "warmup": warmup,
            "max_seconds_per_row": max_seconds_per_row, "mode": mode, "flip_test": flip_test,
            "engine": str(engine) if engine is not None else None, "frame_size": list(frame_size),
            "threads": threads,
        },
        "rows": [], "throughput": [], "skipped": {}, "matmul": {},
    }
    if random_weights:
        log.warning("benchmarking RANDOM weights: speed does not depend on the weights; keypoints are meaningless")

    scenarios = build_scenarios(people, coco_sample, frame_size)
    result["scenarios"] = [{"people": s.people, "source": s.source, "frame": list(s.frame.shape)} for s in scenarios]
    log.info("computing the FP32 reference keypoints (PyTorch FP32 CPU + numpy pre/post)")
    references = []
    for s in scenarios:
        t = time.perf_counter()
        references.append(reference_keypoints(model, s.frame, s.boxes, mode, flip_test, flip_pairs))
        log.info("reference, %d people: %.1f s", s.people, time.perf_counter() - t)

    with tempfile.TemporaryDirectory(prefix="vitpose_bench_") as tmp:
        ctx = BenchContext(model=model, mode=mode, flip_test=flip_test, flip_pairs=flip_pairs, cuda=not no_cuda,
                           no_cuda_reason=no_cuda, plan_path=plan, onnx_path=onnx_path, tmpdir=Path(tmp),
                           cpu_impl=_ext.default_cpu_impl(), threads=threads)
        if matmul:
            if ctx.cuda:
                result["matmul"]["cuda"] = measure_matmul_rate("cuda")
            result["matmul"]["cpu"] = measure_matmul_rate("cpu")
        total = len(factories) * (len(scenarios) + len(batches))
        bar = tqdm(total=total, desc="bench", unit="row", disable=not progress, file=sys.stderr, dynamic_ncols=True)
        try:
            for name, factory in factories.items():
                bar.set_description(f"bench {name}")
                try:
                    runner = factory(ctx)
                except Skip as e:
                    result["skipped"][name] = str(e)
                    log.info("%s: skipped (%s)", name, e)
                    bar.update(len(scenarios) + len(batches))
                    continue
                except Exception as e:  # an alternative that breaks must not take the others down
                    log.warning("%s: cannot set up: %s", name, e, exc_info=log.isEnabledFor(logging.DEBUG))
                    result["skipped"][name] = f"setup failed: {type(e).__name__}: {e}"
                    bar.update(len(scenarios) + len(batches))
                    continue
                result["rows"] += _run_scenarios(runner, scenarios, references, iters, warmup,
                                                 max_seconds_per_row, bar)
                if batches:
                    if runner.batch is None:
                        for b in batches:
                            result["throughput"].append({"alternative": name, "batch": b, "status": "skipped",
                                                         "reason": "no batched model (one box at a time)"})
                        bar.update(len(batches))
                    else:
                        wu = warmup if runner.cuda else 1
                        result["throughput"] += measure_throughput(runner, batches, iters=iters, warmup=wu,
                                                                   budget_s=max_seconds_per_row, progress=bar)
                del runner
                _release_cuda()
        finally:
            bar.close()

    if matmul and any(r.get("device") == "cpu" for r in result["throughput"]):
        # CPU rates swing with whatever else runs on the machine: keep the better of a start and an end reading
        again = measure_matmul_rate("cpu")
        first = result["matmul"]["cpu"]
        again["readings_tflops"] = [first["tflops"], again["tflops"]]
        result["matmul"]["cpu"] = max(first, again, key=lambda m: m["tflops"])
        result["matmul"]["cpu"]["readings_tflops"] = again["readings_tflops"]
    flops = result["model"]["flops_per_crop"]
    for row in result["throughput"]:
        if row.get("status") == "ok":
            peak = result["matmul"].get("cuda" if row["device"] == "cuda" else "cpu")
            row["tflops"] = row["crops_per_s"] * flops / 1e12
            row["fraction_of_matmul"] = row["tflops"] / peak["tflops"] if peak else None
    _add_speedups(result["rows"])
    result["environment"]["load_average_end"] = _loadavg()
    return result


def _run_scenarios(runner: Runner, scenarios, references, iters, warmup, budget, bar) -> list[dict]:
    rows = []
    for scenario, ref in zip(scenarios, references):
        bar.set_description(f"bench {runner.name} {scenario.people}p")
        row: dict[str, Any] = {"alternative": runner.name, "people": scenario.people, "device": runner.device,
                               "precision": runner.precision, "description": runner.description,
                               "notes": list(runner.notes)}
        try:
            if runner.prepare is not None:
                runner.prepare(scenario.frame, scenario.boxes)
            # correctness first (this run is also the first warm-up)
            if runner.e2e is not None:
                kp = runner.e2e(scenario.frame, scenario.boxes)
            else:
                timer = Timer(runner.cuda, runner.stream).start()
                kp = runner.infer(scenario.frame, scenario.boxes, timer)
                timer.stop()
            row.update(keypoint_disagreement(kp, ref))
            extra_warmup = max(0, warmup - 1) if runner.cuda else CPU_EXTRA_WARMUP
            m = measure_frames(runner, scenario, iters=iters, warmup=extra_warmup, budget_s=budget)
            row["status"] = "ok"
            row["iterations"] = m["iterations"]
            row["stages"] = {k: summarize(v) for k, v in m["samples"].items() if k != "e2e"}
            row["e2e"] = summarize(m["samples"]["e2e"])
            row["samples"] = m["samples"]
        except Exception as e:
            log.warning("%s, %d people: failed: %s", runner.name, scenario.people, e,
                        exc_info=log.isEnabledFor(logging.DEBUG))
            row.update(status="failed", reason=f"{type(e).__name__}: {e}")
            _release_cuda()
        rows.append(row)
        bar.update(1)
    return rows


def _add_speedups(rows: list[dict]) -> None:
    """Per row: pre+post share of e2e, and speed-up over the baseline at the same people count."""
    base = {r["people"]: r["e2e"]["median"] for r in rows if r["alternative"] == "baseline" and r.get("status") == "ok"}
    for r in rows:
        if r.get("status") != "ok":
            continue
        e2e = r["e2e"]["median"]
        pre_post = sum(r["stages"][s]["median"] for s in ("crop", "decode") if s in r["stages"])
        r["pre_post_fraction"] = pre_post / e2e if "crop" in r["stages"] else None
        r["speedup_vs_baseline"] = base[r["people"]] / e2e if r["people"] in base else None


# --------------------------------------------------------------------------------------------
# output


def _fmt_ms(v: float | None) -> str:
    if v is None:
        return "-"
    if v >= 1000:
        return f"{v:.0f}"
    if v >= 100:
        return f"{v:.1f}"
    if v >= 10:
        return f"{v:.2f}"
    return f"{v:.3f}"


def _fmt_px(v: float | None) -> str:
    if v is None:
        return "-"
    if math.isinf(v):
        return "inf"
    return f"{v:.3g}" if v >= 0.001 else f"{v:.1e}" if v > 0 else "0"


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    lines = ["  ".join(h.rjust(w) if i else h.ljust(w) for i, (h, w) in enumerate(zip(header, widths)))]
    lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        lines.append("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))))
    return "\n".join(lines)


def format_table(result: dict) -> str:
    """The human-readable report of a `run_benchmark` result."""
    env, m, st = result["environment"], result["model"], result["settings"]
    out = []
    weights = ("RANDOM WEIGHTS (fixed seed): speed does not depend on the weights; keypoints are meaningless"
               if m["random_weights"] else f"weights: {m['weights']}")
    gmac = m["macs_per_crop"]["total"] / 1e9
    out.append(f"vitpose-trt bench: {m['variant']} (D={m['embed_dim']}, depth {m['depth']}, {m['decoder']} decoder, "
               f"K={m['num_keypoints']}, {m['input_size'][0]}x{m['input_size'][1]}): {gmac:.2f} GMAC = "
               f"{2 * gmac:.1f} GFLOP per crop")
    out.append(weights)
    src = result["scenarios"][0]["source"] if result["scenarios"] else "-"
    out.append(f"mode {st['mode']}, flip test {'on' if st['flip_test'] else 'off'}; frame "
               f"{st['frame_size'][1]}x{st['frame_size'][0]} in host memory, boxes: {src}")
    gpu = f"{env['gpu']} (driver {env['driver']}, CUDA {env['torch_cuda']})" if env["gpu"] else "none"
    out.append(f"CPU: {env['cpu']}, {env['cpu_cores']} cores; GPU: {gpu}")
    out.append(f"torch {env['torch']}, onnxruntime {env['onnxruntime']}, transformers {env['transformers']}, "
               f"tensorrt {env['tensorrt'] or 'not installed'}; C++ ext {'yes' if env['extension_cpp'] else 'no'}, "
               f"CUDA kernels {'yes' if env['extension_cuda'] else 'no'}")
    for key, peak in result["matmul"].items():
        out.append(f"measured dense matmul rate ({key}, {peak['dtype']} {peak['n']}^3): {peak['tflops']:.3g} TFLOP/s")

    out.append("")
    out.append("Latency per frame (ms; stage columns are medians; n = timed iterations, "
               "p99 means little when n is small)")
    header = ["alternative", "people", "dev", *STAGES, "e2e med", "p90", "p99", "n", "pre+post", "x base",
              "max err px", "ties", "excl ties"]
    rows, failed = [], []
    for r in result["rows"]:
        if r.get("status") != "ok":
            failed.append(f"  {r['alternative']}, {r['people']} people: {r.get('reason', 'failed')}")
            continue
        stages = [_fmt_ms(r["stages"][s]["median"]) if s in r["stages"] else "-" for s in STAGES]
        e = r["e2e"]
        pp = f"{100 * r['pre_post_fraction']:.1f}%" if r.get("pre_post_fraction") is not None else "-"
        sp = f"{r['speedup_vs_baseline']:.2f}" if r.get("speedup_vs_baseline") is not None else "-"
        rows.append([r["alternative"], str(r["people"]), f"{r['device']} {r['precision']}", *stages,
                     _fmt_ms(e["median"]), _fmt_ms(e["p90"]), _fmt_ms(e["p99"]), str(e["n"]), pp, sp,
                     _fmt_px(r.get("max_px")), str(r.get("ties", "-")), _fmt_px(r.get("max_px_excl_ties"))])
    out.append(_table(header, rows) if rows else "(no row ran)")
    if failed:
        out.append("Failed:")
        out += failed
    out.append("pre+post: (crop + decode) / e2e. x base: e2e speed-up over the baseline row at the same people count.")
    out.append("max err px: largest keypoint distance (frame pixels) to the FP32 reference (PyTorch FP32 CPU + "
               "numpy pre/post) on the same frame; ties: keypoints whose argmax went to another, near-equal "
               f"maximum of the reference heatmap (within {100 * TIE_FRACTION:g}% of the peak's prominence); "
               "excl ties: max err px over the others.")
    if m["random_weights"]:
        out.append("  Random weights give flat heatmaps full of near-equal maxima, so any rounding difference "
                   "(C++ vs OpenCV crops, FP16) moves a few keypoints far: read 'excl ties', and judge FP16 "
                   "accuracy with trained weights (--checkpoint).")

    if result["throughput"]:
        out.append("")
        out.append("Model throughput (the model alone, crops already in place)")
        header = ["alternative", "batch", "dev", "model ms", "n", "crops/s", "TFLOP/s", "of matmul"]
        rows = []
        skipped: dict[tuple[str, str], list[str]] = {}
        for r in result["throughput"]:
            if r.get("status") != "ok":
                skipped.setdefault((r["alternative"], r.get("reason", "skipped")), []).append(str(r["batch"]))
                continue
            frac = f"{100 * r['fraction_of_matmul']:.1f}%" if r.get("fraction_of_matmul") is not None else "-"
            rows.append([r["alternative"], str(r["batch"]), f"{r['device']} {r['precision']}",
                         _fmt_ms(r["model_ms"]["median"]), str(r["model_ms"]["n"]), f"{r['crops_per_s']:.3g}",
                         f"{r['tflops']:.3g}", frac])
        out.append(_table(header, rows) if rows else "(no batch ran)")
        for (name, reason), bs in skipped.items():
            out.append(f"  {name}, batch {','.join(bs)}: skipped ({reason})")
        out.append("of matmul: achieved model TFLOP/s over the dense matmul rate measured above on the same device.")

    if result["skipped"]:
        out.append("")
        out.append("Skipped:")
        for name, reason in result["skipped"].items():
            out.append(f"  {name}: {reason}")
    notes = {(r["alternative"], n) for r in result["rows"] for n in r.get("notes", [])}
    if notes:
        out.append("Notes:")
        for name, note in sorted(notes):
            out.append(f"  {name}: {note}")
    return "\n".join(out)


def _int_ticks(ax, values) -> None:
    values = sorted(set(values))
    if values:
        ax.set_xscale("log", base=2)
        ax.set_xticks(values)
        ax.set_xticklabels([str(v) for v in values])
        ax.minorticks_off()


def _series(rows: list[dict], x: str, y: Callable[[dict], float]) -> dict[str, list[tuple[int, float]]]:
    """{alternative: sorted [(x, y)]} over the rows that ran."""
    out: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for r in rows:
        if r.get("status") == "ok":
            out[r["alternative"]].append((r[x], y(r)))
    return {name: sorted(pts) for name, pts in out.items()}


def _plot_lines(ax, series: dict[str, list[tuple[int, float]]], xlabel: str, ylabel: str, title: str) -> None:
    for name, pts in series.items():
        ax.plot([p for p, _ in pts], [v for _, v in pts], marker="o", label=name)
    _int_ticks(ax, [p for pts in series.values() for p, _ in pts])
    ax.set(xlabel=xlabel, ylabel=ylabel, yscale="log", title=title)
    ax.grid(True, which="both", alpha=0.3)
    if series:
        ax.legend(fontsize=8)


def plot_results(result: dict, path: str | os.PathLike) -> Path:
    """PNG: e2e median latency vs people per frame, and throughput vs batch, one line per alternative."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    latency = _series(result["rows"], "people", lambda r: r["e2e"]["median"])
    _plot_lines(ax1, latency, "people per frame", "end-to-end latency, median (ms)", "latency per frame")
    throughput = _series(result["throughput"], "batch", lambda r: r["crops_per_s"])
    _plot_lines(ax2, throughput, "batch size (crops)", "crops / s",
                "model throughput" if throughput else "model throughput (not measured: --batches)")
    m = result["model"]
    note = ", RANDOM WEIGHTS" if m["random_weights"] else ""
    dev = result["environment"]["gpu"] or result["environment"]["cpu"]
    fig.suptitle(f"vitpose-trt bench: {m['variant']}{note} on {dev}", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_json(result: dict, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def default(o):
        if isinstance(o, (np.floating, np.integer)):
            return o.item()
        if isinstance(o, Path):
            return str(o)
        raise TypeError(f"not JSON serializable: {type(o).__name__}")

    def clean(o):  # JSON has no inf/NaN
        if isinstance(o, float) and not math.isfinite(o):
            return None if math.isnan(o) else ("inf" if o > 0 else "-inf")
        if isinstance(o, dict):
            return {k: clean(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [clean(v) for v in o]
        return o

    with open(path, "w") as f:
        json.dump(clean(result), f, indent=1, default=default)
    return path


def int_list(text: str | Sequence[int] | None, what: str) -> list[int]:
    if text is None or text == "":
        return []
    if not isinstance(text, str):
        return [int(v) for v in text]
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{what}: expected comma-separated integers, got {text!r}") from None
    if any(v < 1 for v in values):
        raise ValueError(f"{what}: every value must be >= 1, got {text!r}")
    return values


__all__ = [
    "ALTERNATIVES", "BenchContext", "Runner", "Scenario", "Skip", "Timer", "build_hf_model", "build_scenarios",
    "count_macs", "environment", "format_table", "keypoint_disagreement", "measure_matmul_rate", "model_flops",
    "plot_results", "reference_keypoints", "resolve_alternatives", "run_benchmark", "summarize",
    "to_hf_state_dict", "write_json",
]
