# Sourced by the device scripts (campaign.sh, offline.sh): .whl's wheels and this tree into /tmp/site once per
# machine, then PYTHONPATH. Without .whl (DEVICE=cpu runs here) the Python at hand is used as it is.
if [ -d .whl ] && [ ! -d /tmp/site/rlcsp ]; then
    { python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .whl/*.whl &&
      python3 -m pip install -q --no-index --no-deps --no-build-isolation --upgrade --target /tmp/site .; } \
        > "$OUT/setup.log" 2>&1 || { tail -20 "$OUT/setup.log"; return 1; }
fi
[ -d /tmp/site ] && export PYTHONPATH=/tmp/site
true
