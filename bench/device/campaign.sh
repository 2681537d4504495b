#!/usr/bin/env bash
# An issue-21 campaign on the device machine: the walkers travel as an SQLite carry, walk on the GPU in one process
# that outlives the call (a machine stays warm between calls made within 30 s, so one walk spans several 10-minute
# calls and pays its start-up once), and what they added comes back with every call: while they walk, up to a
# consistent snapshot; once they stopped, all of it (SIGTERM after <walk-seconds>: the relaxations in flight get
# 20 s, SIGKILL at 60 s). Only the delta comes back: the carry grows with the campaign, a walk's delta does not.
#   here:  rlcsp copy STORE .devrun/carry.db --lean && xz -T0 -f .devrun/carry.db     (none for a first walk)
#   run:   bash bench/device/campaign.sh <walk-seconds> <call-seconds> COMMAND...   (a command that takes --db, --out
#          and --device: python3 bench/experiments.py walk --experiment 1 2 --processes 15, or python3 -m rlcsp.cli
#          compare SCRIPT --policies ...) with carry [".whl", ".devrun/carry.db.xz"] (wheels from
#          bench/device/pack.sh; the GPU engine needs no LAMMPS). The same call again, within 30 s of the last
#          reply, waits <call-seconds> more on the walk in progress (the carry is not read again).
#   back:  cat <files_at>/delta.db.xz.* | xz -dc > delta.db && rlcsp copy delta.db STORE (each call's delta holds
#          the walk's whole delta so far; bench/experiments.py keep --carry delta.db does the copy and keeps the
#          slice). A machine lost mid-walk: copy back the last delta and write a new carry before the next call.
# Repeat until no walker is missing; `bench/experiments.py tables --db STORE` (or `rlcsp compare ... --db STORE`)
# here then writes the tables. The delta comes back in 15 MiB parts (a call returns at most 8 files of 16 MiB).
# DEVICE=cpu runs it anywhere.
set -u
walk=${1:?seconds of walking}
call=${2:?seconds this call waits on the walk}
shift 2
began=$(date +%s)
. bench/device/site.sh || exit 1
export PYTHONUNBUFFERED=1
dir=/tmp/campaign/$(printf '%s' "$*" | md5sum | cut -c1-12)  # one walk per command on this machine
mkdir -p "$dir"
pid=$(cat "$dir/pid" 2>/dev/null)
if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    echo "the walk begun $(( began - $(stat -c %Y "$dir/pid") )) s ago goes on"
elif [ -e "$dir/exit" ]; then
    echo "the walk has ended"
else
    if [ -s .devrun/carry.db.xz ]; then xz -dc .devrun/carry.db.xz > "$dir/carry.db"; cp "$dir/carry.db" "$dir/origin.db"; fi
    setsid bash -c 'timeout -s TERM --kill-after 60 "$@"; echo $? > "'"$dir"'/exit"' walk "$walk" "$@" \
        --device "${DEVICE:-cuda}" --db "sqlite:///$dir/carry.db" --out "$dir/out" > "$dir/walk.log" 2>&1 < /dev/null &
    echo $! > "$dir/pid"
    echo "a walk of $walk s begins"
fi
while [ ! -e "$dir/exit" ] && [ $(( $(date +%s) - began )) -lt "$call" ]; do sleep 2; done
if [ -e "$dir/exit" ]; then echo "walk ended, exit $(cat "$dir/exit")"; else echo "walking: a snapshot"; fi
# SQLite's backup reads the write-ahead log too (a copy of the file alone would miss what a killed walk left there);
# what comes back is what the walk added to its carry (the carry itself grows with the campaign, the delta does not)
python3 -c "import sqlite3, sys; sqlite3.connect(sys.argv[1]).backup(sqlite3.connect(sys.argv[2]))" \
    "$dir/carry.db" "$dir/snapshot.db"
rm -f "$dir/delta.db"
python3 -m rlcsp.cli copy "sqlite:///$dir/snapshot.db" "sqlite:///$dir/delta.db" \
    $([ -e "$dir/origin.db" ] && echo --after "sqlite:///$dir/origin.db") 2>&1 | tr '\r' '\n' | tail -1
tail -c 4000000 "$dir/walk.log" > "$OUT/walk.log"
grep -a "walkers" "$dir/walk.log" | tail -3; tail -c 400 "$dir/walk.log"; echo
xz -T0 -c "$dir/delta.db" | split -b 15M -d - "$OUT/delta.db.xz."
rm -f "$dir/snapshot.db" "$dir/delta.db"
ls -l "$OUT"
