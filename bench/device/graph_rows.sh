#!/usr/bin/env bash
# The graphed step (TorchRelaxer(graphs=True)) on a GPU, in one device call whose JSON comes back under $OUT:
#   run: bash bench/device/graph_rows.sh <commit>   with carry [".whl", ".devrun/gpu"]
# 1. bench/gpu_throughput.py relax on Y2Ti2O7 candidates at batch 64 (item 4's few walkers, where a step is
#    launch-bound) and 1024 (issue 21's campaign walks 1200 walkers), graphs on and off in one process: steady
#    relaxations/s, steps, collapses, captures and relayouts, and whether the two reach the same minima from the
#    same candidates (vs_graphs_off: same_minimum, max_abs_diff; on a CPU within 1.3e-7 eV/atom compiled),
#    which decides graphs for item 4 and `experiments.py walk --graphs` for the campaign;
# 2. 24 lockstep Y2Ti2O7 walkers of 40 relaxations, graphs on: the walker chain's pace, which decides whether
#    issue 20's item 4 (8 walkers of 2000 relaxations per optimiser) fits a session.
# Candidates, here: bench/gpu_throughput.py candidates --n 2048 --compositions y2ti2o7 --out .devrun/gpu (30 s)
set -u
commit=${1:?commit measured}
. bench/device/site.sh || exit 1
export PYTHONUNBUFFERED=1 RLCSP_COMMIT=$commit
timeout 420 python3 bench/gpu_throughput.py relax --candidates .devrun/gpu --compositions y2ti2o7 \
    --device cuda --batch 64 1024 --limit 1024 8192 --compile --graphs off on --max-seconds 45 \
    --output "$OUT/relax_graphs_$commit.json" > "$OUT/relax.log" 2>&1; grep '^|' "$OUT/relax.log" | tail -5
grep -o '"vs_graphs_off": {[^}]*}' "$OUT/relax.log"
timeout 125 python3 bench/gpu_throughput.py walkers --device cuda --walkers 24 --budget 40 --initial-population 4 \
    --graphs --max-seconds 95 --output "$OUT/walkers_$commit.json" > "$OUT/walkers.log" 2>&1
grep '^|' "$OUT/walkers.log" | tail -2
