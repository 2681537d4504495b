"""Relaxations per second of LammpsRelaxer, AseRelaxer on the Buckingham calculator, and AseRelaxer on CHGNet.

The same perturbed Y2O3 structures (FUSE reference cells of 20-80 atoms, strained up to 5 % and rattled)
go through every engine. Each engine runs in its own spawned process, one after another, so that its peak
RSS is its own and no two engines compete for the CPU. Throughput is relaxations per second of relaxation
wall time (engine set-up, e.g. loading CHGNet, is reported apart). LammpsRelaxer is the peer: every other
engine's throughput is divided by LAMMPS' on the same structures. The two Buckingham engines minimise the
same energy, so their final energies are also compared.

OpenBLAS is capped at one thread in the engine processes (--blas-threads): once a LAMMPS instance exists,
multi-threaded OpenBLAS runs the tiny matrix functions of ASE's FrechetCellFilter ~800x slower (scipy
lu_solve on 9x9: 0.01 ms -> 8 ms), which made AseRelaxer on Buckingham ~20x slower on a 2-core machine.

    python bench/relax_throughput.py                      # 50 structures; CHGNet on the first 10
    python bench/relax_throughput.py --chgnet-n 50        # CHGNet on all 50 (~10 min more)
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.io import read
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
ENGINES = ("lammps", "ase-buckingham", "chgnet")
PEER = "lammps"
AGREEMENT = 1e-4  # eV/atom: the two Buckingham minimisers agree when their final energies are this close


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "fuse_reference",
                        help="fuse_reference folder; the Y2O3 CIFs seed the structures")
    parser.add_argument("--n", type=int, default=50, help="number of structures")
    parser.add_argument("--engines", nargs="+", choices=ENGINES, default=list(ENGINES))
    parser.add_argument("--chgnet-n", type=int, default=10,
                        help="CHGNet relaxes only the first N structures (~10 s each on one CPU core)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads for CHGNet")
    parser.add_argument("--blas-threads", type=int, default=1,
                        help="OPENBLAS_NUM_THREADS for the engine processes; 0 leaves OpenBLAS' default")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rattle", type=float, default=0.2, help="Gaussian rattle, standard deviation in A")
    parser.add_argument("--strain", type=float, default=0.05, help="largest symmetric strain component")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "relax_throughput.json")
    return parser.parse_args()


def build_structures(data: Path, n: int, seed: int, rattle: float, strain: float) -> tuple[list[Atoms], list[str]]:
    """``n`` Y2O3 reference cells of 20-80 atoms, each strained and rattled; same seed, same structures."""
    files = sorted(data.glob("Y2O3/*/lowest_energy_structure_*.cif"),
                   key=lambda p: (p.parent.name, int(p.stem.rsplit("_", 1)[1])))
    candidates = [(f, atoms) for f in files if 20 <= len(atoms := read(f)) <= 80]
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(candidates), size=n, replace=n > len(candidates))
    structures, sources = [], []
    for i in picks:
        path, atoms = candidates[i]
        atoms = atoms.copy()
        eps = rng.uniform(-strain, strain, (3, 3))
        atoms.set_cell(atoms.cell[:] @ (np.eye(3) + (eps + eps.T) / 2), scale_atoms=True)
        atoms.rattle(stdev=rattle, rng=rng)
        structures.append(atoms)
        sources.append(str(path.relative_to(data)))
    return structures, sources


def make_relaxer(engine: str, threads: int):
    from rlcsp.calculators import get_relaxer

    if engine == "lammps":
        return get_relaxer("lammps-buckingham")
    if engine == "ase-buckingham":
        return get_relaxer("lammps-buckingham", relaxer="ase")
    return get_relaxer("chgnet", threads=threads)


def run_engine(engine: str, structures: list[Atoms], threads: int) -> dict:
    """Runs in a fresh process: set up one relaxer, relax every structure, report the process' peak RSS."""
    import resource

    start = time.perf_counter()
    relaxer = make_relaxer(engine, threads)
    setup_s = time.perf_counter() - start
    records = []
    for atoms in tqdm(structures, desc=engine, unit="relax"):
        r = relaxer.relax_one(atoms)
        records.append({"n_atoms": len(atoms), "energy_per_atom": r.energy_per_atom, "converged": r.converged,
                        "steps": r.steps, "wall_s": r.wall_s, "failure": r.failure.value if r.failure else None,
                        "message": r.message})
    relaxer.close()
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    return {"relaxer": type(relaxer).__name__, "setup_s": setup_s, "peak_rss_mib": peak_mib, "records": records}


