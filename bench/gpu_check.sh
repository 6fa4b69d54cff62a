#!/usr/bin/env bash
# Every GPU check of fastdis in one run of under 6 minutes, results under $OUT.
#
#   bench/gpu_check.sh                                  # on the GPU machine, from the repo root
#   GPU_CHECK_DEVICE=cpu OUT=/tmp/gc bench/gpu_check.sh # CPU dry run with tiny sizes
#
# Steps (each under its own `timeout`, all within GPU_CHECK_BUDGET seconds; a failed step is
# recorded and the next one runs; a step whose command does not exist yet is skipped with a
# line saying so):
#   env       python, torch, triton, GPU, which of fastdis's dependencies are missing
#   kernels   the Triton TC and DIP kernels compiled on CUDA against their torch twins, forward
#             and gradients: the kernel tests, which run compiled wherever torch sees a GPU
#             (float32 to 1e-5 relative, float64 1e-11); then the pack variant, both kernels
#             under torch.vmap over a pack of 8, float32 on CUDA against float64, to 1e-5
#   sweep     `fastdis sweep --models 0-63 --pack 64` on the small dSprites look-alike it renders,
#             and its model-steps/s
#   encode    `fastdis encode` of those checkpoints (--pack 64 and --pack 1), checkpoints/s;
#             bench/bench_encode.py at the study's plan size
#   training  bench/bench_training.py's rows on the device (every method, packs up to 256),
#             in what the budget leaves but 2 minutes (rows print as they are measured)
#   batch     bench/bench_batch.py's store scored with 1, 2, 4, 8, 16 local workers
#
# $OUT receives at most 8 files (what the device machine sends back): summary.md (one line per
# step, the numbers), steps.log (every step's output), bench_training.json, bench_encode.md.
#
# The device machine reaches no package registry and brings its own torch and triton. fastdis
# runs from a copy of the source on PYTHONPATH (no build). Packages its image lacks (zarr,
# numcodecs, dask, distributed, lightgbm, ...) travel as wheels in .whl/: fetch them once on a
# machine with pip and network, `bench/gpu_check.sh fetch-wheels`, and carry `.whl`.

set -u
REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"

# Wheels for the device's Python 3.12 (x86-64) of the packages its image lacks; same versions
# as the development environment's where pip knows them.
WHEELS="zarr==3.1.6 numcodecs==0.16.6 donfig==0.8.1.post1 google-crc32c==1.9.0 \
dask==2026.8.0 distributed==2026.8.0 partd==1.4.2 locket==1.0.0 tblib==3.2.2 zict==3.0.0 \
tornado==6.6.1 lightgbm==4.7.0 gin-config==0.4.0"

if [ "${1:-}" = "fetch-wheels" ]; then
    if common=$(git rev-parse --git-common-dir 2>/dev/null); then  # keep the wheels untracked
        grep -qx '/.whl/' "$common/info/exclude" 2>/dev/null || \
            echo '/.whl/' >> "$common/info/exclude"
    fi
    for wheel in $WHEELS; do
        python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
            --implementation cp --platform manylinux_2_28_x86_64 \
            --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl "$wheel" \
            || echo "could not fetch $wheel"
    done
    exit 0
fi

DEVICE=${GPU_CHECK_DEVICE:-cuda}
BUDGET=${GPU_CHECK_BUDGET:-340}
PY=${PYTHON:-python3}
OUT=${OUT:-$(mktemp -d /tmp/gpu_check.XXXXXX)}
WORK=$(mktemp -d /tmp/gpu_check_work.XXXXXX)
mkdir -p "$OUT"
SUMMARY=$OUT/summary.md
LOG=$OUT/steps.log
: > "$LOG"
START=$(date +%s)
export PYTHONUNBUFFERED=1

if [ "$DEVICE" = "cpu" ]; then  # dry run: every step, tiny sizes
    MODELS=0-3; PACK=4; SWEEP_STEPS=2; BENCH_STEPS=2; PACK_SIZES="1 2"
    METHODS="beta_vae"; ENCODE_CKPTS=4; ENCODE_POINTS=300; ENCODE_PACKS=1,4
    BATCH_WORKERS="1 2"; BATCH_CKPTS=2; ENCODE_SCALE=0.02; KERNEL_TESTS="tests/test_kernels_api.py"
    TIMEOUT_FACTOR=${GPU_CHECK_TIMEOUT_FACTOR:-4}  # a busy 2-core machine, the interpreter
    export TRITON_INTERPRET=1
