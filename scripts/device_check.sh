#!/usr/bin/env bash
# The GPU check, one script, under 8 minutes on one GPU: the GPU-only tests (CUDA graphs against eager), the
# training step's cost (bench_step at 256² and 128², batch 8, the upstream AHDR width, with CUDA graphs; the
# settings side by side: eager, CUDA graphs, frozen networks in bfloat16, the slim teacher), a short paired verdict
# (VERDICT_CONFIG: semkt settings as JSON, default CUDA graphs) and the probe at the upstream width,
# their seeds as parallel processes. Everything goes to one report, REPORT (default: $OUT/report.md, else
# ./device_check/report.md, a git-ignored folder), and each part's full output beside it. PARTS picks parts
# (default: all of "tests bench variants verdict probe"; "compile", torch.compile of the teacher and of the
# histogram loss against eager, runs only when named: about 2 minutes more).
#
#   COMMIT=$(git rev-parse --short HEAD) bash scripts/device_check.sh   # from the repository root (COMMIT: where
#                                                # the copy has no .git of its own)
#
# Where the machine has no package index, carry wheels in .whl/ (semkt's own from `pip wheel --no-deps .`, and
# kornia, kornia_rs, ultralytics, ultralytics-thop, ultralytics-platform for its Python): they are installed into
# /tmp/site first (WHEELS=DIR to take them from elsewhere).
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
REPORT=${REPORT:-${OUT:-$PWD/device_check}/report.md}
OUTDIR=$(dirname "$REPORT")  # the parts' outputs go beside the report
mkdir -p "$OUTDIR" || exit 1
STEPS=${STEPS:-500}      # verdict and probe steps
SEEDS=${SEEDS:-4}        # verdict seeds, in parallel
PROBE_SEEDS=${PROBE_SEEDS:-2}
UPSTREAM=${UPSTREAM:-'--nFeat 64 --growthRate 32 --nDenselayer 6 --crop 128 --batchsize 8'}
PROBE=${PROBE:-'--crop 128 --batchsize 8 --kwargs {"nFeat":64,"growthRate":32,"nDenselayer":6}'}
BENCH=${BENCH:-'--setup 64:256:8 --setup 64:128:8 --steps 8'}
COMPILE=${COMPILE:-'--setup 64:256:8 --steps 8'}
DEVICE=${DEVICE:-cuda}   # DEVICE=cpu and small STEPS, UPSTREAM, BENCH: a dry run of the script itself
PARTS=${PARTS:-tests bench variants verdict probe}
# the ladder's and the verdict's semkt settings: the candidate for the defaults
BENCH_CONFIG=${BENCH_CONFIG:-'{"cuda_graphs": true}'}
VERDICT_CONFIG=${VERDICT_CONFIG:-'{"cuda_graphs": true}'}
VARIANTS=${VARIANTS:-"--variant 'graphs={\"cuda_graphs\": true}' --variant 'bf16 frozen={\"frozen_dtype\": \"bfloat16\"}' --variant 'graphs, bf16 frozen={\"cuda_graphs\": true, \"frozen_dtype\": \"bfloat16\"}' --variant 'slim, graphs={\"teacher_stride\": 2, \"cuda_graphs\": true}'"}
export PYTHONUNBUFFERED=1
WHEELS=${WHEELS:-$ROOT/.whl}
if compgen -G "$WHEELS/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        "$WHEELS"/*.whl || exit 1
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
WORK=$(mktemp -d)  # outside the checkout, so the installed semkt is the one imported
cd "$WORK" || exit 1
SEMKT="python3 -m semkt_plugin.cli"
export ROOT STEPS SEEDS PROBE_SEEDS UPSTREAM PROBE SEMKT DEVICE VERDICT_CONFIG
start=$SECONDS

section() {  # section TITLE LIMIT_S FILE COMMAND...: run it, time it, put its output in the report
    local title=$1 limit=$2 file=$3
    shift 3
    local t0=$SECONDS
    timeout -k 5 "$limit" bash -c "$*" >"$OUTDIR/$file" 2>&1
    local rc=$?
    {
        echo "## $title"
        echo
        echo "\`$*\` — exit $rc, $((SECONDS - t0)) s$([ $rc = 124 ] && echo ", stopped at its ${limit} s limit")"
        echo
        echo '```'
        grep -v -E '^\s*$|it/s\]|s/it\]|Warning|warn' "$OUTDIR/$file" | tail -n 60
        echo '```'
        echo
    } >>"$REPORT"
}

{
    echo "# semkt device check"
    echo
    echo '```'
    nvidia-smi -L 2>&1 | head -1
    python3 -c "import torch, semkt_plugin as s; print('torch', torch.__version__, '| semkt', s.__version__, '|',
torch.cuda.get_device_name() if torch.cuda.is_available() else 'no CUDA')"
    echo "commit ${COMMIT:-$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)}, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo '```'
    echo
} >"$REPORT"

part() { [[ " $PARTS " == *" $1 "* ]]; }
part tests && section "GPU-only tests: CUDA graphs against eager" 90 tests.txt \
    python3 -m pytest -q -p no:cacheprovider -rs "$ROOT/tests/test_cuda_graphs.py"
part bench && section "Training step (bench_step), nFeat 64, batch 8, $BENCH_CONFIG" 90 bench_step.txt \
    python3 "$ROOT/benchmarks/bench_step.py" $BENCH --device $DEVICE "--config '$BENCH_CONFIG'"
part variants && section "Training step, settings side by side" 90 bench_variants.txt \
    python3 "$ROOT/benchmarks/bench_step.py" $BENCH --device $DEVICE "$VARIANTS"
part compile && section "torch.compile of semkt's parts against eager (bench_compile)" 150 bench_compile.txt \
    "python3 '$ROOT/benchmarks/bench_compile.py' --part teacher $COMPILE --device $DEVICE &&" \
    "python3 '$ROOT/benchmarks/bench_compile.py' --part histogram $COMPILE --device $DEVICE"

verdict() {  # the seeds in parallel, then the table from their cached runs
    for ((s = 0; s < SEEDS; s++)); do
        OMP_NUM_THREADS=2 $SEMKT verdict --split validation --seed "$s" --seeds 1 --steps "$STEPS" $UPSTREAM \
            --lr 2e-4 --device "$DEVICE" --config "$VERDICT_CONFIG" --out verdict >"verdict_seed$s.log" 2>&1 &
    done
    wait
    $SEMKT verdict --split validation --seeds "$SEEDS" --steps "$STEPS" $UPSTREAM --lr 2e-4 --device "$DEVICE" \
        --config "$VERDICT_CONFIG" --out verdict
}
export -f verdict
part verdict && section "Paired verdict, validation split, upstream width, $SEEDS seeds x $STEPS steps" 200 verdict.txt verdict

probe() {
    for ((s = 0; s < PROBE_SEEDS; s++)); do
        OMP_NUM_THREADS=2 $SEMKT probe --device "$DEVICE" --truth --seed "$s" --steps "$STEPS" $PROBE --lr 2e-4 \
            --arm 'slim teacher={"teacher_stride": 2}' --out "probe$s" >"probe_seed$s.log" 2>&1 &
    done
    wait
    for ((s = 0; s < PROBE_SEEDS; s++)); do echo "seed $s"; grep -v -E 'it/s\]|s/it\]' "probe_seed$s.log"; done
}
export -f probe
part probe && section "Probe, upstream width, $PROBE_SEEDS seeds x $STEPS steps" 130 probe.txt probe

echo "total $((SECONDS - start)) s" >>"$REPORT"
cat "$REPORT"
