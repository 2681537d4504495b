"""How often does one relaxation of a random *symmetric* structure reach the GM? Against the grid's random genomes.

FUSE's search (and rlcsp's) builds random structures as strings of atoms on a cubic grid, and reaches high-symmetry
GMs such as pyrochlore or bixbyite only through long chains of moves: in issue 21's campaign none of 12 000
initial-population relaxations of Y2Ti2O7 reached the GM, and 21 of 74 000 move products did. Random structures
drawn in a random space group with the atoms on its Wyckoff positions (AIRSS', USPEX's and CALYPSO's way; pyxtal
draws them) have few free parameters, and a high-symmetry GM is one of them. This bench measures that rate per
relaxation, with LammpsRelaxer, for each composition at the GM's formula units per primitive cell (``--z`` for
others): the number a search mixing such starts into its moves would live on.

Each start: a space group drawn uniformly from 2-230 (redrawn where the counts fit no Wyckoff set), pyxtal's
volume estimate, minimum distances cation-O 1.2 Å, O-O 1.3 Å, cation-cation 1.5 Å (looser ones only explode in
relaxation), then one relaxation. ``--db`` adds the campaign's own rates from its store (kind I: initial
population, the grid's random genomes; S: move products).

    python bench/symmetric_starts.py --n 200 --workers 2 --db sqlite:///runs/campaign.db

Needs pyxtal (``pip install pyxtal``), which rlcsp itself does not use.
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import time
import warnings
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from rlcsp.version import commit
from relaxer_basins import GM_TOL, NEAR, _one as relaxed_row, _start  # this folder is the script's sys.path[0]

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
GM_Z = {"y2o3": 8, "y2ti2o7": 2, "y2tio5": 4, "sry2o4": 2, "sr4ti3o10": 2}  # formula units in the GM's primitive cell
MIN_DISTANCE = {"cation-O": 1.2, "O-O": 1.3, "cation-cation": 1.5}  # Å, pyxtal's tolerance matrix


def _tolerances(species: list[str]):
    from pyxtal.tolerance import Tol_matrix

    pairs = []
    for i, a in enumerate(species):
        for b in species[i:]:
            kind = "O-O" if a == b == "O" else ("cation-O" if "O" in (a, b) else "cation-cation")
            pairs.append((a, b, MIN_DISTANCE[kind]))
    return Tol_matrix(*pairs, prototype="atomic")


def symmetric_start(species: list[str], counts: list[int], seed: int, tries: int = 200):
    """(space group, Atoms) of a random symmetric structure with these counts in its primitive cell, or None."""
    from pyxtal import pyxtal

    rng = random.Random(seed)
    tol = _tolerances(species)
    for _ in range(tries):
        group = rng.randint(2, 230)
        crystal = pyxtal()
        state = np.random.default_rng(rng.randrange(2 ** 31))  # pyxtal's own stream: numpy's global one is not it
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                crystal.from_random(3, group, species, counts, conventional=False, tm=tol, random_state=state)
        except Exception:  # pyxtal's way of saying the counts fit no Wyckoff set of this group
            continue
        if crystal.valid:
            return group, crystal.to_ase()
    return None


def _one(job: tuple[list[str], list[int], int]) -> dict:
    species, counts, seed = job
    made = symmetric_start(species, counts, seed)
    if made is None:
        return {"seed": seed, "group": None, "energy": None, "failure": "not_generated", "steps": 0}
    group, atoms = made
    energy, failure, steps = relaxed_row(atoms)
    return {"seed": seed, "group": group, "energy": energy, "failure": failure, "steps": steps}


def campaign_rates(db: str) -> dict:
    """GM hits per relaxation in the campaign's store, by composition: grid random genomes (I) and moves (S)."""
    from rlcsp.csp.config import load_script, make_config
    from rlcsp.stored_runs import open_store

    store = open_store(db)
    out = {}
    for name in GM_Z:
        config = make_config(load_script(ROOT / "inputs" / f"{name}.py"))
        rows = store.db.query("SELECT s.kind, COUNT(*), SUM(s.e_new <= ?) FROM steps s JOIN runs r ON r.id = s.run_id "
                              "WHERE r.name = ? GROUP BY s.kind", (config.target_energy + GM_TOL, config.name))
        out[name] = {kind: [int(n), int(hits or 0)] for kind, n, hits in rows}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--compositions", nargs="+", default=list(GM_Z), help="input scripts by name")
    parser.add_argument("--z", type=int, nargs="+", default=None, help="formula units (default: the GM's)")
    parser.add_argument("--n", type=int, default=200, help="starts per composition and Z")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--db", default=None, help="the campaign's store, for its own rates")
    parser.add_argument("--output", type=Path, default=RESULTS / "symmetric_starts.json")
    args = parser.parse_args()
    from tqdm import tqdm

    from rlcsp.csp.config import load_script, make_config

    rows = []
    with ProcessPoolExecutor(args.workers, initializer=_start, initargs=("lammps",)) as pool:
        for name in args.compositions:
            config = make_config(load_script(ROOT / "inputs" / f"{name}.py"))
            species = list(config.comp.symbols)
            for z in args.z or [GM_Z[name]]:
                counts = [n * z for n in config.comp.counts]
                jobs = [(species, counts, 1000 * z + i) for i in range(args.n)]
                began = time.time()
                starts = list(tqdm(pool.map(_one, jobs), total=len(jobs), desc=f"{name} Z={z}"))
                energies = [s["energy"] for s in starts if s["energy"] is not None]
                hits = [s for s in starts if s["energy"] is not None and s["energy"] <= config.target_energy + GM_TOL]
                rows.append({"composition": name, "z": z, "atoms": sum(counts), "n": args.n,
                             "converged": len(energies), "failures": dict(Counter(s["failure"] for s in starts)),
                             "gm": len(hits), "near": sum(e <= config.target_energy + NEAR for e in energies),
                             "gm_groups": sorted(s["group"] for s in hits),
                             "median_energy": statistics.median(energies) if energies else None,
                             "wall_s": round(time.time() - began, 1), "starts": starts})
    out = {"commit": commit(), "min_distance": MIN_DISTANCE, "rows": rows,
           "campaign": campaign_rates(args.db) if args.db else None}
    args.output.write_text(json.dumps(out, indent=1))
    write_table(out, args.output.with_suffix(".md"))


def write_table(out: dict, path: Path) -> None:
    lines = ["# Random symmetric starts (pyxtal) relaxed once by LammpsRelaxer: how often the GM", "",
             f"Commit {out['commit']}; minimum distances {out['min_distance']} Å; space groups uniform over 2-230.", "",
             "| composition | Z (atoms) | starts | converged | GM | GM per start | within 0.05 eV/atom "
             "| GM space groups drawn | campaign: grid random genomes, GM / relaxed "
             "| campaign: move products, GM / relaxed |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in out["rows"]:
        own = (out["campaign"] or {}).get(r["composition"], {})
        grid = "{1} / {0}".format(*own["I"]) if "I" in own else "–"
        moves = "{1} / {0}".format(*own["S"]) if "S" in own else "–"
        lines.append(f"| {r['composition']} | {r['z']} ({r['atoms']}) | {r['n']} | {r['converged']} | {r['gm']} | "
                     f"{r['gm'] / r['n']:.3f} | {r['near']} | {', '.join(map(str, r['gm_groups'])) or '–'} | "
                     f"{grid} | {moves} |")
    lines += ["", "A campaign walker stops at the GM, so its move products after a hit are not counted there."]
    path.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
