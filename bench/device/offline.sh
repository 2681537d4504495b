#!/usr/bin/env bash
# Issue 22: paper a's offline agents (BC, CQL, c-CQL alpha 1 and 5) trained at the paper's scale (200 000 steps of
# batch 1024, width 64, 3 MEGNet blocks; about 0.75 s a step on one core here) on the device's GPU, one process per
# agent, in slices that outlive a call like campaign.sh's walks (the same call again within 30 s waits on them),
# beside a campaign if one walks: `bash bench/device/campaign.sh ... & bash bench/device/offline.sh ...; wait`.
#   here:  bash bench/device/pack.sh; mkdir -p .devrun/perov_5 && cp ../shared/data/perov_5/*.csv .devrun/perov_5/
#          .venv/bin/rlcsp fill-eval --train .devrun/perov_5/val.csv --test .devrun/perov_5/test.csv --steps 0 \
#              --condition-range 0 4 --cache .devrun/fillcache --out /tmp/fillcache-build --train-only --quiet
#          (the datasets, built once here: 5 min) and, after an earlier slice, cp <files_at>/offline.tar.* .devrun/
#   run:   bash bench/device/offline.sh <train-seconds> <call-seconds> with carry [".whl", ".whl2", ".devrun/perov_5",
#          ".devrun/fillcache", ".devrun/offline.tar.00", ...] (the checkpoints are about 5 MB an agent: with a
#          campaign's carry, start the walk in one call and the training in the next; a warm machine keeps both)
#   back:  mkdir -p runs/fill-offline-paper && cat <files_at>/offline.tar.* | tar xf - -C runs/fill-offline-paper;
#          here
#          .venv/bin/rlcsp fill-eval --train ../shared/data/perov_5/val.csv --test ../shared/data/perov_5/test.csv \
#              --steps 200000 --condition-range 0 4 --out runs/fill-offline-paper    (evaluates; trains no further)
# A slice ends with SIGTERM, which checkpoints each agent at its step; a fresh machine continues from the tar.
# DEVICE=cpu runs it anywhere.
set -u
train=${1:?seconds of training}
call=${2:?seconds this call waits}
agents=${AGENTS:-bc cql c-cql-1 c-cql-5}
began=$(date +%s)
dir=/tmp/offline
if [ ! -e "$dir/started" ]; then
    mkdir -p "$dir/out"
    . bench/device/site.sh || exit 1
    for wheel in .whl2/*.whl; do  # only what the device's Python lacks: its own builds stay
        name=$(basename "$wheel" | cut -d- -f1)
        case $name in python_dateutil) module=dateutil ;; *) module=$name ;; esac
        python3 -c "import $module" 2>/dev/null ||
            python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site "$wheel"
    done
    ls .devrun/offline.tar.* > /dev/null 2>&1 && cat .devrun/offline.tar.* | tar xf - -C "$dir/out"
    for agent in $agents; do
        setsid timeout -s TERM --kill-after 120 "$train" python3 -m rlcsp.cli fill-eval \
            --train .devrun/perov_5/val.csv --test .devrun/perov_5/test.csv --steps 200000 --condition-range 0 4 \
            --agents "$agent" --cache .devrun/fillcache --out "$dir/out" --db "sqlite:///$dir/$agent.db" \
            --device "${DEVICE:-cuda}" --train-only --quiet > "$dir/$agent.log" 2>&1 < /dev/null &
        echo $! > "$dir/$agent.pid"
    done
    touch "$dir/started"
    echo "training $agents for $train s"
fi
running() { for agent in $agents; do kill -0 "$(cat "$dir/$agent.pid")" 2>/dev/null && return 0; done; return 1; }
while running && [ $(( $(date +%s) - began )) -lt "$call" ]; do sleep 5; done
running && echo "training goes on" || echo "training has stopped"
for agent in $agents; do echo "$agent: $(tail -c 300 "$dir/$agent.log" | tr '\r' '\n' | tail -2)"; done
(cd "$dir/out" && tar cf - */checkpoint.pt */metrics.csv 2>/dev/null) | split -b 15M -d - "$OUT/offline.tar."
tail -c 200000 "$dir"/*.log > "$OUT/offline.log" 2>/dev/null
ls -l "$OUT"
