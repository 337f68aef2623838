#!/usr/bin/env bash
# The GPU runbook: what this project wants from a GPU, in order of value, each step under its own time limit,
# each result written to OUT_DIR the moment the step ends, so a call cut short still returns all that was done.
# docs/gpu.md says how to run it with the device tool; rehearse it on the CPU first.
#
#   bash bench/gpu.sh --prepare SHARED_DATA_DIR [WHEEL_DIR]  # here, once: fills bench/gpu_kit/ (git-ignored)
#   bash bench/gpu.sh --rehearse DATA_DIR OUT_DIR            # here, on the CPU: every step at tiny size
#   bash bench/gpu.sh OUT_DIR                                # on the GPU machine, from the repository root
#
# --prepare copies prepare.py, the CIFAR-10 JPEG tarball and the Fashion-MNIST files from SHARED_DATA_DIR (the
# folder prepare.py lives in) into bench/gpu_kit/, and puts there the wheels the GPU machine lacks (hydra-core,
# omegaconf, antlr4-python3-runtime, the versions installed here): from WHEEL_DIR, else from the package registry.
# The GPU run unpacks the kit into /tmp (wheels into a folder on PYTHONPATH, no pip; the data laid out by
# prepare.py, CIFAR-10 in the background while the first steps run). --rehearse DATA_DIR takes a prepared data
# folder (FashionMNIST/raw, cifar-10-batches-py), or `kit` to unpack the kit as the GPU run does.
#
# Steps (GPU_STEPS=a,b,... runs some of them): smoke (at most 60 s: imports, two batches, a checkpoint written,
# read back and evaluated), figure1 and figure5 (bench figures 1 and 5 against the plain loop, fp32,
# channels_last, bf16), compile (figure 5 with torch.compile), then the paper recipes resnet20_cifar10,
# vgg16_cifar10, resnet18_cifar10, alexnet_cifar10 (RECIPE_ARGS="..." adds overrides). The whole run keeps within
# GPU_BUDGET_S seconds (default 570, for the device tool's 600-second calls): a step gets what is left, a recipe
# stopped at the limit saves its checkpoint, is reported with the epochs it did, and continues (resume=auto) in
# the next call on a warm machine (its folder, bench/gpu_work/, is git-ignored and stays). A rehearsal multiplies
# every limit by GPU_TIME_SCALE (default 10). OUT_DIR gets summary.md, log.txt, runs.jsonl (a line per recipe)
# and figure1.json, figure5.json, compile.json (bench/run.py's results).
# The exit status is 1 if a step failed (a recipe stopped by the time limit is not a failure).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
KIT=$ROOT/bench/gpu_kit
RECIPES=(resnet20_cifar10 vgg16_cifar10 resnet18_cifar10 alexnet_cifar10)
PY=${PYTHON:-python3}

usage() {
    sed -n '5,9p' "$0" >&2
    exit 2
}

