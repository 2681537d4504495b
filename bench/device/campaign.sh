#!/usr/bin/env bash
# One slice of an issue-21 campaign in one device call: the walkers travel as an SQLite carry, continue on the GPU
# for <seconds>, stop cleanly (SIGTERM: the relaxations in flight are finished and stored) and come back.
#   here:  rlcsp copy STORE .devrun/carry.db --lean && xz -T0 -f .devrun/carry.db     (none for the first slice)
#   run:   bash bench/device/campaign.sh <seconds> COMMAND...   (a command that takes --db, --out and --device:
#          python3 bench/experiments.py walk --experiment 1, or python3 -m rlcsp.cli compare SCRIPT --policies ...)
#          with carry [".whl", ".devrun/carry.db.xz"] (wheels from bench/device/pack.sh; the GPU engine needs no LAMMPS,
#          so .devpkg stays here and the carry keeps its 15 MB)
#   back:  cat <files_at>/carry.db.xz.* | xz -dc > carry.db && rlcsp copy carry.db STORE
# Repeat until no walker is missing; `bench/experiments.py tables --db STORE` (or `rlcsp compare ... --db STORE`)
# here then writes the tables. The carry comes back in 15 MiB parts (a call returns at most 8 files of 16 MiB).
# DEVICE=cpu runs it anywhere.
set -u
seconds=${1:?seconds of walking}
shift
if [ -d .whl ] && [ ! -d /tmp/site/rlcsp ]; then
    { python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .whl/*.whl &&
      python3 -m pip install -q --no-index --no-deps --no-build-isolation --upgrade --target /tmp/site .; } \
        > "$OUT/setup.log" 2>&1 || { tail -20 "$OUT/setup.log"; exit 1; }
fi
[ -d /tmp/site ] && export PYTHONPATH=/tmp/site
export PYTHONUNBUFFERED=1
work=$(mktemp -d)
if [ -s .devrun/carry.db.xz ]; then xz -dc .devrun/carry.db.xz > "$work/carry.db"; fi
timeout -s TERM --kill-after 120 "$seconds" "$@" --device "${DEVICE:-cuda}" --db "sqlite:///$work/carry.db" \
    --out "$work/out" > "$OUT/walk.log" 2>&1
echo "exit $? after ${seconds} s"; grep -a "walkers" "$OUT/walk.log" | tail -3
xz -T0 -c "$work/carry.db" | split -b 15M -d - "$OUT/carry.db.xz."
ls -l "$OUT"
