"""`vitpose-trt`: a thin argparse layer over the Python API: export, quantize, build, infer, eval, bench,
bench-video, triton-repo, serve."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

from vitpose_trt import __version__
from vitpose_trt.atomic import output_folder, writable_target, write_json
from vitpose_trt.coco import image_id_from_name, keypoint_results, load_detections
from vitpose_trt import datasets
from vitpose_trt import detect
from vitpose_trt.detect import FAMILIES as DETECTOR_FAMILIES
from vitpose_trt.detect import FORMATS as DETECTOR_FORMATS
from vitpose_trt.engines import BACKENDS, PRECISIONS
from vitpose_trt.engines.sidecar import BUILD_DEFAULTS, rebuild_command
from vitpose_trt.draw import draw_poses
from vitpose_trt.geometry import MODES
from vitpose_trt.sources import ImageSource, open_sources
from vitpose_trt.tracking import ONE_EURO_BETA, ONE_EURO_D_CUTOFF, ONE_EURO_MIN_CUTOFF
from vitpose_trt.triton.repository import write_repository
from vitpose_trt.video_io import load_frame_detections, write_image_atomic

# Modules that import torch, onnx or TensorRT (export, checkpoint, pipeline, bench, build_engine, ...)
# are imported by the subcommand that needs them, so that `vitpose-trt --help` stays fast.


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """--help shows each option's default, except the uninformative None/False ones."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def _fraction(text: str) -> float:
    """A score threshold: a number in [0, 1] (argparse's type: its error names the option)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a score threshold in [0, 1], got {text}")
    return value


def _common_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mode", choices=MODES, default="udp",
                   help="pre/post pipeline: udp (official ViTPose) or classic")
    p.add_argument("--flip-test", action="store_true", help="also run mirrored crops and average (2x compute)")
    p.add_argument("--backend", choices=BACKENDS, default="auto",
                   help="engine runner (auto: from the file type and the machine)")
    p.add_argument("--device", default=None, help="PyTorch device: cpu or cuda (default: cuda when available)")
    p.add_argument("--precision", choices=PRECISIONS, default=None,
                   help="fp32/fp16: PyTorch precision (default: fp16 on CUDA, fp32 on the CPU); int8: on the CPU, "
                        "ONNX Runtime with the MatMuls quantized (made once, checked against FP32). A TensorRT "
                        "engine's precision is fixed when it is built (INT8/FP8: `vitpose-trt quantize`)")


def _dataset_args(p: argparse.ArgumentParser, expert: bool = True) -> None:
    p.add_argument("--dataset", default=None,
                   help=f"keypoint dataset of the model ({', '.join(datasets.names())}): picks a ViTPose++ checkpoint's expert "
                        "and brings its flip pairs, skeleton and sigmas (default: what the model records, else its K)")
    if expert:
        p.add_argument("--expert", type=int, default=None,
                       help="ViTPose++ expert (0-5) where it differs from --dataset's (Hugging Face ViTPose++ "
                            "checkpoints hold only the COCO head)")


def _pose_options(args) -> dict:
    """The pose model's settings that `_common_model_args` and `_dataset_args` parse, by their
    `PoseConfig` names (`VitPoseTRT(engine, **_pose_options(args))`; `EvalConfig` and
    `RepositoryConfig` take them by the same names)."""
    names = ("mode", "flip_test", "backend", "device", "precision", "dataset", "expert")
    return {name: getattr(args, name) for name in names}


def _no_progress_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _overwrite_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--overwrite", action="store_true", help="use a non-empty --out, replacing an earlier run's results")


def build_parser() -> argparse.ArgumentParser:
    """The `vitpose-trt` parser: global options, then one subparser per command (`_add_<command>_arguments`)."""
    parser = argparse.ArgumentParser(prog="vitpose-trt", description=__doc__,
                                     formatter_class=_HelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for add_arguments in (_add_export_arguments, _add_quantize_arguments, _add_build_arguments, _add_infer_arguments,
                          _add_bench_arguments, _add_eval_arguments, _add_triton_repo_arguments, _add_serve_arguments,
                          _add_bench_video_arguments):
        add_arguments(sub)
    for sp in sub.choices.values():  # every subcommand: defaults in --help, -v after the subcommand too
        sp.formatter_class = _HelpFormatter
        sp.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="debug logging")
    return parser


def _add_export_arguments(sub) -> None:
    p = sub.add_parser("export", help="export a checkpoint to ONNX (opset >= 17, dynamic batch) and verify it")
    p.add_argument("checkpoint", nargs="?", default=None,
                   help="official .pth, Hugging Face folder/.safetensors, or easy_ViTPose .pth "
                        "(omit for random-weight ViTPose-B)")
    p.add_argument("-o", "--output", required=True, help="output .onnx path")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (>= 17)")
    p.add_argument("--variant", default=None, help="s/b/l/h when it cannot be inferred (random weights)")
    p.add_argument("--num-keypoints", type=int, default=None, help="K (default: from the checkpoint, else 17)")
    _dataset_args(p)
    p.add_argument("--no-check", action="store_true", help="skip the ONNX Runtime vs PyTorch check")


def _add_quantize_arguments(sub) -> None:
    p = sub.add_parser("quantize", help="a Q/DQ .onnx for an INT8 or FP8 TensorRT engine, calibrated on your photos",
                       description="Quantizes the inputs of every MatMul (INT8: weights per channel, activations at "
                                   "the 99.99th percentile; FP8 E4M3: max calibration), calibrated on person crops "
                                   "of your photos, and checks the graph against FP32 with ONNX Runtime before "
                                   "writing it. Then: "
                                   + rebuild_command({"source": {"path": "OUT.onnx"}, "precision": "int8"}))
    p.add_argument("model", help="checkpoint or FP32 .onnx (vitpose-trt export)")
    p.add_argument("-o", "--output", required=True, help="the Q/DQ .onnx to write")
    p.add_argument("--calib", nargs="+", required=True, metavar="IMAGES",
                   help="images with people for calibration: files, folders or globs")
    p.add_argument("--dets", default=None,
                   help="person boxes for the --calib images: COCO detections JSON (default: --detector)")
    p.add_argument("--detector", default=None, help="person detector .onnx for the --calib images (default: HOG, weak)")
    p.add_argument("--mode", choices=("int8", "fp8"), default="int8", help="INT8 (any GPU) or FP8 E4M3 (Ada/Hopper+)")
    p.add_argument("--calib-crops", type=int, default=256, help="most calibration crops (the most confident boxes)")
    p.add_argument("--pipeline", choices=MODES, default="udp", help="crop pipeline: udp (official ViTPose) or classic")
    p.add_argument("--no-verify", action="store_true", help="write the graph even if it fails the check against FP32")


def _add_build_arguments(sub) -> None:
    p = sub.add_parser("build", help="build a TensorRT engine (needs TensorRT and an NVIDIA GPU)",
                       description="Builds the pose model's engine, or a person detector's: an .onnx without "
                                   "ViTPose metadata whose outputs --detector reads (raw YOLOv8/YOLO11, Ultralytics "
                                   "nms=True, mmdeploy YOLOX/RTMDet) is built as a detector (one image at its input "
                                   "size), verified against ONNX Runtime on the sample photos. Then: "
                                   "vitpose-trt infer ... --detector det.engine")
    p.add_argument("source", help="checkpoint, FP32 .onnx, a Q/DQ .onnx from vitpose-trt quantize (INT8/FP8), or "
                                  "a person detector's .onnx")
    p.add_argument("-o", "--output", required=True, help="output .engine path (a .json sidecar is written next to it)")
    p.add_argument("--fp16", action="store_true", help="FP16 engine with LayerNorm kept in FP32 (recommended)")
    p.add_argument("--max-batch", type=int, default=BUILD_DEFAULTS["max_batch"],
                   help="most boxes per engine call (--flip-test doubles the crops)")
    p.add_argument("--opt-batch", type=int, default=BUILD_DEFAULTS["opt_batch"],
                   help="box count TensorRT tunes for")
    _dataset_args(p)
    p.add_argument("--fp32-softmax", action="store_true",
                   help="also keep the attention softmax in FP32 (if the accuracy check asks for it)")
    p.add_argument("--flip-test", action="store_true", help="engine for flip test (doubles the batch range)")
    p.add_argument("--mode", choices=MODES, default=BUILD_DEFAULTS["mode"], help="pipeline recorded in the sidecar")
    p.add_argument("--no-verify", action="store_true",
                   help="skip the build-time accuracy check (against PyTorch; a detector: against ONNX Runtime)")
    p.add_argument("--workspace-gb", type=float, default=None, help="builder workspace limit in GiB")
    p.add_argument("--detector-format", choices=("auto", *DETECTOR_FORMATS), default="auto",
                   help="a detector's output format (auto: from the graph's outputs); naming it builds a detector")
    p.add_argument("--detector-family", choices=("auto", *DETECTOR_FAMILIES), default="auto",
                   help="a detector's pre-processing, recorded in the engine (auto: yolo for YOLO outputs, yolox "
                        "for dets+labels; RTMDet needs rtmdet)")


def _add_infer_arguments(sub) -> None:
    p = sub.add_parser("infer", help="pose estimation on images, videos, cameras or streams",
                       description="Images: keypoints.json (COCO results) + overlays. Videos, cameras, "
                                   "streams: OUT/<name>.jsonl (one line per frame, tracked ids) + OUT/<name>.mp4. "
                                   "Boxes come from --detector, else --boxes, else OpenCV's HOG (weak).")
    p.add_argument("inputs", nargs="+", metavar="SOURCE",
                   help="image files, folders or globs of images, video files, camera indices (0), "
                        "stream URLs (rtsp://, http://)")
    p.add_argument("--engine", default=None, help="pose model: TensorRT .engine, .onnx or checkpoint")
    p.add_argument("--random-weights", action="store_true",
                   help="run without --engine on a random-weight ViTPose-B (meaningless poses: to try the pipeline)")
    p.add_argument("--out", required=True, help="output folder: new or empty (created), see --overwrite")
    p.add_argument("--overwrite", action="store_true",
                   help="use a non-empty --out, replacing the results of an earlier run there (nothing else)")
    _infer_box_args(p)
    _infer_drawing_and_video_args(p)
    _no_progress_arg(p)
    _dataset_args(p)
    _common_model_args(p)


def _infer_box_args(p: argparse.ArgumentParser) -> None:
    """infer: where the person boxes come from (a detector, a file, the whole image) and which count."""
    p.add_argument("--detector", default=None,
                   help="person detector: an .onnx (raw YOLOv8/YOLO11, Ultralytics nms=True, mmdeploy YOLOX/RTMDet "
                        "dets+labels, or (1,N,6) x1,y1,x2,y2,score,class exports), or a known name (yolo11n, "
                        "yolov8s, ...: exported once with Ultralytics where it is installed)")
    p.add_argument("--detector-format", choices=("auto", *DETECTOR_FORMATS), default="auto",
                   help="detector output format (auto: from the graph's outputs)")
    p.add_argument("--detector-family", choices=("auto", *DETECTOR_FAMILIES), default="auto",
                   help="detector pre-processing (auto: yolo for YOLO outputs, yolox for dets+labels)")
    p.add_argument("--det-thr", type=_fraction, default=0.3, help="detector score threshold, 0..1")
    p.add_argument("--detect-ahead", choices=("auto", "on", "off"), default="auto",
                   help="videos: run the detector on the next frame while this one is posed (the same results, "
                        "one frame more latency); auto: when the pose model runs on a GPU (on a CPU both use "
                        "every core and together they were slower)")
    p.add_argument("--boxes", default=None,
                   help="boxes from a file instead of a detector: for images COCO detections JSON (matched by "
                        "file name or image id); for a video a MOT det.txt or JSON lines {\"frame\": i, \"boxes\": "
                        "[[x1,y1,x2,y2,score], ...]}")
    p.add_argument("--whole-frame", action="store_true",
                   help="images: each image is one person box (pre-cropped people); no detector")
    p.add_argument("--box-thr", type=_fraction, default=0.0,
                   help="ignore --boxes detections scoring below this (keypoints.json keeps every box above it, "
                        "as COCO evaluation wants)")


def _infer_drawing_and_video_args(p: argparse.ArgumentParser) -> None:
    """infer: what the overlays draw, and how videos are tracked, smoothed, rendered and shown."""
    p.add_argument("--draw-thr", type=_fraction, default=0.3,
                   help="image overlays: draw only boxes scoring at least this (a detector file holds many weak boxes)")
    p.add_argument("--kpt-thr", type=_fraction, default=0.3, help="draw keypoints scoring above this, 0..1")
    p.add_argument("--det-every", type=int, default=1,
                   help="videos: run the detector every N frames; in between, boxes follow the keypoints "
                        "(boxes from --boxes are used on every frame)")
    p.add_argument("--smooth", action="store_true", help="videos: One-Euro filter on every keypoint of every track")
    p.add_argument("--min-cutoff", type=float, default=ONE_EURO_MIN_CUTOFF,
                   help="One-Euro cutoff (Hz) when still: lower = smoother, more lag")
    p.add_argument("--beta", type=float, default=ONE_EURO_BETA, help="One-Euro speed coefficient: higher = less lag")
    p.add_argument("--d-cutoff", type=float, default=ONE_EURO_D_CUTOFF, help="One-Euro cutoff (Hz) of the speed")
    p.add_argument("--no-render", action="store_true", help="videos: skip the annotated .mp4")
    p.add_argument("--show", action="store_true", help="videos: show the annotated frames in a window (q/Esc stops)")
    p.add_argument("--max-frames", type=int, default=None, help="videos: stop after this many frames (cameras)")


def _add_bench_arguments(sub) -> None:
    p = sub.add_parser("bench", help="latency per frame and per stage (random weights by default)")
    p.add_argument("--engine", default=None,
                   help="TensorRT .engine (tensorrt row), .onnx (onnxruntime row) or checkpoint "
                        "(default: random ViTPose-B, which a random-weight engine build matches)")
    p.add_argument("--checkpoint", default=None,
                   help="weights for the PyTorch/ONNX/transformers rows (default: random, fixed seed)")
    p.add_argument("--variant", default="b", help="random model size s/b/l/h when no checkpoint")
    p.add_argument("--people", default="1,4,16", help="people per frame, comma-separated (64 works)")
    p.add_argument("--batches", default=None,
                   help="also measure model throughput at these batch sizes, e.g. 1,2,4,8,16,32,64,128")
    _bench_run_args(p)
    p.add_argument("--coco-sample", default=None,
                   help="coco-sample folder for real frames/boxes (default: $VITPOSE_TRT_COCO_SAMPLE or "
                        "../shared/data/coco-sample; synthetic where absent)")
    p.add_argument("--synthetic", action="store_true", help="synthetic frame and boxes even where coco-sample exists")
    _no_progress_arg(p)
    p.add_argument("--out", default=None,
                   help="results folder for table.txt, bench.json and bench.png, new or empty (default: "
                        "bench_out/<date-time>/)")
    _overwrite_arg(p)
    p.add_argument("--json", default=None, help="also write the raw numbers here")
    p.add_argument("--plot", default=None, help="also write the PNG plot here (needs matplotlib)")
    _common_model_args(p)


def _bench_run_args(p: argparse.ArgumentParser) -> None:
    """bench: how long each row is measured, which rows run and must pass, on how many threads."""
    p.add_argument("--iters", type=int, default=50, help="timed iterations per row (see --max-seconds-per-row)")
    p.add_argument("--warmup", type=int, default=5,
                   help="untimed iterations first on GPU rows (CPU rows: the correctness run)")
    p.add_argument("--max-seconds-per-row", type=float, default=10.0,
                   help="time budget per row (alternative x people, alternative x batch): fewer than --iters "
                        "iterations run when it is reached, at least one (CPU rows hit it)")
    p.add_argument("--alternatives", default="auto",
                   help="comma-separated rows: tensorrt, pytorch-cuda, onnxruntime, onnxruntime-int8, pytorch-cpu, "
                        "baseline, transformers, torch-fp16-eager, or the groups pipeline, gpu, cpu, int8 "
                        "(auto: all; those that cannot run here are listed as skipped)")
    p.add_argument("--require", default=None,
                   help="comma-separated alternatives that must run with every row ok, else exit status 1 "
                        "(e.g. pytorch-cuda on a GPU machine: a failing GPU row fails the command; default: none)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for PyTorch and ONNX Runtime (default: all)")


def _add_eval_arguments(sub) -> None:
    p = sub.add_parser("eval", help="COCO keypoint AP by the official protocol (rescoring, OKS-NMS, COCOeval)")
    p.add_argument("--images", default=None, help="COCO image folder (val2017/)")
    p.add_argument("--ann", required=True, help="keypoint annotations (person_keypoints_val2017.json)")
    p.add_argument("--dets", default=None,
                   help="person detections, COCO results format (COCO_val2017_detections_AP_H_56_person.json); "
                        "default: the ground-truth boxes")
    p.add_argument("--engine", default=None, help="engine (.engine), .onnx or checkpoint to evaluate")
    p.add_argument("--results", default=None,
                   help="score this COCO keypoint results file as it is, without a model")
    p.add_argument("--compare", nargs="+", default=[], metavar="ENGINE",
                   help="other engines run on the same boxes: AP side by side and keypoint distances")
    p.add_argument("--limit", type=int, default=None, help="only the first N images (by id), for a quick run")
    p.add_argument("--det-thr", type=_fraction, default=0.0,
                   help="drop detections scoring below this (0.0 is the official setting)")
    p.add_argument("--out", default=None, help="write OUT/metrics.json and OUT/keypoints.json here (new or empty folder)")
    _overwrite_arg(p)
    _no_progress_arg(p)
    _dataset_args(p)
    _common_model_args(p)


def _triton_model_args(p: argparse.ArgumentParser) -> None:
    """`triton-repo` and `serve` (vitpose_trt.triton): the engine served and how Triton batches and places it."""
    p.add_argument("--engine", required=True, help="TensorRT .engine (with its .json sidecar), .onnx or checkpoint")
    p.add_argument("--max-batch-crops", type=int, default=64,
                   help="most people (crops) in one engine call, and most requests batched together")
    p.add_argument("--instances", type=int, default=1,
                   help="model instances, each with its own engine: per GPU with --kind gpu")
    p.add_argument("--max-queue-delay-us", type=int, default=500,
                   help="how long Triton may hold a request to batch it with others")
    p.add_argument("--kind", choices=("auto", "cpu", "gpu"), default="auto",
                   help="instance placement: gpu (per GPU), cpu, or auto: gpu for a TensorRT engine")
    p.add_argument("--gpus", default=None, help="with --kind gpu: GPU indices, e.g. 0,1 (default: all)")
    _dataset_args(p)
    _common_model_args(p)


def _add_triton_repo_arguments(sub) -> None:
    p = sub.add_parser("triton-repo", help="write a Triton Inference Server model repository serving an engine")
    p.add_argument("out", help="repository folder to create (must not exist, or be empty)")
    _triton_model_args(p)


def _add_serve_arguments(sub) -> None:
    p = sub.add_parser("serve", help="serve an engine over HTTP and gRPC with Triton Inference Server (until Ctrl-C)")
    _triton_model_args(p)
    p.add_argument("--http-port", type=int, default=8000, help="HTTP port")
    p.add_argument("--grpc-port", type=int, default=8001, help="gRPC port")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on: 127.0.0.1 is this machine only, 0.0.0.0 every interface")
    p.add_argument("--ready-timeout", type=float, default=300.0, help="longest wait for the model to load, in s")


def _add_bench_video_arguments(sub) -> None:
    p = sub.add_parser("bench-video", help="end-to-end video fps and per-stage times (decode, detect, pose, "
                                           "track, render/encode) on a synthetic 1280x720 video")
    p.add_argument("--engine", default=None, help="pose model (default: random weights of --variant)")
    p.add_argument("--variant", default="b", help="random model size s/b/l/h when no --engine (as bench; s is "
                                                "quicker on a CPU)")
    p.add_argument("--people", default="1,4,16", help="people per frame, comma-separated")
    p.add_argument("--det-every", default="1,5", help="detector periods to measure, comma-separated")
    p.add_argument("--frames", type=int, default=20, help="frames per scenario (after --warmup)")
    p.add_argument("--warmup", type=int, default=2, help="untimed frames first")
    p.add_argument("--size", default="1280x720", help="frame size WxH")
    p.add_argument("--detector", default=None,
                   help="person detector .onnx or known name (default: the known boxes of the synthetic people, "
                        "detect ~ 0 s)")
    p.add_argument("--known-boxes", action="store_true",
                   help="with --detector: run it for its cost, then pose the synthetic people's true boxes (for "
                        "detectors without trained weights, which find nobody)")
    p.add_argument("--no-render", action="store_true", help="measure without drawing and encoding")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for PyTorch and the detector's ONNX Runtime, each (default: all)")
    p.add_argument("--json", default=None, help="write the raw numbers here")
    _common_model_args(p)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    try:
        return {"export": _export, "quantize": _quantize, "build": _build, "infer": _infer, "bench": _bench,
                "eval": _eval, "triton-repo": _triton_repo, "serve": _serve,
                "bench-video": _bench_video}[args.command](args)
    except (ValueError, TypeError, OSError, ImportError, RuntimeError) as e:  # OSError: missing, unwritable, ...
        print(f"vitpose-trt {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"vitpose-trt {args.command}: interrupted", file=sys.stderr)
        return 130


def _export(args) -> int:
    from vitpose_trt.export import export_onnx
    from vitpose_trt.checkpoint import load_model

    writable_target(args.output)  # before loading the model
    model = load_model(args.checkpoint, variant=args.variant, num_keypoints=args.num_keypoints, expert=args.expert,
                       dataset=args.dataset)
    res = export_onnx(model, args.output, opset=args.opset, check=not args.no_check)
    note = " (RANDOM WEIGHTS)" if res.random_weights else ""
    diff = "not checked" if args.no_check else f"max |ONNX - PyTorch| = {res.max_rel_diff:.2e} of the heatmap scale"
    print(f"wrote {res.path}{note}: opset {args.opset}, dynamic batch, {diff}")
    return 0


def _quantize(args) -> int:
    from build_engine.quantize import quantize

    res = quantize(args.model, args.output, calib=args.calib, dets=args.dets, detector=args.detector, mode=args.mode,
                   calib_crops=args.calib_crops, pipeline=args.pipeline, verify=not args.no_verify)
    metric = res.check["metric"]
    verdict = ("passed" if res.check["passed"] else "FAILED (kept: --no-verify)") if metric["counted"] else "not judged"
    print(f"wrote {res.path}: {res.recipe.mode}, {res.activations} activation and {res.weights} weight Q/DQ pairs, "
          f"calibrated on {res.crops}; against FP32 over {metric['counted']} clear peaks: median "
          f"{metric['heatmap_px']['median']:.3f}, p99 {metric['heatmap_px']['p99']:.3f} heatmap px ({verdict}). "
          f"Next: {rebuild_command({'source': {'path': str(res.path)}, 'precision': res.recipe.mode})}")
    return 0


def _build(args) -> int:
    from build_engine import build
    from vitpose_trt.engines.tensorrt import TensorRTUnavailableError

    if not args.fp16:
        logging.getLogger(__name__).warning("building an FP32 engine (pass --fp16 for the fast one)")
    source = args.source
    if args.expert is not None or args.dataset is not None:  # the builder takes a model; chosen when loading it
        from vitpose_trt.checkpoint import load_model

        source = load_model(args.source, expert=args.expert, dataset=args.dataset)
    try:
        out = build(source, args.output, fp16=args.fp16, fp32_softmax=args.fp32_softmax, max_batch=args.max_batch, opt_batch=args.opt_batch,
                    flip_test=args.flip_test, verify=not args.no_verify, workspace_gb=args.workspace_gb,
                    mode=args.mode, detector_format=args.detector_format, detector_family=args.detector_family)
    except TensorRTUnavailableError as e:
        print(f"vitpose-trt build: {e}", file=sys.stderr)
        return 3
    print(f"wrote {out}")
    return 0


def _infer(args) -> int:
    """Images -> keypoints.json + overlays; each video/camera/stream -> <name>.jsonl + <name>.mp4."""
    if args.det_every < 1:
        raise ValueError(f"--det-every must be >= 1, got {args.det_every}")
    sources = open_sources(args.inputs)
    try:
        images = [s for s in sources if isinstance(s, ImageSource)]
        videos = [s for s in sources if not isinstance(s, ImageSource)]
        if args.boxes and images and videos:
            raise ValueError("--boxes holds one kind of detections: COCO JSON for images or per-frame boxes for "
                             "one video; run images and videos separately")
        if args.boxes and len(videos) > 1:
            raise ValueError(f"--boxes holds the detections of one video, but {len(videos)} were given")
        if args.whole_frame and (args.boxes or args.detector or videos):
            raise ValueError("--whole-frame is for images of one person each, without --boxes/--detector")
        if args.engine is None and not args.random_weights:
            raise ValueError("no --engine: give a pose model (.engine, .onnx or checkpoint), or --random-weights "
                             "to run a random-weight ViTPose-B (meaningless poses)")
        _check_output_names(images, videos)
        detections = _load_boxes(args.boxes, video=bool(videos)) if args.boxes else None
        from vitpose_trt.pipeline import VitPoseTRT

        with output_folder(args.out, overwrite=args.overwrite, name="--out") as out_dir:
            pose = VitPoseTRT(args.engine, **_pose_options(args))
            if pose.random_weights:  # said once, by whichever layer noticed first
                from vitpose_trt.model import warn_random_weights

                what = f"--engine {args.engine} has" if args.engine else "no --engine:"
                warn_random_weights(f"{what} RANDOM WEIGHTS: the poses are meaningless")
            detector = None
            if args.detector or (detections is None and not args.whole_frame):
                if args.detector:
                    detector = detect.make_detector(args.detector, format=args.detector_format,
                                                    family=args.detector_family, score_thr=args.det_thr)
                else:
                    detector = detect.make_detector(None)
            rc = 0
            for image_source in images:
                rc |= _infer_images(args, image_source, pose, detector, detections, out_dir)
            for video_source in videos:
                rc |= _infer_video(args, video_source, pose, detector, detections, out_dir)
            return rc
    finally:
        for s in sources:
            s.close()


def _check_output_names(images, videos) -> None:
    """Every input writes its own files: two inputs whose outputs share a name are refused up front
    (one would silently replace the other's overlay or JSONL)."""
    outputs: dict[str, str] = {}
    named = [(f"{p.stem}_pose.jpg", str(p)) for s in images for p in s.paths]
    named += [(f"{v.name}.jsonl", str(v.spec)) for v in videos]
    for output, given in named:
        if output in outputs:
            what = f"{given} is given twice" if Path(outputs[output]).resolve() == Path(given).resolve() else \
                f"{outputs[output]} and {given} both write {output}"
            raise ValueError(f"{what}: give each input once, and inputs with different names "
                             "(or run them into separate --out folders)")
        outputs[output] = given


def _load_boxes(path: str, video: bool):
    """--boxes: COCO detections for images, per-frame detections for a video; errors name the file."""
    if video:
        return load_frame_detections(path)
    try:
        return load_detections(path)
    except json.JSONDecodeError as e:
        raise ValueError(f"--boxes {path} is not valid JSON: {e}") from None
    except (AttributeError, TypeError, KeyError) as e:  # e.g. a JSON list of numbers
        raise ValueError(f"--boxes {path} is not COCO detections (a list of {{image_id, bbox, score}}): "
                         f"{type(e).__name__}: {e}") from None
    except OSError as e:
        raise FileNotFoundError(f"--boxes {path}: {e.strerror or e}") from None


def _infer_images(args, source, pose, detector, detections, out_dir: Path) -> int:
    """Every image -> its overlay; all -> keypoints.json. Ctrl-C keeps what was done, as videos do."""
    results: list = []
    seen = {"people": 0, "images": 0, "unmatched": [], "empty": []}
    interrupted = False
    try:
        for frame in source:
            results += _pose_image(args, frame, pose, detector, detections, out_dir, seen)
            seen["images"] += 1
    except KeyboardInterrupt:
        interrupted = True
    out = write_json(out_dir / "keypoints.json", results)
    note = " (RANDOM WEIGHTS: poses are meaningless)" if pose.random_weights else ""
    done = f"{seen['images']} of {len(source)} images (interrupted)" if interrupted else f"{len(source)} images"
    print(f"{done}, {seen['people']} people -> {out} and overlays{note}")
    unmatched, empty = seen["unmatched"], seen["empty"]
    if unmatched:
        print(f"vitpose-trt infer: {len(unmatched)} image(s) have no detections in {args.boxes} (matched by file "
              f"name or image id): {', '.join(unmatched)}", file=sys.stderr)
    if empty:
        print(f"vitpose-trt infer: no person found in {len(empty)} image(s): {', '.join(empty)}", file=sys.stderr)
    if interrupted:
        return 130
    return 1 if unmatched and len(unmatched) == len(source) else 0


def _pose_image(args, frame, pose, detector, detections, out_dir: Path, seen: dict) -> list:
    """One image: its boxes, keypoints and overlay; its COCO results. Errors name the image."""
    image, name = frame.image, frame.name or f"{frame.index}.jpg"
    image_id = image_id_from_name(name)
    if args.whole_frame:
        boxes = np.array([[0, 0, image.shape[1], image.shape[0], 1.0]])
    elif detector is not None:
        boxes = detector(image)
    else:
        boxes = detections["by_name"].get(name)
        if boxes is None:
            boxes = detections["by_id"].get(image_id)
        if boxes is None:
            seen["unmatched"].append(name)
            boxes = np.zeros((0, 5))
        boxes = boxes[boxes[:, 4] >= args.box_thr]
    if not len(boxes) and name not in seen["unmatched"]:
        seen["empty"].append(name)
    try:
        keypoints = pose.infer(image, boxes)
    except ValueError as e:
        raise ValueError(f"{name}: {e}") from None
    seen["people"] += len(keypoints)
    drawn = boxes[:, 4] >= args.draw_thr
    write_image_atomic(out_dir / f"{Path(name).stem}_pose.jpg",
                       draw_poses(image, keypoints[drawn], boxes[drawn], args.kpt_thr, pose.dataset))
    return keypoint_results(image_id if image_id is not None else frame.index, keypoints, boxes[:, 4],
                            dataset=pose.dataset)


def _infer_video(args, source, pose, detector, detections, out_dir: Path) -> int:
    from vitpose_trt.pose_tracker import MAX_DETECTOR_FAILURES, PoseTracker
    from vitpose_trt.video import VideoConfig, display_problem, process_video

    show = args.show
    if show and (why := display_problem()):
        print(f"vitpose-trt infer: --show ignored: {why}", file=sys.stderr)
        show = False
    tracker = PoseTracker(pose, detector, det_every=args.det_every, smooth=args.smooth, min_cutoff=args.min_cutoff,
                          beta=args.beta, d_cutoff=args.d_cutoff, box_thr=args.box_thr if detections else 0.0,
                          kpt_thr=args.kpt_thr, max_detector_failures=MAX_DETECTOR_FAILURES)
    config = VideoConfig(render=not args.no_render, show=show, kpt_thr=args.kpt_thr, progress=not args.no_progress,
                         max_frames=args.max_frames,
                         overlap={"auto": None, "on": True, "off": False}[args.detect_ahead])
    res = process_video(source, tracker, out_dir, config, frame_boxes=detections)
    files = ", ".join(str(p) for p in (res.jsonl, res.video) if p is not None)
    how = " (interrupted)" if res.interrupted else ""
    print(f"{source.name}: {res.frames} frames, {res.people} people, {res.fps:.1f} fps end to end{how} -> {files}")
    if res.skipped:
        print(f"vitpose-trt infer: {source.name}: {res.skipped} corrupt frame(s) skipped", file=sys.stderr)
    if res.detector_failures:
        print(f"vitpose-trt infer: {source.name}: the detector failed on {res.detector_failures} frame(s), "
              "tracked from the keypoints instead", file=sys.stderr)
    if res.error:
        print(f"vitpose-trt infer: {source.name}: ended early: {res.error}", file=sys.stderr)
    return 130 if res.interrupted else (1 if res.detector_error else 0)

def _bench(args) -> int:
    from vitpose_trt.bench import int_list, resolve_alternatives

    people = int_list(args.people, "--people")
    required = resolve_alternatives(args.require) if args.require else []
    alternatives = args.alternatives
    if args.precision not in (None, "int8"):
        raise ValueError("--precision: each bench row runs at its own precision (see the table); --precision int8 "
                         "measures the INT8 rows beside their FP32 twin and transformers")
    if args.precision == "int8" and alternatives == "auto":
        alternatives = "int8"
    if not people:
        raise ValueError("--people: give at least one people count")
    out_dir = Path(args.out) if args.out else Path("bench_out") / time.strftime("%Y%m%d-%H%M%S")
    with output_folder(out_dir, overwrite=args.overwrite, name="--out"):  # checked before minutes of measuring
        return _run_bench(args, people, alternatives, required, out_dir)


def _run_bench(args, people, alternatives, required, out_dir: Path) -> int:
    from vitpose_trt.bench import (
        format_table,
        int_list,
        plot_results,
        run_benchmark,
        unmet_requirements,
        write_results,
    )

    result = run_benchmark(
        checkpoint=args.checkpoint, variant=args.variant, engine=args.engine, people=people,
        batches=int_list(args.batches, "--batches"), alternatives=alternatives, iters=args.iters,
        warmup=args.warmup, max_seconds_per_row=args.max_seconds_per_row, mode=args.mode,
        flip_test=args.flip_test, device=args.device, coco_sample=False if args.synthetic else args.coco_sample,
        threads=args.threads, progress=not args.no_progress)
    print(format_table(result))
    try:
        import matplotlib  # noqa: F401

        has_plot = True
    except ImportError:
        has_plot = False
    try:
        written = write_results(result, out_dir, plot=has_plot)
    except OSError as e:  # a read-only or full disk: one line, not a traceback
        raise RuntimeError(f"cannot write the results to {out_dir}/: {e}") from None
    print(f"wrote {', '.join(p.name for p in written.values())} to {out_dir}/"
          + ("" if has_plot else " (no plot: pip install matplotlib)"))
    if args.json:
        print(f"wrote {write_json(args.json, result, indent=1)}")
    if args.plot:
        if not has_plot:
            print("vitpose-trt bench: --plot needs matplotlib (pip install matplotlib)", file=sys.stderr)
            return 2
        print(f"wrote {plot_results(result, args.plot)}")
    if not any(r.get("status") == "ok" for r in result["rows"]):
        print("vitpose-trt bench: no alternative could run here", file=sys.stderr)
        return 1
    problems = unmet_requirements(result, required)
    for problem in problems:
        print(f"vitpose-trt bench: --require {problem}", file=sys.stderr)
    return 1 if problems else 0


def _eval(args) -> int:
    # the folder is checked before the minutes of evaluation, and removed again if they fail
    with output_folder(args.out, overwrite=args.overwrite, name="--out") if args.out else contextlib.nullcontext():
        return _run_eval(args)


def _run_eval(args) -> int:
    from vitpose_trt.evaluate import EvalConfig, evaluate, format_table, score_results

    if args.results:
        if args.engine or args.dets or args.compare:
            raise ValueError("--results scores an existing file: it takes no --engine, --dets or --compare")
        report = score_results(args.ann, args.results, limit=args.limit, out=args.out, dataset=args.dataset)
    else:
        if not args.images or not args.engine:
            raise ValueError("--images and --engine are required (or --results to score a file)")
        report = evaluate(config=EvalConfig(
            args.images, args.ann, args.engine, dets=args.dets, limit=args.limit, out=args.out, compare=args.compare,
            det_bbox_thr=args.det_thr, progress=not args.no_progress, **_pose_options(args)))
    print(format_table(report))
    settings, timing = report["settings"], report.get("timing")
    if timing:
        engines = f", each through {timing['engines_per_box']} engines" if timing["engines_per_box"] > 1 else ""
        print(f"{timing['boxes']} boxes on {settings['images_evaluated']} images{engines}, "
              f"{timing['boxes_per_s']:.1f} boxes/s ({settings['engine']})")
    if settings.get("missing_images"):
        print(f"warning: {len(settings['missing_images'])} images missing or unreadable, left out: the AP is "
              f"not comparable with the official one", file=sys.stderr)
    if settings.get("random_weights"):
        print("warning: RANDOM WEIGHTS: this AP is meaningless", file=sys.stderr)
    if args.out:
        written = "metrics.json" if args.results else "metrics.json, keypoints.json"
        print(f"wrote {Path(args.out)}/{{{written}}}")
    return 0


def _triton_options(args) -> dict:
    gpus = None
    if args.gpus:
        try:
            gpus = [int(g) for g in args.gpus.split(",") if g.strip()]
        except ValueError:
            raise ValueError(f"--gpus: expected comma-separated GPU indices, got {args.gpus!r}") from None
    return dict(max_batch_crops=args.max_batch_crops, instances=args.instances,
                max_queue_delay_us=args.max_queue_delay_us, kind=args.kind, gpus=gpus, **_pose_options(args))


def _triton_repo(args) -> int:
    info = write_repository(args.out, args.engine, **_triton_options(args))
    print(f"wrote {info.path}: model {info.model_name!r} ({info.variant}, {info.num_keypoints} keypoints, "
          f"dataset {info.dataset or 'unknown'}); "
          f"run: tritonserver --model-repository={info.path.resolve()}")
    return 0


def _serve(args) -> int:
    from vitpose_trt.triton.server import serve

    def ready(server) -> None:
        print(f"serving {args.engine}: HTTP {server.http_url}  gRPC {server.grpc_url}  (Ctrl-C stops)", flush=True)

    code = serve(args.engine, http_port=args.http_port, grpc_port=args.grpc_port, host=args.host,
                 ready_timeout_s=args.ready_timeout, on_ready=ready, **_triton_options(args))
    print("server stopped", flush=True)
    return code


def _bench_video(args) -> int:
    from vitpose_trt.bench import int_list
    from vitpose_trt.bench.video import VideoBenchConfig, format_video_table, run_video_benchmark

    people, det_every = int_list(args.people, "--people"), int_list(args.det_every, "--det-every")
    if not people or not det_every:
        raise ValueError("--people and --det-every need comma-separated positive integers, e.g. 1,4,16 and 1,5")
    try:
        w, h = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        raise ValueError(f"--size must be WxH, e.g. 1280x720, got {args.size!r}") from None
    if args.frames < 1:
        raise ValueError(f"--frames must be >= 1, got {args.frames}")
    if args.known_boxes and not args.detector:
        raise ValueError("--known-boxes runs --detector for its cost: give --detector too")
    result = run_video_benchmark(VideoBenchConfig(
        engine=args.engine, variant=args.variant, people=people, det_every=det_every, frames=args.frames,
        warmup=args.warmup, size=(w, h), detector=args.detector, render=not args.no_render, mode=args.mode,
        flip_test=args.flip_test, device=args.device, precision=args.precision, threads=args.threads,
        known_boxes=args.known_boxes))
    print(format_video_table(result))
    if args.json:
        print(f"wrote {write_json(args.json, result, indent=1)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
