"""Does the relaxer decide how wide the GM's funnel is? Genomes a few moves from FUSE's GM genomes, every relaxer.

FUSE's walk reached the Y2Ti2O7 GM in 40 of 40 runs; ours, with the same loop, in none. A basin-hopping walk
finds a minimum through a funnel: genomes a few moves away from the GM's genome must relax to the GM (or near it)
often enough. So for each FUSE reference GM that maps onto a passing grid genome in FUSE 1.06's mode
(``rlcsp.csp.grid_map``, as ``bench/gm_genomes.py``), this bench builds genomes k = 0..3 local moves away (moves 1,
2, 4, 9, 10 of the 1.06 profile, each result checked as the search checks it), rattles each start with the search's
rattle, and relaxes the same starts with every relaxer:
  lammps      ``LammpsRelaxer``, the search's (CG + box/relax; keeps A exp(-r/rho) below 1.2 A while minimising);
  torch       ``TorchRelaxer`` L-BFGS, the batched engine (keeps the exponential too);
  torch-gulp  the same with GULP's convention (no exponential below 1.2 A while minimising);
  torch-fire  the batched engine's FIRE (on request: 3-4 times the steps);
  torch-cg    the batched engine's CG then L-BFGS: the path shape of GULP's staged relaxation in FUSE (conjugate
              gradients for 50 cycles at steps of at most 0.1 A, then L-BFGS);
  ase         ASE FIRE -> BFGS on the exact model (GULP's convention), on the first ``--ase-max`` starts.
It reports, per relaxer and k, how often the start reaches the GM, comes within 0.02 eV/atom of it, fails, and
the median energy. The peer is LAMMPS, the relaxer every search row so far ran with.

    python bench/gm_funnel.py --per-k 6 --ase-max 24
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import time
from pathlib import Path

import numpy as np
from ase.io import read
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
LOCAL_MOVES = (1, 2, 4, 9, 10)
GM_TOL = 2e-5  # eV/atom, as gm_genomes


def gm_genomes(composition: str, policy: str, data: Path) -> tuple[object, list]:
    """The search (FUSE 1.06 mode, no relaxer) and the passing grid genomes fitted to each GM CIF of ``policy``."""
    from rlcsp.csp.config import load_script, make_config
    from rlcsp.csp.grid_map import candidate_instructions, fit
    from rlcsp.csp.search import Search

    config = make_config(load_script(ROOT / "inputs" / f"{composition.lower()}.py"), fuse="1.06", seed=7)
    search = Search(config, relaxer=object())
    comp = config.comp
    genomes = []
    for path in sorted((data / composition / policy).glob("lowest_energy_structure_*.cif")):
        atoms = read(path)
        for ins in candidate_instructions(atoms, comp.ap(), comp.max_sub(config.max_atoms)):
            if ins.angles[2] != 90.0 and ins.offsets != "cartesian":
                continue
            genome = fit(atoms, ins, comp.anions, fuse_compatible=search.ctx.fuse_compatible).genome
            if search._check(genome, config.max_atoms, "moves") is not None:
                genomes.append((path.name, genome))
                break  # the best-fitting passing cell of each CIF
    return search, genomes


def neighbours(search, genome, k: int, n: int, rng: np.random.Generator) -> list:
    """The assembled structures of up to ``n`` distinct passing genomes ``k`` local moves from ``genome`` (k = 0:
    the genome itself, ``n`` times)."""
    from rlcsp.actions import MOVES
    from rlcsp.exceptions import InvalidMove, NotApplicable

    if k == 0:
        return [search._check(genome, search.config.max_atoms, "moves")] * n
    found: dict = {}  # genome -> its assembled structure
    for _ in range(50 * n):
        g = genome
        try:
            for _ in range(k):
                g = MOVES[int(rng.choice(LOCAL_MOVES))].apply(g, search.ctx, rng)
        except (InvalidMove, NotApplicable):
            continue
        if g != genome and g not in found:
            atoms = search._check(g, search.config.max_atoms, "moves")
            if atoms is not None:
                found[g] = atoms
                if len(found) == n:
                    break
    return list(found.values())


RELAXERS = ("lammps", "torch", "torch-gulp", "torch-fire", "torch-cg", "ase")


def make_relaxer(name: str):
    from rlcsp.calculators import get_relaxer
    from rlcsp.calculators.lammps_relax import LammpsRelaxer
    from rlcsp.calculators.torch_relax import TorchRelaxer

    lib = ROOT / "inputs" / "lib2.lib"
    return {"lammps": lambda: LammpsRelaxer(lib), "torch": lambda: TorchRelaxer(lib),
            "torch-gulp": lambda: TorchRelaxer(lib, inner="gulp"),
            "torch-fire": lambda: TorchRelaxer(lib, optimizer="fire"),
            "torch-cg": lambda: TorchRelaxer(lib, optimizer="cg"),
            "ase": lambda: get_relaxer("lammps-buckingham", relaxer="ase")}[name]()


def table(rows: list[dict], head: str) -> str:
    lines = [head, "", "| relaxer | k moves | starts | failed | GM | within 0.02 eV/atom | median E (eV/atom) "
             "| same minimum as lammps |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        med = f"{r['median_energy']:.4f}" if r["median_energy"] is not None else "-"
        lines.append(f"| {r['relaxer']} | {r['k']} | {r['starts']} | {r['failed']} | {r['gm']} | {r['within_0.02']} | "
                     f"{med} | {r['same_as_lammps'] if r['relaxer'] != 'lammps' else '-'} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--composition", default="Y2Ti2O7")
    parser.add_argument("--policy", default="Uniform", help="whose GM CIFs (fuse_reference folder)")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "fuse_reference")
    parser.add_argument("--per-k", type=int, default=6, help="starts per GM genome and k")
    parser.add_argument("--max-k", type=int, default=3)
    parser.add_argument("--relaxers", nargs="+", default=["lammps", "torch", "torch-gulp", "ase"], choices=RELAXERS)
    parser.add_argument("--ase-max", type=int, default=24, help="starts the slow ASE relaxer gets")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=RESULTS / "gm_funnel.json")
    parser.add_argument("--reuse", type=Path, default=None,
                        help="an earlier gm_funnel.json of the same starts: keep its relaxers' energies")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    search, found = gm_genomes(args.composition, args.policy, args.data)
    target = search.config.target_energy
    rng = np.random.default_rng(args.seed)
    starts = []  # (cif, k, rattled atoms)
    for cif, genome in found:
        for k in range(args.max_k + 1):
            for atoms in neighbours(search, genome, k, args.per_k, rng):
                starts.append((cif, k, search._rattle(atoms)))
    print(f"{len(found)} GM genomes from {args.composition}/{args.policy}; {len(starts)} starts")
    energies: dict[str, list] = {}
    seconds: dict[str, float] = {}
    reused = ""
    if args.reuse:  # the starts come from the same seed and code; their (CIF, k) list must agree exactly
        old = json.loads(args.reuse.read_text())
        if [tuple(s) for s in old["starts"]] != [(c, k) for c, k, _ in starts]:
            raise SystemExit(f"{args.reuse} holds other starts; rerun those relaxers instead")
        energies, seconds = old["energies"], old["seconds"]
        reused = f"; {', '.join(energies)} reused from commit {old['commit']}"
        args.relaxers = [name for name in args.relaxers if name not in energies]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    for name in args.relaxers:  # lammps first: the others are compared with it
        relaxer = make_relaxer(name)
        todo = [a for _, _, a in starts][: args.ase_max if name == "ase" else None]
        t0 = time.perf_counter()
        if name.startswith("torch"):
            results = relaxer.relax(todo)
        else:
            results = [relaxer.relax([a])[0] for a in tqdm(todo, desc=name)]
        seconds[name] = time.perf_counter() - t0
        energies[name] = [r.energy_per_atom if r.ok else None for r in results]
        rows = []
        for done, es in energies.items():
            for k in range(args.max_k + 1):
                pairs = [(e, lam) for (_, kk, _), e, lam in zip(starts, es, energies["lammps"]) if kk == k]
                ok = [e for e, _ in pairs if e is not None]
                rows.append({"relaxer": done, "k": k, "starts": len(pairs), "failed": len(pairs) - len(ok),
                             "gm": sum(e <= target + GM_TOL for e in ok),
                             "within_0.02": sum(e <= target + 0.02 for e in ok),
                             "median_energy": statistics.median(ok) if ok else None,
                             "same_as_lammps": sum(e is not None and lam is not None and abs(e - lam) < 1e-4
                                                   for e, lam in pairs)})
        head = (f"{args.composition}: {len(found)} GM genomes fitted to FUSE {args.policy} GM CIFs (1.06 mode), "
                f"{args.per_k} starts per genome and k (the same rattled starts for every relaxer; ase on the first "
                f"{args.ase_max}); commit {commit}, one core; seconds per relaxer "
                f"{json.dumps({n: round(v) for n, v in seconds.items()})}{reused}")
        text = table(rows, head)
        print(text, flush=True)
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "commit": commit,
                                           "rows": rows, "seconds": seconds,
                                           "starts": [(c, k) for c, k, _ in starts], "energies": energies}, indent=1))
        args.output.with_suffix(".md").write_text(text + "\n")


if __name__ == "__main__":
    main()
