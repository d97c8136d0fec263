#!/usr/bin/env bash
# The first thing to run on a machine with an NVIDIA GPU: builds the extension for this GPU only,
# runs every CUDA test (-m requires_cuda) WITH the real photos and the fixture model, then the GPU
# rows of `vitpose-trt bench`. Sized for a 15-minute GPU lease with room for a rerun: the whole
# script is meant to finish in under 6 minutes on an H100/H200 from a bare image (PyTorch, nvcc,
# CMake, ninja, pybind11, onnx, onnxruntime, OpenCV, pytest; no TensorRT, no network).
#
#   OUT=/some/dir benchmarks/run_gpu_bench.sh      # on the device machine $OUT is set for you
#
# The test data lives in ../shared, which does not travel to a lent GPU machine. Bring it in a
# git-ignored folder of the checkout and carry that folder:
#   mkdir -p .devcarry && cp -r ../shared/data/coco-sample .devcarry/ \
#       && cp ../shared/fixtures/vitpose-s-coco-sample.pth .devcarry/
# The script then points VITPOSE_TRT_COCO_SAMPLE and VITPOSE_TRT_SAMPLE_CHECKPOINT there (either
# may also be set by hand). Without them the accuracy tests skip, and the script says so and fails.
#
# Exit code: non-zero when the build, any GPU test or the benchmark failed, or when the accuracy
# tests could not run for want of data. Every log and result is written under $OUT (7 files:
# steps.log, build.log, gpu_tests.log, bench_gpu.log, bench/{table.txt,bench.json,bench.png}).
#
# Knobs (optional): PYTHON (default python3), PEOPLE (default 1,4,16,64), BATCHES (default
# 1,8,32,64), ITERS (default 30), BUDGET (seconds per bench row, default 5), ENGINE (a TensorRT plan
# to benchmark), CHECKPOINT (trained weights for the bench rows).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-bench_out}"
PY="${PYTHON:-python3}"
mkdir -p "$OUT"
status=0
log() { echo "== $*" | tee -a "$OUT/steps.log"; }
step() {  # step SECONDS LOGFILE command...: run with a time limit, remember a failure
    local limit=$1 logfile=$2; shift 2
    timeout --kill-after=10 "$limit" "$@" >"$OUT/$logfile" 2>&1
    local rc=$?
    [ $rc -eq 124 ] && log "TIMED OUT after ${limit}s: $*"
    [ $rc -ne 0 ] && { log "FAILED (exit $rc): $* (see $logfile)"; tail -30 "$OUT/$logfile"; status=1; }
    return $rc
}

[ -z "${VITPOSE_TRT_COCO_SAMPLE:-}" ] && [ -f .devcarry/coco-sample/person_detections.json ] &&
    export VITPOSE_TRT_COCO_SAMPLE="$PWD/.devcarry/coco-sample"
[ -z "${VITPOSE_TRT_SAMPLE_CHECKPOINT:-}" ] && [ -f .devcarry/vitpose-s-coco-sample.pth ] &&
    export VITPOSE_TRT_SAMPLE_CHECKPOINT="$PWD/.devcarry/vitpose-s-coco-sample.pth"
export VITPOSE_TRT_CACHE_DIR="${VITPOSE_TRT_CACHE_DIR:-$(mktemp -d)}" PYTHONUNBUFFERED=1

log "environment"
nvidia-smi --query-gpu=name,driver_version,compute_cap,clocks.max.sm --format=csv 2>&1 | tee -a "$OUT/steps.log"
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())" \
    2>&1 | tee -a "$OUT/steps.log"
log "photos: ${VITPOSE_TRT_COCO_SAMPLE:-MISSING}; fixture model: ${VITPOSE_TRT_SAMPLE_CHECKPOINT:-MISSING}"

# This GPU's architecture only (e.g. 90 on Hopper): a fraction of the all-architectures build time.
ARCH="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d ' .')"
log "build the C++/CUDA extension for sm_${ARCH:-native} (no network: no build isolation, no deps)"
VITPOSE_TRT_CUDA_ARCHS="${ARCH:-native}" step 300 build.log "$PY" -m pip install --no-build-isolation --no-deps -e .
if ! "$PY" -c "from vitpose_trt import kernels; import sys; print('cpp', kernels.has_cpp(), 'cuda kernels', kernels.has_cuda_kernels()); sys.exit(0 if kernels.has_cuda_kernels() else 1)" \
    2>&1 | tee -a "$OUT/steps.log"; then
    log "FAILED: no usable CUDA kernels (nvcc missing, or the build fell back to CPU): every GPU test would skip"
    status=1
fi

log "every GPU test (requires_cuda: kernels vs the references, the GPU path vs the CPU path, the bench)"
step 240 gpu_tests.log "$PY" -m pytest tests -q -rs -m requires_cuda -p no:cacheprovider
tail -25 "$OUT/gpu_tests.log" | tee -a "$OUT/steps.log"
if grep -q "fixture model not found\|real photos not found" "$OUT/gpu_tests.log"; then
    log "accuracy tests SKIPPED for want of the photos / fixture model: bring .devcarry (see the header)"
    status=1
fi

ENGINE_ARGS=()
[ -n "${ENGINE:-}" ] && ENGINE_ARGS=(--engine "$ENGINE")
CKPT_ARGS=()
[ -n "${CHECKPOINT:-}" ] && CKPT_ARGS=(--checkpoint "$CHECKPOINT")
log "vitpose-trt bench (GPU rows; random ViTPose-B unless CHECKPOINT: speed does not depend on the weights)"
step 200 bench_gpu.log "$PY" -m vitpose_trt.cli bench "${ENGINE_ARGS[@]}" "${CKPT_ARGS[@]}" \
    --people "${PEOPLE:-1,4,16,64}" --batches "${BATCHES:-1,8,32,64}" --alternatives gpu \
    --iters "${ITERS:-30}" --max-seconds-per-row "${BUDGET:-5}" --out "$OUT/bench" --no-progress
cat "$OUT/bench_gpu.log" | tee -a "$OUT/steps.log" >/dev/null
log "done (exit $status); files in $OUT"
exit "$status"
