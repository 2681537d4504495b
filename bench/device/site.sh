# Sourced by the device scripts (campaign.sh, offline.sh): .whl's wheels and this tree into /tmp/site once per
# machine, then PYTHONPATH. Without .whl (DEVICE=cpu runs here) the Python at hand is used as it is.
if [ -d .whl ] && [ ! -d /tmp/site/rlcsp ]; then
    { python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .whl/*.whl &&
      python3 -m pip install -q --no-index --no-deps --no-build-isolation --upgrade --target /tmp/site .; } \
        > "$OUT/setup.log" 2>&1 || { tail -20 "$OUT/setup.log"; return 1; }
fi
# PYTHONSAFEPATH: `python3 -m rlcsp.cli` run from the tree's root would otherwise import the tree's rlcsp/, which
# lacks the mapped subpackages (rlcsp.inputs is inputs/), ahead of /tmp/site's: the cause of slices 4 and 5's
# "no delta" (ModuleNotFoundError: No module named 'rlcsp.inputs')
[ -d /tmp/site ] && export PYTHONPATH=/tmp/site PYTHONSAFEPATH=1
true
