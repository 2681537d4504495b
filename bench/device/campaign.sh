#!/usr/bin/env bash
# An issue-21 campaign on the device machine: the walkers travel as an SQLite carry, walk on the GPU in one process
# that outlives the call (a machine stays warm between calls made within 30 s, so one walk spans several 10-minute
# calls and pays its start-up once), and what they added comes back with every call: while they walk, up to a
# consistent snapshot; once they stopped, all of it (SIGTERM after <walk-seconds>: the relaxations in flight get
# 20 s, SIGKILL at 60 s). Only the delta comes back: the carry grows with the campaign, a walk's delta does not.
# On a machine of N GPUs (or GPUS=N) there are N walks, one a GPU, each of `--part k/N` of the walkers (a command
# that takes --part: bench/experiments.py walk) with its own copy of the carry; one delta of them all comes back.
#   here:  rlcsp copy STORE .devrun/carry.db --lean && xz -T0 -f .devrun/carry.db     (none for a first walk)
#   run:   bash bench/device/campaign.sh <walk-seconds> <call-seconds> COMMAND...   (a command that takes --db, --out
#          and --device: python3 bench/experiments.py walk --experiment 1 2 --processes 15, or python3 -m rlcsp.cli
#          compare SCRIPT --policies ...) with carry [".whl", ".devrun/carry.db.xz"] (wheels from
#          bench/device/pack.sh; the GPU engine needs no LAMMPS). The same call again, within 30 s of the last
#          reply, waits <call-seconds> more on the walk in progress (the carry is not read again).
#          A carry too big for one call (the tree, .whl and the carry share 64 MiB) goes in chunks, one a call:
#            split -b 40M -d .devrun/carry.db.xz .devrun/carry.db.xz. && rm .devrun/carry.db.xz &&
#            (cd .devrun && sha256sum carry.db.xz.[0-9][0-9] > carry.chunks)
#          then the calls carry [".whl", ".devrun/carry.chunks", ".devrun/carry.db.xz.00"], then ...01 and so on,
#          each within 30 s of the last reply; the calls before the last answer exit 3, the last starts the walk.
#   back:  cat <files_at>/delta.db.xz.* | xz -dc > delta.db && rlcsp copy delta.db STORE (each call's delta holds
#          the walk's whole delta so far; bench/experiments.py keep --carry delta.db does the copy and keeps the
#          slice). A machine lost mid-walk: copy back the last delta and write a new carry before the next call.
#          A part whose delta could not be written returns its whole store, part<k>.db.xz.* (exit 1): the same
#          `keep --carry` takes it.
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
# the GPUs this machine shows us: CUDA_VISIBLE_DEVICES' list where it is set (left as it is for one GPU)
IFS=, read -ra visible <<< "${CUDA_VISIBLE_DEVICES:-}"
if [ -z "${GPUS:-}" ]; then
    GPUS=1
    if [ "${DEVICE:-cuda}" = cuda ]; then
        GPUS=${#visible[@]}
        [ "$GPUS" -ge 1 ] || GPUS=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')
        [ "$GPUS" -ge 1 ] || GPUS=1
    fi
fi
[ ${#visible[@]} -ge "$GPUS" ] || visible=($(seq 0 $(( GPUS - 1 ))))
case " $* " in *" --part "*) [ "$GPUS" -gt 1 ] && { echo "$GPUS GPUs walk a part each: leave --part out"; exit 2; } ;; esac
base=/tmp/campaign/$(printf '%s' "$*" | md5sum | cut -c1-12)  # one walk per command (and GPU) on this machine
mkdir -p "$base"
carry=.devrun/carry.db.xz
if [ -s .devrun/carry.chunks ]; then  # a carry over one call's 64 MiB comes in chunks, a call each, kept here
    mkdir -p "$base/chunks"
    cp .devrun/carry.chunks .devrun/carry.db.xz.[0-9][0-9] "$base/chunks/" 2>/dev/null
    if ! bad=$(cd "$base/chunks" && sha256sum --quiet -c carry.chunks 2>/dev/null); then  # missing or corrupt
        total=$(wc -l < "$base/chunks/carry.chunks")
        echo "carry: $(( total - $(grep -c FAILED <<< "$bad") )) of $total chunks here; call again with the next" \
             "(within 30 s: a machine given back forgets them)"
        exit 3
    fi
    carry=$base/carry.db.xz
    [ -s "$carry" ] || cat "$base/chunks"/carry.db.xz.[0-9][0-9] > "$carry"
fi
for k in $(seq 1 "$GPUS"); do
    dir=$base/part$k
    mkdir -p "$dir"
    pid=$(cat "$dir/pid" 2>/dev/null)
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        echo "part $k/$GPUS: the walk begun $(( began - $(stat -c %Y "$dir/pid") )) s ago goes on"
    elif [ -e "$dir/exit" ]; then
        echo "part $k/$GPUS: the walk has ended"
    else
        if [ -s "$carry" ]; then xz -dc "$carry" > "$dir/carry.db"; cp "$dir/carry.db" "$dir/origin.db"; fi
        part=(); gpu=(); [ "$GPUS" -gt 1 ] && part=(--part "$k/$GPUS") && gpu=("CUDA_VISIBLE_DEVICES=${visible[k-1]}")
        env ${gpu[@]+"${gpu[@]}"} setsid bash -c 'timeout -s TERM --kill-after 60 "$@"; echo $? > "'"$dir"'/exit"' \
            walk "$walk" "$@" ${part[@]+"${part[@]}"} --device "${DEVICE:-cuda}" --db "sqlite:///$dir/carry.db" --out "$dir/out" \
            > "$dir/walk.log" 2>&1 < /dev/null &
        echo $! > "$dir/pid"
        echo "part $k/$GPUS: a walk of $walk s begins"
    fi
done
ended() { for k in $(seq 1 "$GPUS"); do [ -e "$base/part$k/exit" ] || return 1; done; }
while ! ended && [ $(( $(date +%s) - began )) -lt "$call" ]; do sleep 2; done
for k in $(seq 1 "$GPUS"); do
    dir=$base/part$k
    if [ -e "$dir/exit" ]; then echo "part $k: walk ended, exit $(cat "$dir/exit")"; else echo "part $k: walking"; fi
    # SQLite's backup reads the write-ahead log too (a copy of the file alone would miss what a killed walk left
    # there); what comes back is what the walk added to its carry, every part's in one file
    python3 -c "import sqlite3, sys; sqlite3.connect(sys.argv[1]).backup(sqlite3.connect(sys.argv[2]))" \
        "$dir/carry.db" "$dir/snapshot.db"
    [ "$k" = 1 ] && rm -f "$base/delta.db"
    if python3 -m rlcsp.cli copy "sqlite:///$dir/snapshot.db" "sqlite:///$base/delta.db" \
        $([ -e "$dir/origin.db" ] && echo --after "sqlite:///$dir/origin.db") > "$dir/copy.log" 2>&1; then
        tr '\r' '\n' < "$dir/copy.log" | tail -1
    else  # nothing walked is lost: the part's whole store comes back instead (keep --carry takes it as it is)
        echo "part $k: no delta ($(tail -1 "$dir/copy.log")); its whole store comes back as part$k.db.xz.*"
        tail -c 20000 "$dir/copy.log" > "$OUT/part$k.copy.log"  # why, past the walk's log that fills the reply
        xz -T0 -1 -c "$dir/snapshot.db" | split -b 15M -d - "$OUT/part$k.db.xz."
        failed=1
    fi
    rm -f "$dir/snapshot.db"
    { echo "== part $k/$GPUS"; tail -c $(( 4000000 / GPUS )) "$dir/walk.log"; } >> "$OUT/walk.log"
    grep -a "walkers" "$dir/walk.log" | tail -3; tail -c 400 "$dir/walk.log"; echo
done
[ -s "$base/delta.db" ] && xz -T0 -c "$base/delta.db" | split -b 15M -d - "$OUT/delta.db.xz."
rm -f "$base/delta.db"
ls -l "$OUT"
[ -n "${failed:-}" ] && for log in "$OUT"/part*.copy.log; do
    echo "no delta: $(basename "$log"): $(tail -3 "$log")"
done
exit "${failed:-0}"
