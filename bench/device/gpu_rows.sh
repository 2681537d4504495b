#!/usr/bin/env bash
# The issue-20 GPU rows in one device call (`device` tool, nvidia-h200), each bounded so that a call of 10
# minutes always brings its JSON back under $OUT:
#   run: bash bench/device/gpu_rows.sh <commit> [seconds per row]   with carry [".whl", ".devpkg", ".devrun"]
# Candidates come from .devrun/candidates (bench/gpu_throughput.py candidates --out .devrun/candidates, built on
# this machine: 4096 Y2Ti2O7 take about 4 minutes on two cores); wheels and LAMMPS from bench/device/pack.sh.
set -u
commit=${1:?commit measured}
seconds=${2:-150}
[ -d /tmp/site/lammps ] || bash .devpkg/setup.sh > "$OUT/setup.log" 2>&1 || { tail -20 "$OUT/setup.log"; exit 1; }
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 RLCSP_COMMIT=$commit
for batch in 2048 8192; do
    timeout $((seconds + 90)) python3 bench/gpu_throughput.py relax --candidates .devrun/candidates \
        --compositions y2ti2o7 --device cuda --batch "$batch" --limit $((batch * 3)) --compile \
        --max-seconds "$seconds" --output "$OUT/y2ti2o7_${batch}_${commit}.json" 2>&1 | grep '^|' | tail -1
done