else
    TIMEOUT_FACTOR=${GPU_CHECK_TIMEOUT_FACTOR:-1}
    MODELS=0-63; PACK=64; SWEEP_STEPS=200; BENCH_STEPS=20; PACK_SIZES="1 8 32 64 128 256"
    METHODS="beta_vae factor_vae dip_vae_i dip_vae_ii beta_tc_vae annealed_vae"
    ENCODE_CKPTS=64; ENCODE_POINTS=15000; ENCODE_PACKS=1,64
    BATCH_WORKERS="1 2 4 8 16"; BATCH_CKPTS=4; ENCODE_SCALE=1
    KERNEL_TESTS=$(ls tests/test_kernels_*.py)
    export TRITON_INTERPRET=0
fi

summary() { echo "$*" | tee -a "$SUMMARY"; }

calc() { awk "BEGIN { printf \"%.1f\", $1 }"; }  # no bc on the device image

remaining() { echo $(( BUDGET - ($(date +%s) - START) )); }

# step NAME SECONDS COMMAND...: run under timeout (capped by what is left of the budget),
# output appended to steps.log; sets STEP_RC and STEP_S and writes the step's summary line.
step() {
    local name=$1 seconds=$(( $2 * TIMEOUT_FACTOR )); shift 2
    local left; left=$(remaining)
    [ "$seconds" -gt "$left" ] && seconds=$left
    if [ "$seconds" -lt 10 ]; then
        STEP_RC=125; STEP_S=0
        summary "- $name: NOT RUN (too little of the ${BUDGET} s budget left)"
        return
    fi
    echo "===== $name (timeout ${seconds} s): $*" >> "$LOG"
    local t0; t0=$(date +%s.%N)
    timeout --kill-after=5 "$seconds" "$@" >> "$LOG" 2>&1
    STEP_RC=$?
    STEP_S=$(calc "$(date +%s.%N) - $t0")
    echo "===== $name: exit $STEP_RC after ${STEP_S} s" >> "$LOG"
    case $STEP_RC in
        0) summary "- $name: ok in ${STEP_S} s" ;;
        124|137) summary "- $name: TIMED OUT after ${seconds} s (see steps.log)" ;;
        *) summary "- $name: FAILED (exit $STEP_RC; see steps.log)" ;;
    esac
}

skip() { summary "- $1: SKIPPED ($2)"; }

has_option() {  # has_option "COMMAND..." OPTION: whether COMMAND --help mentions OPTION
    $1 --help 2>/dev/null | grep -q -- "$2"
}

echo "# gpu_check $(date -u +%Y-%m-%dT%H:%MZ), device $DEVICE, commit $(git rev-parse --short HEAD 2>/dev/null)" > "$SUMMARY"

