#!/usr/bin/env bash
# One row of the README's benchmark table, from a clean checkout:
#
#   bench/row.sh DATASET SEED [extra dvc -S overrides]
#   bench/row.sh MKG-Y 0
#   bench/row.sh MKG-Y 0 -S retrain.lambda_ha=0.1     # an ablation on top of the recipe
#
# Installs the venv (make install), brings DATASET into data/ (from $DHNS_SHARED, default
# ../shared/data, else `dhns data download`), runs the whole pipeline as a DVC experiment with
# the benchmark recipe below, and writes results/DATASET-seedSEED[-TAG].json (TAG: $ROW_TAG).
# One torch thread per run: two runs side by side on 2 cores beat one run with 2 threads.
set -euo pipefail
if [ $# -lt 2 ]; then
  sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
ds=$1 seed=$2
shift 2
cd "$(dirname "$0")/.."
[ -e .venv/.installed ] || make --quiet install
export PATH="$PWD/.venv/bin:$PATH" OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
if [ ! -d "data/$ds" ]; then
  shared="${DHNS_SHARED:-../shared/data}"
  if [ -d "$shared/$ds" ]; then
    dhns data import "$ds" --from "$shared/$ds"
  else
    dhns data download "$ds"
  fi
fi
# The benchmark recipe: names as text (no images offline), RotatE d=250, long pretraining with
# early stopping, then the equal-budget continuation (uniform) and DHNS (retrain).
recipe=(
  -S "data.name=$ds" -S "seed=$seed"
  -S kge.dim=250 -S 'kge.modalities=[structure,text]' -S 'model.modalities=[structure,text]'
  -S pretrain.epochs=300 -S pretrain.eval_every=10 -S pretrain.patience=3
  -S pretrain.batch_size=1024 -S pretrain.lr=0.001 -S pretrain.max_valid=2000
  -S model.epochs=15
  -S retrain.epochs=30 -S retrain.batch_size=1024 -S retrain.lr=0.0002 -S retrain.eval_every=5
  -S retrain.generate_fraction=0.0625 -S retrain.refresh_every=4
)
name="$ds-seed$seed${ROW_TAG:+-$ROW_TAG}"
start=$(date +%s)
dvc exp run "${recipe[@]}" "$@"
wall=$(( $(date +%s) - start ))
python -m bench.collect --name "$name" --command "bench/row.sh $ds $seed $*" --wall "$wall"
