#!/usr/bin/env bash
# The GPU measurements of bench/README.md in one short run (not yet run on a GPU: bench/README.md says why):
# figures 1 and 5 with both contenders on the GPU, the epoch time of the ResNet-20 paper recipe, and the fast
# ResNet-20 recipe (figure 7's config) shortened to 30 epochs to fit the 15 minutes of device time, for its
# accuracy curve.
#
#   bash bench/gpu.sh /tmp/data /tmp/gpu-bench
set -uo pipefail
data=${1:?usage: bench/gpu.sh DATA_DIR OUT_DIR}
out=${2:?usage: bench/gpu.sh DATA_DIR OUT_DIR}
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"

python bench/run.py --data-dir "$data" --accelerator gpu --figures 1 5 --reps 3 --scale 3 --out "$out" \
    || echo "bench/run.py failed" >&2

train() {
    local name=$1
    shift
    echo "== $name: $*"
    python train.py "paths.data_dir=$data" "paths.output_dir=$out/$name" "paths.log_dir=$out/$name" \
        trainer.accelerator=gpu trainer.enable_progress_bar=false "$@" >"$out/$name.log" 2>&1 \
        || echo "$name failed: $out/$name.log" >&2
    tail -n 3 "$out/$name.log"
}
train paper_recipe experiment=resnet20_cifar10 trainer.max_epochs=3 test=false
train fast_recipe experiment=resnet20_cifar10_fast trainer.max_epochs=30