# -- env: wheels, fastdis on the path, versions ---------------------------------------------
if ls .whl/*.whl > /dev/null 2>&1; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$WORK/site" .whl/*.whl >> "$LOG" 2>&1 && \
        export PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
fi
# fastdis.kernels and fastdis.bench live in kernels/ and bench/ (setuptools' package-dir): a
# copy in the layout Python imports replaces an install.
mkdir -p "$WORK/src" && cp -r fastdis "$WORK/src/fastdis"
for package in kernels bench; do
    [ -f "$package/__init__.py" ] && rm -rf "$WORK/src/fastdis/$package" && \
        cp -r "$package" "$WORK/src/fastdis/$package"
done
export PYTHONPATH="$WORK/src${PYTHONPATH:+:$PYTHONPATH}"
FASTDIS="$PY -m fastdis.cli"
step env 60 $PY -c "
import importlib, platform, torch
print('python', platform.python_version(), 'torch', torch.__version__,
      'cuda', torch.cuda.is_available() and torch.cuda.get_device_name())
missing = []
for name in ['triton', 'numba', 'zarr', 'numcodecs', 'dask', 'distributed', 'lightgbm',
             'pandas', 'pyarrow', 'sklearn', 'h5py', 'typer', 'rich', 'gin', 'fastdis.kernels']:
    try:
        module = importlib.import_module(name)
        print(name, getattr(module, '__version__', ''))
    except Exception as exc:
        missing.append(name)
        print(name, 'MISSING', type(exc).__name__, exc)
print('missing:', ' '.join(missing) or 'none')
"
summary "  $(grep -m1 '^python ' "$LOG")"
summary "  $(grep -m1 '^missing:' "$LOG")"
command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version \
    --format=csv,noheader >> "$LOG" 2>&1

# -- kernels: Triton against the torch twins --------------------------------------------------
# shellcheck disable=SC2086
step kernels 60 $PY -m pytest -q -x -m "not slow" -p no:cacheprovider $KERNEL_TESTS
summary "  $(sed -n '/^===== kernels/,$p' "$LOG" | grep -E 'passed|failed|error' | tail -1)"
# The pack variant: the kernels under torch.vmap over a pack of 8 (as packed training calls
# them), forward and gradients, float32 on the device against float64 on the CPU, 1e-5 of the
# values' scale (the kernel tests' tolerance).
step "kernels in a pack" 60 $PY -c "
import torch
from fastdis import kernels
device = '$DEVICE'
generator = torch.Generator().manual_seed(0)
inputs = [torch.randn(8, 64, 10, generator=generator, dtype=torch.float64) for _ in range(3)]
def both(z, mean, logvar):
    return (kernels.total_correlation(z, mean, logvar),
            kernels.dip_covariance(mean, logvar, lambda_od=2.0, lambda_d=3.0, dip_type='ii')[0])
def values_and_grads(tensors):
    tensors = [t.detach().requires_grad_() for t in tensors]
    out = torch.vmap(both)(*tensors)
    grads = torch.autograd.grad(sum(t.sum() for t in out), tensors)
    return [t.detach().double().cpu() for t in (*out, *grads)]
got = values_and_grads([t.to(device, torch.float32) for t in inputs])
want = values_and_grads(inputs)
names = ['total_correlation', 'dip_covariance', 'd/dz', 'd/dmean', 'd/dlogvar']
for name, a, b in zip(names, got, want):
    error = (a - b).abs().max().item() / max(1.0, b.abs().max().item())
    print(f'{name}: relative error {error:.2e}')
    assert error <= 1e-5, name
print('pack of 8 on', device, 'agrees with float64 to 1e-5')
"

# -- sweep: 64 models in one pack on a rendered dSprites look-alike ---------------------------
step "data make" 40 $FASTDIS data make dsprites --small --out "$WORK/data"
if has_option "$FASTDIS sweep" --pack; then
    sampling=""
    has_option "$FASTDIS sweep" --data-sampling && sampling="--data-sampling counter"
    # shellcheck disable=SC2086
    step sweep 60 $FASTDIS sweep --models "$MODELS" --pack "$PACK" --device "$DEVICE" \
        --steps "$SWEEP_STEPS" --checkpoint-every "$SWEEP_STEPS" --data-dir "$WORK/data" \
        --out "$WORK/runs" --no-progress $sampling
    if [ "$STEP_RC" = 0 ]; then
        models=$(( ${MODELS#*-} - ${MODELS%-*} + 1 ))
        summary "  sweep: $models models x $SWEEP_STEPS steps in ${STEP_S} s (small dSprites," \
            "start-up, data, logs and checkpoints included):" \
            "$(calc "$models * $SWEEP_STEPS / $STEP_S") model-steps/s"
    fi
else
    skip sweep "fastdis sweep has no --pack (packed training not merged)"
fi

# -- encode: the sweep's checkpoints, packed and one at a time; the encode bench --------------
if [ -d "$WORK/runs" ] && has_option "$FASTDIS encode" --pack; then
    for pack in "$PACK" 1; do
        step "encode --pack $pack" 30 $FASTDIS encode "$WORK/runs" --dataset dsprites_full \
            --data-dir "$WORK/data" --store "$WORK/reps_$pack.zarr" --device "$DEVICE" \
            --pack "$pack" --scale "$ENCODE_SCALE"
        [ "$STEP_RC" = 0 ] && summary "  encode --pack $pack: $(find "$WORK/runs" -name \
            checkpoint.pt | wc -l) checkpoints in ${STEP_S} s (process start, drawing the plan" \
            "and rendering its images included; a fresh store each)"
    done
else
    skip encode "no sweep checkpoints, or fastdis encode has no --pack"
fi
step "bench_encode" 45 $PY bench/bench_encode.py --device "$DEVICE" \
    --checkpoints "$ENCODE_CKPTS" --points "$ENCODE_POINTS" --packs "$ENCODE_PACKS"
grep -A20 '^# .* checkpoints, plan of' "$LOG" | grep -E '^(#|\|)' > "$OUT/bench_encode.md"
sed 's/^/  /' "$OUT/bench_encode.md" >> "$SUMMARY"

# -- training: bench_training.py's rows, in what the budget leaves but the batch steps' 2 min -
# One call for every method; rows are printed as they are measured, so a run cut short by the
# budget still leaves its rows in steps.log (the JSON is written at the end only).
if has_option "$PY bench/bench_training.py" --pack-sizes; then
    # shellcheck disable=SC2086
    step training "$(( ($(remaining) - 120 * TIMEOUT_FACTOR) / TIMEOUT_FACTOR ))" $PY bench/bench_training.py --device "$DEVICE" \
        --methods $METHODS --pack-sizes $PACK_SIZES --steps "$BENCH_STEPS" --sweep-steps 0 \
        --json "$OUT/bench_training.json"
    grep -E 'single model:|model-steps/s|out of memory' "$LOG" | grep -v '^  sweep' \
        | sed 's/^/  /' >> "$SUMMARY"
else
    skip training "bench/bench_training.py has no --pack-sizes (packed training not merged)"
fi

# -- batch scoring: local workers ------------------------------------------------------------
# bench_batch.py's store, scored on local processes without the boosted trees and the
# logistic-regression downstream task (one representation of those takes minutes of CPU): how
# the cheap study metrics scale with the workers.
cat > "$WORK/batch_workers.py" <<'PYTHON'
import sys, time
sys.path.insert(0, "bench")
from pathlib import Path
from bench_batch import build_store
from fastdis.batch import score_store
from fastdis.metrics import study_metrics



def main(store, checkpoints, counts):
    metrics = [spec.name for spec in study_metrics() if not spec.boosted_trees
               and spec.name != "downstream_task_logistic_regression"]
    if not store.exists():  # and compile numba's kernels into its cache, for every row alike
        build_store(store, checkpoints)
        score_store(store, store.with_name("scores_warm"), metrics=metrics,
                    representations=["mean"], scheduler="synchronous")
    for workers in counts:
        start = time.perf_counter()
        table = score_store(store, store.with_name(f"scores_{workers}"), metrics=metrics,
                            workers=workers)
        seconds = time.perf_counter() - start
        print(f"local, {workers} workers: {checkpoints} checkpoints x 2 representations x "
              f"{len(metrics)} metrics in {seconds:.1f} s, {2 * checkpoints / seconds:.2f} "
              f"representations/s, {table['error'].notna().sum()} failed", flush=True)


if __name__ == "__main__":  # the scoring workers are spawned and re-import this file
    main(Path(sys.argv[1]), int(sys.argv[2]), [int(w) for w in sys.argv[3:]])
PYTHON
step "batch store" 45 $PY "$WORK/batch_workers.py" "$WORK/batch/reps.zarr" "$BATCH_CKPTS"
for workers in $BATCH_WORKERS; do
    step "batch --workers $workers" 30 $PY "$WORK/batch_workers.py" "$WORK/batch/reps.zarr" \
        "$BATCH_CKPTS" "$workers"
    rate=$(grep "^local, $workers workers" "$LOG" | tail -1)
    [ -n "$rate" ] && summary "  $rate"
done

summary "- total: $(( $(date +%s) - START )) s of the ${BUDGET} s budget"
rm -rf "$WORK"
exit 0
