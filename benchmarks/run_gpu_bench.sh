#!/usr/bin/env bash
# The first thing to run on a machine with an NVIDIA GPU, as one command that finishes in under
# 540 s (a lent GPU machine allows 600 s per command): versions, the extension built in place for
# this GPU, a GPU smoke test, every CUDA test, then the GPU rows of `vitpose-trt bench`. It stops at
# the first thing that makes the rest meaningless (a failed build, no CUDA kernels, a failed smoke
# test) and says so; every step has its own time limit, every test one too (pytest-timeout).
#
#   OUT=/some/dir benchmarks/run_gpu_bench.sh      # on the device machine $OUT is set for you
#
# Nothing is installed into the machine's Python environment: the extension is built in place
# (setup.py build_ext --inplace, into vitpose_trt/ and build/) and PYTHONPATH points at the checkout.
# Needs PyTorch (CUDA), nvcc, CMake, pybind11, onnx, onnxruntime, OpenCV, pytest (+ pytest-timeout);
# no TensorRT, no network.
#
# The test data lives in ../shared, which does not travel to a lent GPU machine. Bring it in a
# git-ignored folder of the checkout and carry that folder (48 MB):
#   mkdir -p .devcarry && cp -r ../shared/data/coco-sample .devcarry/ \
#       && cp ../shared/fixtures/vitpose-s-coco-sample.pth .devcarry/
# The script then points VITPOSE_TRT_COCO_SAMPLE and VITPOSE_TRT_SAMPLE_CHECKPOINT there (either
# may also be set by hand). Without them it stops before the smoke test.
#
# Exit code: 0 only when the build, the smoke test, every GPU test and every required bench row
# passed. Under $OUT, 8 files at most: steps.log (versions, what ran, how long), build.log,
# smoke.log, gpu_tests.log, bench_gpu.log, bench/{table.txt,bench.json,bench.png}.
#
# Knobs (optional): PYTHON (default python3), PEOPLE (default 1,4,16,64), BATCHES (default
# 1,8,32,64), ITERS (default 30), BUDGET (seconds per bench row, default 5), ENGINE (a TensorRT plan
# to benchmark), CHECKPOINT (trained weights for the bench rows).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-bench_out/gpu}"
PY="${PYTHON:-python3}"
TOTAL=540  # seconds for the whole script
mkdir -p "$OUT"
status=0
log() { echo "== [$SECONDS s] $*" | tee -a "$OUT/steps.log"; }
stop() { status=1; log "STOPPED: $*"; log "done (exit 1) after $SECONDS s; files in $OUT"; exit 1; }
step() {  # step SECONDS LOGFILE command...: run with a time limit (cut to what is left of TOTAL)
    local limit=$1 logfile=$2; shift 2
    local left=$((TOTAL - SECONDS - 5))
    [ "$limit" -gt "$left" ] && limit=$left
    if [ "$limit" -lt 10 ]; then log "NO TIME LEFT for: $*"; status=1; return 124; fi
    log "run (limit ${limit}s): $*"
    timeout --kill-after=10 "$limit" "$@" >>"$OUT/$logfile" 2>&1
    local rc=$?
    [ $rc -eq 124 ] && log "TIMED OUT after ${limit}s: $*"
    [ $rc -ne 0 ] && { log "FAILED (exit $rc): $* (see $logfile)"; tail -30 "$OUT/$logfile" | tee -a "$OUT/steps.log"; status=1; }
    return $rc
}

[ -z "${VITPOSE_TRT_COCO_SAMPLE:-}" ] && [ -f .devcarry/coco-sample/person_detections.json ] &&
    export VITPOSE_TRT_COCO_SAMPLE="$PWD/.devcarry/coco-sample"
[ -z "${VITPOSE_TRT_SAMPLE_CHECKPOINT:-}" ] && [ -f .devcarry/vitpose-s-coco-sample.pth ] &&
    export VITPOSE_TRT_SAMPLE_CHECKPOINT="$PWD/.devcarry/vitpose-s-coco-sample.pth"
export VITPOSE_TRT_CACHE_DIR="${VITPOSE_TRT_CACHE_DIR:-$(mktemp -d)}" PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # the checkout itself, with its in-place extension

