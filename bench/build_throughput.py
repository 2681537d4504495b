"""How fast a walker builds its candidates: random structures that pass the checks, per composition and mode.

On the GPU the relaxer is not what limits lockstep walkers early on: campaign slice 1 (1200 walkers, H200) made
about 95 relaxations/s while the relaxer alone makes 214-354/s at that batch size, and its steps table says why:
an initial-population candidate of Y2O3 took 273 random genomes and 0.24 s of a walker process to build, so the
15 walker processes spent about 94 % of their time building. This bench times ``Search.random_structure`` (what
each initial-population step calls) in this tree and in a peer commit's (``--peer``, checked out as a git
worktree), on the same seeds, in the same run, and checks that both draw the same structures (a digest of the
genomes and attempt counts): a faster build must not change a trajectory.

    python bench/build_throughput.py --peer bc9c0ff --structures 40
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
COMPOSITIONS = ("y2o3", "y2ti2o7", "y2tio5", "sry2o4", "sr4ti3o10")
MODES = {"default": {}, "FUSE 1.04": {"fuse": "1.04"}, "FUSE 1.06": {"fuse": "1.06"}}


def measure(composition: str, mode: str, structures: int, seed: int) -> dict:
    """Build ``structures`` random structures with the rlcsp on sys.path (this tree's or the peer's)."""
    from rlcsp.calculators.relax import Relaxer
    from rlcsp.csp.config import load_script, make_config
    from rlcsp.csp.search import Search

    class Unused(Relaxer):  # building never relaxes
        name = "unused"

        def relax_one(self, atoms):
            raise RuntimeError("the build bench relaxes nothing")

    base = load_script(ROOT / "inputs" / f"{composition}.py")
    config = make_config({**base, **MODES[mode]}, policy="uniform", seed=seed, budget=2000)
    search = Search(config, relaxer=Unused())
    started = time.perf_counter()
    drawn = [(genome.to_dict(), attempts) for genome, _, attempts in (search.random_structure()
                                                                      for _ in range(structures))]
    seconds = time.perf_counter() - started
    attempts = sum(n for _, n in drawn)
    return {"ms_per_structure": 1000 * seconds / structures, "attempts_per_structure": attempts / structures,
            "us_per_attempt": 1e6 * seconds / attempts,
            "digest": hashlib.sha256(json.dumps(drawn).encode()).hexdigest()[:16]}


def run_in(tree: Path, composition: str, mode: str, structures: int, seed: int) -> dict:
    """``measure`` in a fresh interpreter that imports rlcsp from ``tree``."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run([sys.executable, __file__, "--measure", composition, mode, str(structures), str(seed)],
                         env=env, cwd=tempfile.gettempdir(), capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def commit(tree: Path) -> str:
    return subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peer", default="bc9c0ff", help="the commit to compare with (default bc9c0ff)")
    parser.add_argument("--structures", type=int, default=40, help="random structures per row (default 40)")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--measure", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        comp, mode, structures, seed = args.measure
        print(json.dumps(measure(comp, mode, int(structures), int(seed))))
        return
    from tqdm import tqdm

    with tempfile.TemporaryDirectory() as tmp:
        peer = Path(tmp) / "peer"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(peer), args.peer],
                       check=True)
        try:
            here, there = commit(ROOT), commit(peer)
            dirty = bool(subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                                        capture_output=True, text=True).stdout.strip())
            rows = []
            for comp, mode in tqdm([(c, m) for c in COMPOSITIONS for m in MODES], desc="build bench"):
                now = run_in(ROOT, comp, mode, args.structures, args.seed)
                before = run_in(peer, comp, mode, args.structures, args.seed)
                rows.append({"composition": comp, "mode": mode, "structures": args.structures, "seed": args.seed,
                             "commit": here + ("+changes" if dirty else ""), "peer": there, **now,
                             "peer_ms_per_structure": before["ms_per_structure"],
                             "speedup": before["ms_per_structure"] / now["ms_per_structure"],
                             "same_structures": now["digest"] == before["digest"]})
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(peer)], check=True)
    lines = [f"# Building random structures: {rows[0]['commit']} against {rows[0]['peer']} (same seeds, one core)",
             "", "| composition | mode | attempts per structure | ms per structure | peer ms | speedup | same "
             "structures |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['composition']} | {r['mode']} | {r['attempts_per_structure']:.0f} | {r['ms_per_structure']:.1f} "
              f"| {r['peer_ms_per_structure']:.1f} | {r['speedup']:.2f} | {'yes' if r['same_structures'] else 'NO'} |"
              for r in rows]
    print("\n".join(lines))
    (RESULTS / "build_throughput.md").write_text("\n".join(lines) + "\n")
    (RESULTS / "build_throughput.json").write_text(json.dumps(rows, indent=1) + "\n")
    if not all(r["same_structures"] for r in rows):
        sys.exit("the two commits drew different structures from the same seeds")


if __name__ == "__main__":
    main()
