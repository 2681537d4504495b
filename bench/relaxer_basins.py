"""Which minimum do the same search candidates reach under different relaxers? (FUSE parity, issue 17)

Each worker builds random candidates the way rlcsp's ``fuse="1.06"`` profile builds its initial population
(formula-unit count uniform, FUSE's checks, ASE's seed-42 rattle), keeps those of two formula units (the size of
the Y2Ti2O7 and SrY2O4 GM cells: 22 and 14 atoms), and relaxes each with
  lammps: ``LammpsRelaxer`` (CG + box/relax; keeps A exp(-r/rho) below 1.2 A while it minimises), and
  ase:    ``AseRelaxer`` FIRE -> BFGS on the exact GULP model (no exponential below 1.2 A, as GULP minimises),
then reports per composition the failures, the rate of reaching the GM (or within 0.05 eV/atom), median energies
and times, and how often the two end in the same minimum. The peer in the same run is the other relaxer.

    python bench/relaxer_basins.py --workers 2 --deadline 600
    python bench/relaxer_basins.py --report runs/basins/*.jsonl     # the table from earlier workers' files
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
TARGETS = {"y2ti2o7": -35.153743, "sry2o4": -24.428313}


def work(job: tuple[int, str, float]) -> None:
    """One worker: candidates of one composition until the deadline, one JSON line each."""
    worker, out, deadline = job
    from rlcsp.calculators import get_relaxer
    from rlcsp.csp.config import load_script, make_config
    from rlcsp.csp.search import Search

    comp = list(TARGETS)[worker % len(TARGETS)]
    config = make_config(load_script(ROOT / "inputs" / f"{comp}.py"), fuse="1.06", seed=1000 + worker)
    search = Search(config, relaxer=object())
    relaxers = {"lammps": get_relaxer("lammps-buckingham"), "ase": get_relaxer("lammps-buckingham", relaxer="ase")}
    start = time.time()
    with open(Path(out) / f"basins_{worker}.jsonl", "w") as handle:
        while time.time() - start < deadline:
            _, atoms, _ = search.random_structure()
            if len(atoms) != 2 * config.comp.atoms_per_fu:
                continue
            atoms = search._rattle(atoms)
            row = {"comp": comp, "n_atoms": len(atoms), "target": TARGETS[comp]}
            for name, relaxer in relaxers.items():
                began = time.time()
                result = relaxer.relax([atoms])[0]
                row[name] = {"e": result.energy_per_atom if result.ok else None,
                             "fail": result.failure.value if result.failure else "",
                             "s": round(time.time() - began, 3), "steps": result.steps}
            handle.write(json.dumps(row) + "\n")
            handle.flush()


def table(files: list[Path]) -> dict:
    rows = [json.loads(line) for f in files for line in f.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if "ase" in r]  # a candidate cut off by the deadline between the relaxers
    out = {}
    for comp in sorted({r["comp"] for r in rows}):
        cands = [r for r in rows if r["comp"] == comp]
        target = cands[0]["target"]
        entry = {"candidates": len(cands), "n_atoms": cands[0]["n_atoms"], "target": target}
        for name in ("lammps", "ase"):
            ok = [r[name]["e"] for r in cands if r[name]["e"] is not None]
            entry[name] = {
                "failures": dict(Counter(r[name]["fail"] for r in cands if r[name]["e"] is None)),
                "gm": sum(e <= target + 1e-5 for e in ok), "within_0.05": sum(e <= target + 0.05 for e in ok),
                "median_energy": statistics.median(ok) if ok else None, "lowest_energy": min(ok) if ok else None,
                "median_s": statistics.median(r[name]["s"] for r in cands)}
        entry["same_minimum"] = sum(1 for r in cands if r["lammps"]["e"] is not None and r["ase"]["e"] is not None
                                    and abs(r["lammps"]["e"] - r["ase"]["e"]) < 1e-4)
        out[comp] = entry
    return out


def markdown(summary: dict, note: str) -> str:
    lines = [note, "", "| composition | candidates (atoms) | relaxer | failures | GM | within 0.05 eV/atom | median E "
             "| lowest E | median s | same minimum |", "|---|---|---|---|---|---|---|---|---|---|"]
    for comp, e in summary.items():
        for name in ("lammps", "ase"):
            r = e[name]
            fails = ", ".join(f"{k} {v}" for k, v in r["failures"].items()) or "0"
            lines.append(f"| {comp} | {e['candidates']} ({e['n_atoms']}) | {name} | {fails} | {r['gm']} | "
                         f"{r['within_0.05']} | {r['median_energy']:.4f} | {r['lowest_energy']:.4f} | "
                         f"{r['median_s']:.2f} | {e['same_minimum']} of {e['candidates']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2, help="processes (one composition each, alternating)")
    parser.add_argument("--deadline", type=float, default=600.0, help="seconds each worker builds and relaxes")
    parser.add_argument("--out", default=str(ROOT / "runs" / "basins"), help="folder for the workers' JSONL files")
    parser.add_argument("--report", nargs="+", type=Path, help="only tabulate these JSONL files")
    parser.add_argument("--note", default="", help="provenance line for the table (machine, commit)")
    args = parser.parse_args()
    files = args.report
    if files is None:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        with ProcessPoolExecutor(args.workers) as pool:
            list(pool.map(work, [(w, args.out, args.deadline) for w in range(args.workers)]))
        files = sorted(Path(args.out).glob("basins_*.jsonl"))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    note = args.note or f"{args.workers} workers x {args.deadline:.0f} s on this machine, commit {commit}"
    summary = table(files)
    text = markdown(summary, note)
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "relaxer_basins.md").write_text(text)
    (RESULTS / "relaxer_basins.json").write_text(json.dumps({"note": note, "summary": summary}, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main())
