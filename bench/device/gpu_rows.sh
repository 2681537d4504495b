#!/usr/bin/env bash
# The issue-20 GPU rows in one device call (`device` tool, nvidia-h200): batches 512, 2048 and 8192 of each
# composition's search candidates in one process (one compilation), bounded so that a call of 10 minutes always
# brings its JSON back under $OUT:
#   run: bash bench/device/gpu_rows.sh <commit> <seconds per row> <composition>...
#   with carry [".whl", ".devpkg", ".devrun"]
# Candidates come from .devrun/candidates/<composition>.extxyz (bench/gpu_throughput.py candidates --out
# .devrun/candidates); one that is missing is built there on the device's 16 cores (SrY2O4 takes about 12 minutes
# per 2048 on one core) and comes back under $OUT/candidates. Wheels and LAMMPS from bench/device/pack.sh.
set -u
commit=${1:?commit measured}
seconds=${2:?seconds per row}
shift 2
[ -d /tmp/site/lammps ] || bash .devpkg/setup.sh > "$OUT/setup.log" 2>&1 || { tail -20 "$OUT/setup.log"; exit 1; }
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 RLCSP_COMMIT=$commit
mkdir -p .devrun/candidates "$OUT/candidates"
for comp in "$@"; do
    if [ ! -s ".devrun/candidates/$comp.extxyz" ]; then
        python3 bench/gpu_throughput.py candidates --n 2048 --workers "$(nproc)" --compositions "$comp" \
            --out .devrun/candidates > "$OUT/candidates/$comp.log" 2>&1
        cp ".devrun/candidates/$comp.extxyz" "$OUT/candidates/"
    fi
    timeout $((3 * seconds + 240)) python3 bench/gpu_throughput.py relax --candidates .devrun/candidates \
        --compositions "$comp" --device cuda --batch 512 2048 8192 --limit 1536 6144 24576 --compile \
        --max-seconds "$seconds" --output "$OUT/${comp}_${commit}.json" 2>&1 | grep '^|' | tail -3
done
