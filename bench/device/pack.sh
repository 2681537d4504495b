#!/usr/bin/env bash
# Pack what the device machine (the `device` tool: 16 cores, Python 3.12, no network) needs to run rlcsp's CPU
# benches with LAMMPS there, into .devpkg/ and .whl/ (both git-ignored; carry them with the call):
#   - cp312 wheels of rlcsp's pure-Python needs that the device image lacks (.whl/), and of what training the
#     offline agents needs (.whl2/, bench/device/offline.sh);
#   - LAMMPS' Python module, its stripped liblammps.so and bundled libraries, and MPICH's libmpi with the
#     libfabric/UCX it was built against (the device's own libfabric is too old): 15 MB as .devpkg/lammps_pack.tar.xz
#     (the wheel itself, 86 MB, is over the 64 MiB a call may carry);
#   - .devpkg/setup.sh, which a device call runs first: `bash .devpkg/setup.sh && export PYTHONPATH=/tmp/site`.
# Results must come back as files under 16 MiB each: tar each walker folder (or checkpoint SQLite first).
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=.venv
site=$($venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
mkdir -p .devpkg
grep -qx "/.devpkg/" .git/info/exclude 2>/dev/null || echo "/.devpkg/" >> .git/info/exclude
platforms="--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64"
platforms="$platforms --platform manylinux2014_x86_64 --platform any"
wheels() {  # wheels DIR PACKAGE...: cp312 wheels into DIR (git-ignored), at this venv's version where it has one
    local dir=$1 req version
    shift
    mkdir -p "$dir"
    grep -qx "/$dir/" .git/info/exclude 2>/dev/null || echo "/$dir/" >> .git/info/exclude
    for req in "$@"; do
        req=${req%%=*}
        version=$($venv/bin/python -m pip show "$req" 2>/dev/null | sed -n 's/^Version: //p')
        $venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
            $platforms -d "$dir" "$req${version:+==$version}" 2>/dev/null \
            || $venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
                   --implementation cp $platforms -d "$dir" "$req"
    done
}
wheels .whl ase tqdm threadpoolctl dill monty spglib ruamel.yaml uncertainties palettable orjson bibtexparser \
    pymatgen-core pymatgen
# .whl2: what paper a's offline agents need to train there (bench/device/offline.sh installs each only where the
# device lacks its module)
wheels .whl2 torch_geometric gymnasium farama-notifications cloudpickle smact pandas python-dateutil pytz tzdata \
    fsspec jinja2 markupsafe xxhash psutil requests urllib3 idna certifi charset-normalizer pyparsing tabulate msgpack
tmp=$(mktemp -d)
mkdir -p "$tmp/lammps"
cp "$site"/lammps/*.py "$site/lammps/liblammps.so" "$tmp/lammps/"
cp -r "$site/lammps.libs" "$tmp/"
cp "$venv/lib/libmpi.so.12" "$tmp/" && cp -r "$venv/lib/mpich" "$tmp/"
strip --strip-unneeded "$tmp/lammps/liblammps.so" "$tmp/libmpi.so.12"
tar cJf .devpkg/lammps_pack.tar.xz -C "$tmp" .
rm -rf "$tmp"
cat > .devpkg/setup.sh <<'SETUP'
# On the device: wheels and this tree into /tmp/site, LAMMPS and MPICH beside the device's Python.
set -e
python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .whl/*.whl
python3 -m pip install -q --no-index --no-deps --no-build-isolation --upgrade --target /tmp/site . >/dev/null
mkdir -p /tmp/lp && tar xJf .devpkg/lammps_pack.tar.xz -C /tmp/lp
cp -r /tmp/lp/lammps /tmp/lp/lammps.libs /tmp/site/
prefix=$(python3 -c 'import sys; print(sys.prefix)')
cp -r /tmp/lp/libmpi.so.12 /tmp/lp/mpich "$prefix/lib/" && ln -sf libmpi.so.12 "$prefix/lib/libmpi.so"
(cd /tmp && PYTHONPATH=/tmp/site python3 -c "from rlcsp.calculators import get_calculator; from ase.build import bulk
print('LAMMPS on the device:', get_calculator('lammps-buckingham').get_potential_energy(bulk('SrO', 'rocksalt', a=5.2)))")
SETUP
du -sh .whl .whl2 .devpkg
