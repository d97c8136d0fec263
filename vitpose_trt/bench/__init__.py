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
      with the FP32 reference (PyTorch FP32 on the CPU + the numpy/OpenCV pre/post) by
      `vitpose_trt.agreement`'s tie rule and metric; by default with the fixture model's real
      heatmap peaks where it is present (each row rebuilt from it for one untimed run).

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

Modules: `scenarios` (frames and boxes), `runners` (one factory per alternative), `measure`
(timer, loops, statistics), `reference` (the correctness column), `environment` (machine, load),
`report` (table, plot, JSON, results folder), `run` (`BenchConfig`, `run_benchmark`).

The per-stage numbers of the package's rows come from `VitPoseTRT`'s own paths through its public
stage hook, `infer_async(..., stage_hook=...)` (CUDA events on `VitPoseTRT.stream` on the GPU,
perf_counter on the CPU); the e2e column times
`VitPoseTRT.infer`. On the GPU, "upload" also holds the host-side staging of the frame and the
per-box matrices that precede the copy.
"""

from vitpose_trt.bench.environment import environment, load_warning, tensorrt_version
from vitpose_trt.bench.measure import Runner, Timer, measure_frames, measure_matmul_rate, measure_throughput, summarize
from vitpose_trt.bench.reference import Reference, keypoint_disagreement, reference_keypoints
from vitpose_trt.bench.report import STAGES, format_table, make_figure, plot_results, write_results
from vitpose_trt.bench.run import BenchConfig, int_list, run_benchmark, unmet_requirements
from vitpose_trt.bench.runners import (
    ALIASES,
    ALTERNATIVES,
    FACTORIES,
    PLAIN_WORDS,
    BenchContext,
    Skip,
    build_hf_model,
    resolve_alternatives,
    runner_baseline,
)
from vitpose_trt.bench.scenarios import (
    COCO_MIN_SCORE,
    FRAME_SIZE,
    Scenario,
    build_scenarios,
    compose_coco_frame,
    synthetic_boxes,
    synthetic_frame,
)

__all__ = [
    "ALIASES", "ALTERNATIVES", "COCO_MIN_SCORE", "FACTORIES", "FRAME_SIZE", "PLAIN_WORDS", "STAGES", "BenchConfig",
    "BenchContext", "Reference", "Runner", "Scenario", "Skip", "Timer", "build_hf_model", "build_scenarios",
    "compose_coco_frame", "environment", "format_table", "int_list", "keypoint_disagreement", "load_warning",
    "make_figure", "measure_frames", "measure_matmul_rate", "measure_throughput", "plot_results", "reference_keypoints",
    "resolve_alternatives", "run_benchmark", "runner_baseline", "summarize", "synthetic_boxes", "synthetic_frame",
    "unmet_requirements",
    "tensorrt_version", "write_results",
]
