#!/usr/bin/env bash
# One row of the README's benchmark table, from a clean checkout:
#
#   bench/row.sh DATASET SEED [extra dvc -S overrides]
#   bench/row.sh MKG-Y 0
#   bench/row.sh MKG-Y 0 -S retrain.lambda_ha=0.1     # an ablation on top of the recipe
#   RECIPE=my-recipe.yaml bench/row.sh MKG-Y 0        # another recipe file
#   bench/row.sh MKG-W 0 diffusion                     # up to a stage (a base for bench.arm)
#
# The recipe is recipes/DATASET.yaml, else recipes/default.yaml ($RECIPE: any file): a
# params.yaml fragment, checked against the params schema before anything runs. Installs the
# venv (make install), brings DATASET into data/ (from $DHNS_SHARED, default ../shared/data,
# else `dhns data download`), runs the whole pipeline as a DVC experiment with data.name, seed,
# the recipe and the extra overrides (last, so they win), and writes
# results/DATASET-seedSEED[-TAG].json (TAG: $ROW_TAG).
# One torch thread per run: two runs side by side on 2 cores beat one run with 2 threads.
set -euo pipefail
if [ $# -lt 2 ]; then
  sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
ds=$1 seed=$2
shift 2
# $RECIPE is named from the caller's folder: anchor it before the cd.
case ${RECIPE:-} in ''|/*) ;; *) RECIPE="$PWD/$RECIPE" ;; esac
cd "$(dirname "$0")/.."
[ -e .venv/.installed ] || make --quiet install
export PATH="$PWD/.venv/bin:$PATH" OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
# The recipe as one "-S key=value" line per override (bench/recipe.py); a bad recipe stops
# here with its one-line error and status 2, before the data import and the run.
recipe_file=$(RECIPE="${RECIPE:-}" python -m bench.recipe --which "$ds") || exit
recipe_lines=$(python -m bench.recipe "$recipe_file") || exit
echo "bench/row.sh: recipe $recipe_file" >&2
overrides=(-S "data.name=$ds" -S "seed=$seed")
if [ -n "$recipe_lines" ]; then
  mapfile -t lines <<<"$recipe_lines"
  for line in "${lines[@]}"; do overrides+=(-S "${line#-S }"); done
fi
if [ ! -d "data/$ds" ]; then
  shared="${DHNS_SHARED:-../shared/data}"
  if [ -d "$shared/$ds" ]; then
    dhns data import "$ds" --from "$shared/$ds"
  else
    dhns data download "$ds"
  fi
fi
# A stage named after the overrides (bench/row.sh MKG-W 0 diffusion: a base for bench.arm)
# runs the pipeline up to it; metrics/evaluate.json is then another run's. So the row is
# written only where DVC says evaluate is up to date after the run, whatever the arguments.
name="$ds-seed$seed${ROW_TAG:+-$ROW_TAG}"
command="${RECIPE:+RECIPE=$recipe_file }bench/row.sh $ds $seed $*"
start=$(date +%s)
dvc exp run "${overrides[@]}" "$@"
wall=$(( $(date +%s) - start ))
if ! dvc status --quiet evaluate; then
  echo "bench/row.sh: ran in ${wall} s, but evaluate is not up to date (the run stopped at" \
    "an earlier stage): no results row" >&2
  exit 0
fi
python -m bench.collect --name "$name" --command "$command" --wall "$wall"
