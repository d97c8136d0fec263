"""`vitpose-trt`: a thin argparse layer over the Python API (export, build, infer, bench, triton-repo, serve)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from vitpose_trt.engines import BACKENDS
from vitpose_trt.engines.sidecar import BUILD_DEFAULTS
from vitpose_trt.geometry import MODES

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


def _common_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mode", choices=MODES, default="udp",
                   help="pre/post pipeline: udp (official ViTPose, default) or classic")
    p.add_argument("--flip-test", action="store_true", help="also run mirrored crops and average (2x compute)")
    p.add_argument("--backend", choices=BACKENDS, default="auto",
                   help="engine runner (default: from the file type and the machine)")
    p.add_argument("--device", default=None, help="PyTorch device: cpu or cuda (default: cuda when available)")
    p.add_argument("--precision", choices=("fp32", "fp16"), default=None,
                   help="PyTorch precision (default: fp16 on CUDA, fp32 on the CPU)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vitpose-trt", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("export", help="export a checkpoint to ONNX (opset >= 17, dynamic batch) and verify it")
    p.add_argument("checkpoint", nargs="?", default=None,
                   help="official .pth, Hugging Face folder/.safetensors, or easy_ViTPose .pth "
                        "(omit for random-weight ViTPose-B)")
    p.add_argument("-o", "--output", required=True, help="output .onnx path")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (>= 17; default 17)")
    p.add_argument("--variant", default=None, help="s/b/l/h when it cannot be inferred (random weights)")
    p.add_argument("--num-keypoints", type=int, default=None, help="K (default: from the checkpoint, else 17)")
    p.add_argument("--expert", type=int, default=None, help="ViTPose++ dataset expert to keep (0 = COCO)")
    p.add_argument("--no-check", action="store_true", help="skip the ONNX Runtime vs PyTorch check")

    p = sub.add_parser("build", help="build a TensorRT engine (needs TensorRT and an NVIDIA GPU)")
    p.add_argument("source", help="checkpoint or .onnx")
    p.add_argument("-o", "--output", required=True, help="output .engine path (a .json sidecar is written next to it)")
    p.add_argument("--fp16", action="store_true", help="FP16 engine with LayerNorm kept in FP32 (recommended)")
    p.add_argument("--max-batch", type=int, default=BUILD_DEFAULTS["max_batch"],
                   help="most boxes per engine call (default %(default)s; --flip-test doubles the crops)")
    p.add_argument("--opt-batch", type=int, default=BUILD_DEFAULTS["opt_batch"],
                   help="box count TensorRT tunes for (default %(default)s)")
    p.add_argument("--expert", type=int, default=None, help="ViTPose++ dataset expert to keep (0 = COCO)")
    p.add_argument("--fp32-softmax", action="store_true",
                   help="also keep the attention softmax in FP32 (if the accuracy check asks for it)")
    p.add_argument("--flip-test", action="store_true", help="engine for flip test (doubles the batch range)")
    p.add_argument("--mode", choices=MODES, default=BUILD_DEFAULTS["mode"], help="pipeline recorded in the sidecar")
    p.add_argument("--no-verify", action="store_true", help="skip the build-time accuracy check against PyTorch")
    p.add_argument("--workspace-gb", type=float, default=None, help="builder workspace limit in GiB")

    p = sub.add_parser("infer", help="run pose estimation on images; write COCO results JSON and overlays")
    p.add_argument("inputs", help="an image or a folder of images")
    p.add_argument("--engine", default=None,
                   help="engine (.engine), .onnx or checkpoint (default: random-weight ViTPose-B)")
    p.add_argument("--boxes", default=None,
                   help="COCO-format detections JSON (matched by file name or image id); default: whole frame")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--box-thr", type=float, default=0.0, help="ignore detections scoring below this")
    p.add_argument("--kpt-thr", type=float, default=0.3, help="draw keypoints scoring above this")
    _common_model_args(p)

    p = sub.add_parser("bench", help="latency per frame and per stage (random weights by default)")
    p.add_argument("--engine", default=None,
                   help="TensorRT .engine (tensorrt row), .onnx (onnxruntime row) or checkpoint "
                        "(default: random ViTPose-B, which a random-weight engine build matches)")
    p.add_argument("--checkpoint", default=None,
                   help="weights for the PyTorch/ONNX/transformers rows (default: random, fixed seed)")
    p.add_argument("--variant", default="b", help="random model size s/b/l/h when no checkpoint (default b)")
    p.add_argument("--people", default="1,4,16", help="people per frame, comma-separated (default 1,4,16; 64 works)")
    p.add_argument("--batches", default="",
                   help="also measure model throughput at these batch sizes, e.g. 1,2,4,8,16,32,64,128")
    p.add_argument("--iters", type=int, default=50, help="timed iterations per row (default 50; see --max-seconds-per-row)")
    p.add_argument("--warmup", type=int, default=5,
                   help="untimed iterations first on GPU rows (default 5; CPU rows: the correctness run)")
    p.add_argument("--max-seconds-per-row", type=float, default=10.0,
                   help="time budget per row (alternative x people, alternative x batch): fewer than --iters "
                        "iterations run when it is reached, at least one (default 10; CPU rows hit it)")
    p.add_argument("--alternatives", default="auto",
                   help="comma-separated rows: tensorrt, pytorch-cuda, onnxruntime, pytorch-cpu, baseline, "
                        "transformers, torch-fp16-eager, or the groups pipeline, gpu, cpu "
                        "(default auto: all; those that cannot run here are listed as skipped)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for PyTorch and ONNX Runtime (default: all)")
    p.add_argument("--coco-sample", default=None,
                   help="coco-sample folder for real frames/boxes (default: $VITPOSE_TRT_COCO_SAMPLE or "
                        "../shared/data/coco-sample; synthetic where absent)")
    p.add_argument("--synthetic", action="store_true", help="synthetic frame and boxes even where coco-sample exists")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--out", default=None,
                   help="results folder for table.txt, bench.json and bench.png (default: bench_out/<date-time>/)")
    p.add_argument("--json", default=None, help="also write the raw numbers here")
    p.add_argument("--plot", default=None, help="also write the PNG plot here (needs matplotlib)")
    _common_model_args(p)

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
    p.add_argument("--det-thr", type=float, default=0.0,
                   help="drop detections scoring below this (default 0.0, the official setting)")
    p.add_argument("--out", default=None, help="write OUT/metrics.json and OUT/keypoints.json here")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _common_model_args(p)

    _triton_parsers(sub)
    return parser


def _triton_parsers(sub) -> None:
    """`triton-repo` and `serve`: serving on NVIDIA Triton Inference Server (vitpose_trt.triton)."""
    def repo_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--engine", required=True, help="TensorRT .engine (with its .json sidecar), .onnx or checkpoint")
        p.add_argument("--max-batch-crops", type=int, default=64,
                       help="most people (crops) in one engine call, and most requests batched together (default 64)")
        p.add_argument("--instances", type=int, default=1,
                       help="model instances, each with its own engine: per GPU with --kind gpu (default 1)")
        p.add_argument("--max-queue-delay-us", type=int, default=500,
                       help="how long Triton may hold a request to batch it with others (default 500)")
        p.add_argument("--kind", choices=("auto", "cpu", "gpu"), default="auto",
                       help="instance placement: gpu (per GPU), cpu, or auto: gpu for a TensorRT engine")
        p.add_argument("--gpus", default=None, help="with --kind gpu: GPU indices, e.g. 0,1 (default: all)")
        _common_model_args(p)

    p = sub.add_parser("triton-repo", help="write a Triton Inference Server model repository serving an engine")
    p.add_argument("out", help="repository folder to create (must not exist, or be empty)")
    repo_args(p)

    p = sub.add_parser("serve", help="serve an engine over HTTP and gRPC with Triton Inference Server (until Ctrl-C)")
    repo_args(p)
    p.add_argument("--http-port", type=int, default=8000, help="HTTP port (default 8000)")
    p.add_argument("--grpc-port", type=int, default=8001, help="gRPC port (default 8001)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0: every interface)")
    p.add_argument("--ready-timeout", type=float, default=300.0, help="longest wait for the model to load, in s")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    try:
        return {"export": _export, "build": _build, "infer": _infer, "bench": _bench,
                "eval": _eval, "triton-repo": _triton_repo, "serve": _serve}[args.command](args)
    except (ValueError, TypeError, OSError, ImportError, RuntimeError) as e:  # OSError: missing, unwritable, ...
        print(f"vitpose-trt {args.command}: error: {e}", file=sys.stderr)
        return 2


def _export(args) -> int:
    from vitpose_trt.export import check_output_path, export_onnx
    from vitpose_trt.checkpoint import load_model

    check_output_path(args.output)  # before loading the model
    model = load_model(args.checkpoint, variant=args.variant, num_keypoints=args.num_keypoints, expert=args.expert)
    res = export_onnx(model, args.output, opset=args.opset, check=not args.no_check)
    note = " (RANDOM WEIGHTS)" if res.random_weights else ""
    diff = "not checked" if args.no_check else f"max |ONNX - PyTorch| = {res.max_rel_diff:.2e} of the heatmap scale"
    print(f"wrote {res.path}{note}: opset {args.opset}, dynamic batch, {diff}")
    return 0


def _build(args) -> int:
    from build_engine.tensorrt_build import build
    from vitpose_trt.engines.tensorrt import TensorRTUnavailableError

    if not args.fp16:
        logging.getLogger(__name__).warning("building an FP32 engine (pass --fp16 for the fast one)")
    source = args.source
    if args.expert is not None:  # the builder takes a model; the expert is chosen when loading it
        from vitpose_trt.checkpoint import load_model

        source = load_model(args.source, expert=args.expert)
    try:
        out = build(source, args.output, fp16=args.fp16, fp32_softmax=args.fp32_softmax, max_batch=args.max_batch, opt_batch=args.opt_batch,
                    flip_test=args.flip_test, verify=not args.no_verify, workspace_gb=args.workspace_gb,
                    mode=args.mode)
    except TensorRTUnavailableError as e:
        print(f"vitpose-trt build: {e}", file=sys.stderr)
        return 3
    print(f"wrote {out}")
    return 0


def _list_images(path: Path) -> list[Path]:
    if path.is_dir():
        images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise FileNotFoundError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {path}")
        return images
    if not path.exists():
        raise FileNotFoundError(f"input not found: {path}")
    return [path]


def _infer(args) -> int:
    import cv2
    import numpy as np

    from vitpose_trt.coco import image_id_from_name, keypoint_results, load_detections
    from vitpose_trt.draw import draw_poses
    from vitpose_trt.pipeline import VitPoseTRT

    images = _list_images(Path(args.inputs))
    dets = load_detections(args.boxes) if args.boxes else None
    pose = VitPoseTRT(args.engine, mode=args.mode, flip_test=args.flip_test, backend=args.backend,
                      device=args.device, precision=args.precision)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    results, total = [], 0
    for index, path in enumerate(images):
        frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if frame is None:
            raise ValueError(f"cannot read image {path}")
        image_id = image_id_from_name(path.name)
        if dets is None:
            boxes = np.array([[0, 0, frame.shape[1], frame.shape[0], 1.0]])
        else:
            boxes = dets["by_name"].get(path.name)
            if boxes is None:
                boxes = dets["by_id"].get(image_id, np.zeros((0, 5)))
            boxes = boxes[boxes[:, 4] >= args.box_thr]
        keypoints = pose.infer(frame, boxes)
        total += len(keypoints)
        results += keypoint_results(image_id if image_id is not None else index, keypoints, boxes[:, 4])
        cv2.imwrite(str(out_dir / f"{path.stem}_pose.jpg"), draw_poses(frame, keypoints, boxes, args.kpt_thr))
    with open(out_dir / "keypoints.json", "w") as f:
        json.dump(results, f)
    note = " (RANDOM WEIGHTS: poses are meaningless)" if pose.random_weights else ""
    print(f"{len(images)} images, {total} people -> {out_dir / 'keypoints.json'} and overlays{note}")
    return 0


def _bench(args) -> int:
    import time

    from vitpose_trt.bench import format_table, int_list, plot_results, run_benchmark, write_json, write_results

    people = int_list(args.people, "--people")
    if not people:
        raise ValueError("--people: give at least one people count")
    out_dir = Path(args.out) if args.out else Path("bench_out") / time.strftime("%Y%m%d-%H%M%S")
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out {out_dir} exists and is not a folder")
    result = run_benchmark(
        checkpoint=args.checkpoint, variant=args.variant, engine=args.engine, people=people,
        batches=int_list(args.batches, "--batches"), alternatives=args.alternatives, iters=args.iters,
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
        print(f"wrote {write_json(result, args.json)}")
    if args.plot:
        if not has_plot:
            print("vitpose-trt bench: --plot needs matplotlib (pip install matplotlib)", file=sys.stderr)
            return 2
        print(f"wrote {plot_results(result, args.plot)}")
    if not any(r.get("status") == "ok" for r in result["rows"]):
        print("vitpose-trt bench: no alternative could run here", file=sys.stderr)
        return 1
    return 0


def _eval(args) -> int:
    from vitpose_trt.evaluate import evaluate, format_table, score_results

    if args.results:
        if args.engine or args.dets or args.compare:
            raise ValueError("--results scores an existing file: it takes no --engine, --dets or --compare")
        report = score_results(args.ann, args.results, limit=args.limit, out=args.out)
    else:
        if not args.images or not args.engine:
            raise ValueError("--images and --engine are required (or --results to score a file)")
        report = evaluate(args.images, args.ann, args.engine, dets=args.dets, mode=args.mode,
                          flip_test=args.flip_test, backend=args.backend, device=args.device,
                          precision=args.precision, limit=args.limit, out=args.out, compare=args.compare,
                          det_bbox_thr=args.det_thr, progress=not args.no_progress)
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
                max_queue_delay_us=args.max_queue_delay_us, kind=args.kind, gpus=gpus, mode=args.mode,
                flip_test=args.flip_test, backend=args.backend, device=args.device, precision=args.precision)


def _triton_repo(args) -> int:
    from vitpose_trt.triton.repository import write_repository

    info = write_repository(args.out, args.engine, **_triton_options(args))
    print(f"wrote {info.path}: model {info.model_name!r} ({info.variant}, {info.num_keypoints} keypoints); "
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


if __name__ == "__main__":
    sys.exit(main())