log "versions"
{
    nvidia-smi --query-gpu=name,driver_version,compute_cap,memory.total,clocks.max.sm --format=csv 2>&1
    echo "nvcc: $(nvcc --version 2>&1 | tail -1)"
    echo "cmake: $(cmake --version 2>&1 | head -1)"
    "$PY" - <<'EOF' 2>&1
import platform, numpy, cv2, setuptools, torch
print("python", platform.python_version(), "| torch", torch.__version__, "(CUDA", torch.version.cuda, ") | numpy",
      numpy.__version__, "| opencv", cv2.__version__, "| setuptools", setuptools.__version__, "(>= 77 builds)")
print("GPU:", torch.cuda.get_device_name() if torch.cuda.is_available() else "none visible to torch")
for name in ("onnx", "onnxruntime", "pytest_timeout", "tensorrt"):
    try:
        module = __import__(name)
    except ImportError:
        print(name, "not installed")
        continue
    stubs_only = name == "tensorrt" and not hasattr(module, "Builder")  # tensorrt-stubs import too
    print(name, "type stubs only (not TensorRT)" if stubs_only else getattr(module, "__version__", "installed"))
EOF
} | tee -a "$OUT/steps.log"
log "photos: ${VITPOSE_TRT_COCO_SAMPLE:-MISSING}; fixture model: ${VITPOSE_TRT_SAMPLE_CHECKPOINT:-MISSING}"
TIMEOUT_ARGS=()
if "$PY" -c "import pytest_timeout" 2>/dev/null; then TIMEOUT_ARGS=(--timeout 120); else
    log "pytest-timeout is not installed: tests run without a per-test limit (the step limits still hold)"; fi

# This GPU's architecture only (e.g. 90 on Hopper): a fraction of the all-architectures build time.
ARCH="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d ' .')"
log "build the C++/CUDA extension in place for sm_${ARCH:-native}"
VITPOSE_TRT_CUDA_ARCHS="${ARCH:-native}" step 150 build.log "$PY" setup.py build_ext --inplace \
    || stop "the extension did not build (build.log has CMake's and nvcc's output)"
"$PY" -c "import vitpose_trt._C as c; print('CUDA kernels built for', c.cuda_architectures, '| CUDA runtime', c.cuda_runtime_version, '| GPU visible:', c.cuda_available(), '| warp coordinates:', c.opencv_warp_coords())" \
    2>&1 | tee -a "$OUT/steps.log"
"$PY" -c "import torch, vitpose_trt._C as c, sys; sys.exit(0 if c.built_with_cuda and c.cuda_available() and torch.cuda.is_available() else 1)" \
    || stop "no usable CUDA kernels (nvcc missing at build time, or no GPU visible to the extension or to torch): every GPU test would skip"

[ -n "${VITPOSE_TRT_SAMPLE_CHECKPOINT:-}" ] && [ -n "${VITPOSE_TRT_COCO_SAMPLE:-}" ] \
    || stop "the photos / fixture model are missing: bring .devcarry (see the header)"
log "smoke test: the fixture model through VitPoseTRT on CUDA (FP32) against the CPU path"
SMOKE="tests/test_gpu_pipeline.py::test_gpu_path_equals_cpu_reference_on_real_photos[fp32]"
step 60 smoke.log "$PY" -m pytest "$SMOKE" -q -x -rs -p no:cacheprovider ${TIMEOUT_ARGS[@]+"${TIMEOUT_ARGS[@]}"} \
    || stop "the smoke test failed (smoke.log)"
tail -3 "$OUT/smoke.log" | tee -a "$OUT/steps.log"
grep -q "1 passed" "$OUT/smoke.log" || stop "the smoke test did not run (skipped? see smoke.log)"

log "every GPU test (requires_cuda: kernels vs the references, the GPU path vs the CPU path, the bench)"
step 170 gpu_tests.log "$PY" -m pytest tests -q -rs -m requires_cuda -p no:cacheprovider --deselect "$SMOKE" \
    ${TIMEOUT_ARGS[@]+"${TIMEOUT_ARGS[@]}"}
tail -25 "$OUT/gpu_tests.log" | tee -a "$OUT/steps.log"
if grep -q "fixture model not found\|real photos not found" "$OUT/gpu_tests.log"; then
    log "accuracy tests SKIPPED for want of the photos / fixture model"
    status=1
fi

ENGINE_ARGS=()
[ -n "${ENGINE:-}" ] && ENGINE_ARGS=(--engine "$ENGINE")
CKPT_ARGS=()
[ -n "${CHECKPOINT:-}" ] && CKPT_ARGS=(--checkpoint "$CHECKPOINT")
log "vitpose-trt bench (GPU rows; random ViTPose-B unless CHECKPOINT: speed does not depend on the weights)"
ROWS=pytorch-cuda,baseline,torch-fp16-eager
[ -n "${ENGINE:-}" ] && ROWS="tensorrt,$ROWS"
step 160 bench_gpu.log "$PY" -m vitpose_trt.cli bench ${ENGINE_ARGS[@]+"${ENGINE_ARGS[@]}"} \
    ${CKPT_ARGS[@]+"${CKPT_ARGS[@]}"} \
    --people "${PEOPLE:-1,4,16,64}" --batches "${BATCHES:-1,8,32,64}" --alternatives "$ROWS" --require "$ROWS" \
    --iters "${ITERS:-30}" --max-seconds-per-row "${BUDGET:-5}" --out "$OUT/bench" --no-progress
tee -a "$OUT/steps.log" <"$OUT/bench_gpu.log" >/dev/null
log "done (exit $status) after $SECONDS s; files in $OUT"
exit "$status"