def summarise(run: dict) -> dict:
    records = run["records"]
    walls = [r["wall_s"] for r in records]
    return {
        "relaxer": run["relaxer"], "structures": len(records), "throughput_per_s": len(records) / sum(walls),
        "mean_wall_s": statistics.mean(walls), "median_wall_s": statistics.median(walls),
        "mean_steps": statistics.mean(r["steps"] for r in records),
        "converged_fraction": sum(r["converged"] for r in records) / len(records),
        "failures": dict(Counter(r["failure"] for r in records if r["failure"])),
        "peak_rss_mib": run["peak_rss_mib"], "setup_s": run["setup_s"],
    }


def buckingham_agreement(a: list[dict], b: list[dict]) -> dict:
    """How many structures LAMMPS' and ASE's minimisers bring to the same energy (within AGREEMENT)."""
    pairs = [(i, x["energy_per_atom"], y["energy_per_atom"]) for i, (x, y) in enumerate(zip(a, b))
             if x["energy_per_atom"] is not None and y["energy_per_atom"] is not None]
    differ = [{"index": i, "lammps": ea, "ase": eb, "diff": ea - eb} for i, ea, eb in pairs if abs(ea - eb) > AGREEMENT]
    return {"tolerance_eV_per_atom": AGREEMENT, "compared": len(pairs), "agree": len(pairs) - len(differ),
            "lammps_lower": sum(d["diff"] < 0 for d in differ), "ase_lower": sum(d["diff"] > 0 for d in differ),
            "differ": differ}


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    structures, sources = build_structures(args.data, args.n, args.seed, args.rattle, args.strain)
    sizes = Counter(len(a) for a in structures)
    print(f"{len(structures)} Y2O3 structures (atoms: count {dict(sorted(sizes.items()))}), "
          f"strain <= {args.strain:g}, rattle stdev {args.rattle:g} A, seed {args.seed}; "
          f"OpenBLAS threads {args.blas_threads or 'default'}, CHGNet torch threads {args.threads}")

    if args.blas_threads:
        os.environ["OPENBLAS_NUM_THREADS"] = str(args.blas_threads)  # read when a spawned child imports numpy
    counts = {e: min(args.chgnet_n, args.n) if e == "chgnet" else args.n for e in args.engines}
    runs = {}
    for engine in args.engines:  # one engine at a time, each in a fresh process
        with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
            runs[engine] = pool.submit(run_engine, engine, structures[:counts[engine]], args.threads).result()

    summary = {e: summarise(run) for e, run in runs.items()}
    for engine, s in summary.items():
        if PEER in runs:
            peer_walls = [r["wall_s"] for r in runs[PEER]["records"][:s["structures"]]]
            s["vs_lammps"] = s["throughput_per_s"] / (len(peer_walls) / sum(peer_walls))
        else:
            s["vs_lammps"] = None

    print("\n| engine | relaxer | structures | relax/s | x LAMMPS | mean s | median s | mean steps | converged "
          "| failures | peak RSS MiB | setup s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for engine, s in summary.items():
        ratio = "-" if s["vs_lammps"] is None else f"{s['vs_lammps']:.3g}"
        failures = ", ".join(f"{k} {v}" for k, v in s["failures"].items()) or "none"
        print(f"| {engine} | {s['relaxer']} | {s['structures']} | {s['throughput_per_s']:.3g} | {ratio} "
              f"| {s['mean_wall_s']:.3g} | {s['median_wall_s']:.3g} | {s['mean_steps']:.0f} "
              f"| {s['converged_fraction']:.0%} | {failures} | {s['peak_rss_mib']:.0f} | {s['setup_s']:.1f} |")
    if "chgnet" in counts and counts["chgnet"] < args.n:
        print(f"\nCHGNet relaxed only the first {counts['chgnet']} of the {args.n} structures (--chgnet-n); "
              "its x LAMMPS ratio is against LAMMPS on those same structures.")

    agreement = None
    if "lammps" in runs and "ase-buckingham" in runs:
        agreement = buckingham_agreement(runs["lammps"]["records"], runs["ase-buckingham"]["records"])
        print(f"\nLAMMPS vs ASE minimiser on the Buckingham model: {agreement['agree']}/{agreement['compared']} "
              f"final energies within {AGREEMENT:g} eV/atom; of the rest, LAMMPS lower in "
              f"{agreement['lammps_lower']}, ASE lower in {agreement['ase_lower']}")

    wall_s = time.perf_counter() - started
    print(f"\ntotal wall time {wall_s:.0f} s")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({
        "config": {"n": args.n, "engine_structures": counts, "seed": args.seed, "rattle_stdev_A": args.rattle,
                   "max_strain": args.strain, "chgnet_threads": args.threads, "blas_threads": args.blas_threads or None,
                   "wall_s": wall_s},
        "structures": [{"source": src, "n_atoms": len(a)} for src, a in zip(sources, structures)],
        "summary": summary, "buckingham_agreement": agreement,
        "records": {e: run["records"] for e, run in runs.items()},
    }, indent=1))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