# ------------------------------------------------------------------------------------------------- --prepare
prepare_kit() {
    local shared=$1 wheels=${2:-}
    [[ -f $shared/prepare.py && -f $shared/cifar10-jpeg.tar.gz && -d $shared/fashion-mnist ]] || {
        echo "$shared holds no prepare.py, cifar10-jpeg.tar.gz and fashion-mnist/: pass the folder prepare.py is in" >&2
        exit 2
    }
    mkdir -p "$KIT/wheels" "$KIT/fashion-mnist"
    cp -f "$shared/prepare.py" "$shared/cifar10-jpeg.tar.gz" "$KIT/"
    cp -f "$shared"/fashion-mnist/*.gz "$KIT/fashion-mnist/"
    local versions
    versions=$("$PY" -c 'from importlib.metadata import version as v
print(" ".join(f"{p}=={v(p)}" for p in ("hydra-core", "omegaconf", "antlr4-python3-runtime")))') || exit 1
    echo "wheels for: $versions"
    if [[ -n $wheels ]]; then
        cp "$wheels"/hydra_core-*.whl "$wheels"/omegaconf-*.whl "$wheels"/antlr4_python3_runtime-*.whl "$KIT/wheels/" || exit 1
    else
        # all three are pure Python; antlr4-python3-runtime 4.9.* has no wheel on the registry, so it is built here
        read -r hydra omegaconf antlr <<<"$versions"
        "$PY" -m pip download --quiet --no-deps --only-binary=:all: -d "$KIT/wheels" "$hydra" "$omegaconf" || exit 1
        "$PY" -m pip wheel --quiet --no-deps -w "$KIT/wheels" "$antlr" || exit 1
    fi
    du -sh "$KIT"
    echo "the working tree and the kit travel together: $(( ($(git -C "$ROOT" ls-files -z | xargs -0 du -cb | tail -1 | cut -f1) + $(du -sb "$KIT" | cut -f1)) / 1048576 )) MiB of the 64 allowed"
}

# ------------------------------------------------------------------------------------------------- the run
stamp() { # every line of output with the time of day in front
    local line
    while IFS= read -r line || [[ -n $line ]]; do printf '%(%H:%M:%S)T %s\n' -1 "$line"; done
}

say() { echo "$*" | stamp | tee -a "$OUT/log.txt"; }

record() { # step, status, seconds, details
    printf '| %s | %s | %s | %s |\n' "$1" "$2" "$3" "${4:-}" >>"$OUT/summary.md"
    say "== $1: $2 after $3 s ${4:-}"
}

wanted() { [[ -z ${GPU_STEPS:-} || ,$GPU_STEPS, == *",$1,"* ]]; }

# run_step NAME LIMIT COMMAND...: the command under `timeout`, capped to what is left of the budget; false (and
# recorded as skipped) when too little is left to start it
run_step() {
    local name=$1 limit=$(($2 * TIME_SCALE))
    shift 2
    local left=$((BUDGET - SECONDS - 10))
    ((limit > left)) && limit=$left
    if ((limit < 30)); then
        record "$name" "skipped: the budget is spent" 0
        return 1
    fi
    say "== $name (time limit ${limit} s)"
    local start=$SECONDS
    timeout --kill-after=20 "$limit" "$@" 2>&1 | stamp | tee -a "$OUT/log.txt"
    STEP_STATUS=${PIPESTATUS[0]}
    STEP_SECONDS=$((SECONDS - start))
    return 0
}

check() { # NAME after run_step: ok, or a failure
    if ((STEP_STATUS == 0)); then
        record "$1" ok "$STEP_SECONDS" "${2:-}"
    else
        record "$1" "FAILED (exit $STEP_STATUS$( ((STEP_STATUS == 124 || STEP_STATUS == 137)) && echo ', time limit'))" "$STEP_SECONDS"
        FAILED=1
    fi
}

unpack_wheels() { # the kit's wheels into a folder on PYTHONPATH: unzipped, no pip needed
    local site=$1
    mkdir -p "$site"
    "$PY" - "$KIT/wheels" "$site" <<'EOF'
import sys, zipfile
from pathlib import Path
wheels, site = Path(sys.argv[1]), Path(sys.argv[2])
found = sorted(wheels.glob("*.whl"))
if not found:
    sys.exit(f"no wheels in {wheels}: run bash bench/gpu.sh --prepare first")
for wheel in found:
    zipfile.ZipFile(wheel).extractall(site)
print("unpacked", ", ".join(w.name for w in found))
EOF
}

unpack_data() { # the kit's data laid out by its prepare.py; CIFAR-10 (decoding 60,000 JPEGs) in the background
    local data=$1
    mkdir -p "$data"
    "$PY" - "$KIT" "$data" <<'EOF' 2>&1 | stamp | tee -a "$OUT/log.txt"
import os, sys
sys.path.insert(0, sys.argv[1])
import prepare
kit, data = sys.argv[1], sys.argv[2]
source = os.path.join(kit, "fashion-mnist")
prepare.idx_pair(source, os.path.join(data, "FashionMNIST", "raw"),
                 [(f, f[:-3]) for f in sorted(os.listdir(source)) if f.endswith(".gz")])
print("Fashion-MNIST ready")
EOF
    ((PIPESTATUS[0] == 0)) || return 1
    (
        "$PY" - "$KIT" "$data" <<'EOF'
import os, sys, time
sys.path.insert(0, sys.argv[1])
import prepare
kit, data, start = sys.argv[1], sys.argv[2], time.time()
prepare.extract(os.path.join(kit, "cifar10-jpeg.tar.gz"), os.path.join(data, "cifar10-jpeg"), "train")
prepare.cifar_batches(os.path.join(data, "cifar10-jpeg"), os.path.join(data, "cifar-10-batches-py"))
print(f"CIFAR-10 ready in {time.time() - start:.0f} s")
EOF
    ) 2>&1 | stamp | tee -a "$OUT/log.txt" &
    CIFAR_JOB=$!
}

cifar_ready() {
    [[ -n ${CIFAR_JOB:-} ]] && { wait "$CIFAR_JOB" || say "unpacking CIFAR-10 failed"; CIFAR_JOB=; }
    [[ -f $DATA/cifar-10-batches-py/test_batch ]]
}

figure() { # NAME LIMIT bench/run.py-OPTIONS...: the figure's results.json becomes OUT/NAME.json
    local name=$1 limit=$2
    shift 2
    rm -rf "${WORK:?}/$name"
    if run_step "$name" "$limit" "$PY" bench/run.py --data-dir "$DATA" --accelerator "$ACCELERATOR" --scale "$SCALE" \
        --out "$WORK/$name" "$@"; then
        cp "$WORK/$name/results.json" "$OUT/$name.json" 2>/dev/null
        check "$name" "bench/run.py $*: $name.json"
    fi
}

smoke() { # imports, two training steps, last.ckpt written, read back and evaluated (run through `bash -c`)
    local tiny=(data.source=sample trainer.max_epochs=1 trainer.limit_train_batches=2 trainer.limit_val_batches=1
        trainer.limit_test_batches=1 trainer.enable_progress_bar=false "trainer.accelerator=$ACCELERATOR" logger=csv
        "paths.data_dir=$WORK/none")
    "$PY" -c 'import torch, lightning, hydra, omegaconf
print("torch", torch.__version__, "CUDA", torch.version.cuda, torch.cuda.is_available(), "lightning", lightning.__version__,
      "hydra", hydra.__version__, "omegaconf", omegaconf.__version__)' &&
        rm -rf "$WORK/smoke" "$WORK/smoke-eval" &&
        "$PY" train.py "${tiny[@]}" "hydra.run.dir=$WORK/smoke" &&
        "$PY" eval.py "ckpt_path=$WORK/smoke/checkpoints/last.ckpt" "trainer.accelerator=$ACCELERATOR" \
            trainer.enable_progress_bar=false logger=csv "hydra.run.dir=$WORK/smoke-eval" "paths.data_dir=$WORK/none"
}
export -f smoke

recipe() {
    local name=$1
    local run=$WORK/$name
    # shellcheck disable=SC2086  # RECIPE_ARGS and TINY_RECIPE are lists of overrides
    run_step "$name" "${RECIPE_LIMIT:-3600}" "$PY" train.py "experiment=$name" "paths.data_dir=$DATA" \
        "trainer.accelerator=$ACCELERATOR" trainer.enable_progress_bar=false logger=csv "hydra.run.dir=$run" \
        resume=auto $TINY_RECIPE ${RECIPE_ARGS:-} || return 0
    local summary
    summary=$("$PY" bench/gpu_report.py "$run" --jsonl "$OUT/runs.jsonl" 2>&1) || FAILED=1
    if ((STEP_STATUS == 0)); then
        record "$name" ok "$STEP_SECONDS" "$summary"
    elif ((STEP_STATUS == 124 || STEP_STATUS == 143)) && [[ -f $run/checkpoints/last.ckpt ]]; then
        record "$name" "stopped at the time limit" "$STEP_SECONDS" "$summary"
    else
        record "$name" "FAILED (exit $STEP_STATUS)" "$STEP_SECONDS" "$summary"
        FAILED=1
    fi
}

main() {
    MODE=gpu
    case ${1:-} in
    --prepare)
        [[ $# -ge 2 ]] || usage
        prepare_kit "$2" "${3:-}"
        exit
        ;;
    --rehearse)
        [[ $# -eq 3 ]] || usage
        MODE=rehearse DATA_ARG=$2 OUT=$3
        ;;
    -* | "") usage ;;
    *) OUT=$1 ;;
    esac
    mkdir -p "$OUT"
    OUT=$(cd "$OUT" && pwd)
    cd "$ROOT" || exit 2
    # a rehearsal runs on a shared 2-core CPU, where starting Python with torch alone can take a minute
    [[ $MODE == gpu ]] && TIME_SCALE=${GPU_TIME_SCALE:-1} || TIME_SCALE=${GPU_TIME_SCALE:-10}
    BUDGET=${GPU_BUDGET_S:-$((570 * TIME_SCALE))}
    # inside the repository (git-ignored): a warm device machine keeps it from one call to the next, so a second
    # call finds the data unpacked and continues the recipes from their checkpoints (resume=auto)
    WORK=${GPU_WORK_DIR:-$ROOT/bench/gpu_work}
    [[ $MODE == rehearse ]] && rm -rf "$WORK" # a rehearsal starts from nothing
    mkdir -p "$WORK"
    FAILED=0
    export PYTHONUNBUFFERED=1 HYDRA_FULL_ERROR=1
    printf '# GPU runbook (%s), %s\n\n| step | result | seconds | details |\n|---|---|---|---|\n' \
        "$MODE" "$(date -u +%FT%TZ)" >"$OUT/summary.md"

    local site=
    if [[ $MODE == gpu ]]; then
        ACCELERATOR=gpu REPS=3 SCALE=3 TINY_RECIPE=
        DATA=$WORK/data site=$WORK/site
    else # the same steps on the CPU, each at a tiny size
        ACCELERATOR=cpu REPS=1 SCALE=0.05
        TINY_RECIPE="trainer.max_epochs=1 trainer.limit_train_batches=2 trainer.limit_val_batches=1 trainer.limit_test_batches=1"
        DATA=$DATA_ARG
        if [[ $DATA_ARG == kit ]]; then
            DATA=$WORK/data site=$WORK/site
        fi
    fi
    if [[ -n $site ]]; then
        unpack_wheels "$site" 2>&1 | stamp | tee -a "$OUT/log.txt"
        ((PIPESTATUS[0] == 0)) || { record kit "FAILED: no wheels" 0; exit 1; }
        unpack_data "$DATA" || { record kit "FAILED: no data" 0; exit 1; }
    fi
    export PYTHONPATH="${site:+$site:}$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
    DATA=$(cd "$DATA" && pwd)

    export PY WORK ACCELERATOR
    if wanted smoke; then
        if [[ $MODE == gpu ]]; then
            nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | stamp | tee -a "$OUT/log.txt"
        fi
        if run_step smoke 60 bash -c smoke; then
            check smoke "imports, 2 training steps, last.ckpt written and evaluated, on $ACCELERATOR"
        fi
        ((STEP_STATUS == 0)) || { say "the smoke test failed: nothing else is run"; exit 1; }
    fi
    if wanted figure1; then # Fashion-MNIST only: runs while CIFAR-10 is being unpacked
        figure figure1 200 --figures 1 --reps "$REPS"
    fi
    for step in figure5 compile "${RECIPES[@]}"; do
        wanted "$step" || continue
        if ! cifar_ready; then
            record "$step" "FAILED: no CIFAR-10 in $DATA" 0
            FAILED=1
            continue
        fi
        case $step in
        figure5) figure figure5 150 --figures 5 --reps "$REPS" ;;
        compile) figure compile 300 --figures 5 --compile --reps 1 ;;
        *) recipe "$step" ;;
        esac
    done
    [[ -n ${CIFAR_JOB:-} ]] && wait "$CIFAR_JOB"
    say "done in $SECONDS s; summary in $OUT/summary.md"
    exit "$FAILED"
}

main "$@"
