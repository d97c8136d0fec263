#!/usr/bin/env bash
# One call for a GPU session: build the extension, run every CUDA test (-m requires_cuda), run
# `vitpose-trt bench` on the GPU, and leave the table, JSON and plot in $OUT.
#
#   OUT=/some/dir benchmarks/run_gpu_bench.sh          # on the device machine: OUT is set for you
#
# Environment knobs (all optional):
#   PYTHON   interpreter with CUDA PyTorch (default python3)
#   PEOPLE   people per frame (default 1,4,16,64)
#   BATCHES  throughput batch sizes (default 1,2,4,8,16,32,64,128)
#   ALTS     alternatives (default auto: every row that can run; 'gpu' skips the CPU rows)
#   ITERS    timed iterations per row (default 50)
#   BUDGET   --max-seconds-per-row (default 8: the CPU rows stop there; the whole run takes ~5 min)
#   ENGINE   a TensorRT plan to benchmark; when unset and TensorRT is importable, one is built
#            from the random ViTPose-B (the same weights the other rows use)
#   CHECKPOINT  trained weights for every PyTorch/ONNX/transformers row (makes the error column meaningful)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-bench_out}"
PY="${PYTHON:-python3}"
mkdir -p "$OUT"
log() { echo "== $*" | tee -a "$OUT/steps.log"; }

log "environment"
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv 2>&1 | tee -a "$OUT/steps.log"
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())" \
    2>&1 | tee -a "$OUT/steps.log"

log "build the C++/CUDA extension (no network: no build isolation, no deps)"
if ! "$PY" -m pip install --no-build-isolation --no-deps -e . >"$OUT/build.log" 2>&1; then
    tail -40 "$OUT/build.log"
    log "extension build FAILED: the pytorch-cuda row falls back to CPU pre/post (see build.log)"
fi
"$PY" -c "from vitpose_trt import _ext; print('cpp', _ext.has_cpp(), 'cuda kernels', _ext.has_cuda_kernels())" \
    2>&1 | tee -a "$OUT/steps.log"

log "every GPU test (requires_cuda: kernels vs the references, the zero-copy pipeline, the bench)"
"$PY" -m pytest tests -q -m requires_cuda -p no:cacheprovider >"$OUT/gpu_tests.log" 2>&1
tail -25 "$OUT/gpu_tests.log" | tee -a "$OUT/steps.log"

ENGINE_ARGS=()
if [ -n "${ENGINE:-}" ]; then
    ENGINE_ARGS=(--engine "$ENGINE")
elif "$PY" -c "import tensorrt; tensorrt.__version__" >/dev/null 2>&1; then
    log "TensorRT found: building an FP16 engine from the random ViTPose-B"
    WORK="$(mktemp -d)"  # not under $OUT: an engine is far over what comes back from the machine
    if "$PY" -m vitpose_trt.cli export -o "$WORK/vitpose-b.onnx" >>"$OUT/steps.log" 2>&1 &&
       "$PY" -m vitpose_trt.cli build "$WORK/vitpose-b.onnx" -o "$WORK/vitpose-b.engine" --fp16 --max-batch 128 \
           >>"$OUT/steps.log" 2>&1; then
        ENGINE_ARGS=(--engine "$WORK/vitpose-b.engine")
    else
        log "engine build failed (steps.log): the tensorrt row will be skipped"
    fi
else
    log "TensorRT is not installed: the tensorrt row will be listed as skipped"
fi
CKPT_ARGS=()
[ -n "${CHECKPOINT:-}" ] && CKPT_ARGS=(--checkpoint "$CHECKPOINT")

log "vitpose-trt bench"
"$PY" -m vitpose_trt.cli bench "${ENGINE_ARGS[@]}" "${CKPT_ARGS[@]}" \
    --people "${PEOPLE:-1,4,16,64}" --batches "${BATCHES:-1,2,4,8,16,32,64,128}" \
    --alternatives "${ALTS:-auto}" --iters "${ITERS:-50}" --max-seconds-per-row "${BUDGET:-8}" \
    --json "$OUT/bench_gpu.json" --plot "$OUT/bench_gpu.png" --no-progress 2>"$OUT/bench_gpu.log" \
    | tee "$OUT/bench_gpu.txt"
rc=${PIPESTATUS[0]}
log "done (bench exit code $rc); files in $OUT"
exit "$rc"
