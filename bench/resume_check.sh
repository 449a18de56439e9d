#!/usr/bin/env bash
# A pretrain killed mid-run and resumed, against the same pretrain uninterrupted:
#
#   bench/resume_check.sh DATASET [EPOCHS] [KILL_AFTER_EPOCH]     # e.g. DB15K 20 13
#
# Runs in a clone of this checkout (../resume-check-DATASET, venv shared): imports DATASET from
# ../shared/data, extracts the names' text features, then pretrains (RotatE d=250, names as
# text, the benchmark recipe's batch and learning rate, EPOCHS epochs, a resume state every 2
# epochs) twice: once uninterrupted, once killed with SIGKILL a few seconds into the epoch
# after KILL_AFTER_EPOCH and rerun. Prints whether the final weights are bit-identical and the
# metrics equal (timings aside) and writes results/DATASET-resume-check.json here.
set -euo pipefail
ds=${1:?dataset name, e.g. DB15K} epochs=${2:-20} kill_after=${3:-13}
here=$(cd "$(dirname "$0")/.." && pwd)
work="$here/../resume-check-$ds"
rm -rf "$work" && git clone -q "$here" "$work" && ln -s "$here/.venv" "$work/.venv"
cd "$work"
export OMP_NUM_THREADS=1
.venv/bin/dhns data import "$ds" --from "${DHNS_SHARED:-../shared/data}/$ds"
.venv/bin/python - "$ds" "$epochs" <<'PY'
import sys
import yaml
p = yaml.safe_load(open("params.yaml"))
p["data"]["name"] = sys.argv[1]
p["kge"].update({"dim": 250, "modalities": ["structure", "text"]})
p["pretrain"].update({"epochs": int(sys.argv[2]), "eval_every": 5, "patience": 3,
                      "batch_size": 1024, "lr": 0.001, "max_valid": 2000})
p["resume"]["checkpoint_every"] = 2
yaml.safe_dump(p, open("params.yaml", "w"), sort_keys=False)
PY
stages/run prepare
stages/run features text
stages/run pretrain > uninterrupted.log 2>&1
mkdir -p runA && cp artifacts/pretrain/model.pt metrics/pretrain.json runA/
cp reports/pretrain.json runA/pretrain-report.json
stages/run pretrain > killed.log 2>&1 &
pid=$!
until grep -q "^epoch $kill_after " killed.log; do sleep 2; done
sleep 3
pkill -9 -f "stages.pretrain" || true
wait "$pid" || true
stages/run pretrain > resumed.log 2>&1
mkdir -p runB && cp artifacts/pretrain/model.pt metrics/pretrain.json runB/
cp reports/pretrain.json runB/pretrain-report.json
.venv/bin/python - "$ds" "$here" "$epochs" "$kill_after" <<'PY'
import json
import sys

import torch

ds, here, epochs, kill_after = sys.argv[1:]
a = torch.load("runA/model.pt", weights_only=False)["state_dict"]
b = torch.load("runB/model.pt", weights_only=False)["state_dict"]
timing = ("resources", "seconds", "seconds_per_epoch")
ma, mb = (  # the stage's record: its metrics and, timings aside, its report
    {**json.load(open(f"run{x}/pretrain.json")),
     **{k: v for k, v in json.load(open(f"run{x}/pretrain-report.json")).items()
        if k not in timing}}
    for x in "AB")
resumed = [line for line in open("resumed.log") if "resuming" in line]
out = {"command": f"bench/resume_check.sh {ds} {epochs} {kill_after}",
       "killed_after_epoch": int(kill_after), "resumed": resumed[0].strip() if resumed else None,
       "weights_bit_identical": a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a),
       "metrics_equal": ma == mb, "uninterrupted": ma, "resumed_run": mb}
json.dump(out, open(f"{here}/results/{ds}-resume-check.json", "w"), indent=2)
print(json.dumps(out, indent=2))
PY
