"""Check the LAMMPS Buckingham engine on the 600 FUSE reference structures and reproduce the success table.

Every best-of-run CIF is evaluated as given (not re-relaxed) twice: by the LAMMPS engine and by the slow,
independent direct-sum evaluation in ``rlcsp.calculators.reference_energy``. The two must agree to far better than
the 2e-6 eV/atom success tolerance, and the LAMMPS energies must reproduce the published per-policy success
counts (shared/data/README.md, fuse.md section 5.3).

The independent check sums C6 directly to 30 A plus a mean-field tail, as the published numbers were made
(fuse.md Appendix B); in long, thin cells that tail is off by ~2e-6 eV/atom, so any structure that disagrees
by more than 2e-6 is re-checked with a longer direct sum (--recheck-cutoff). Exits non-zero if a success
count differs from the published one or a disagreement survives the re-check.

    python bench/reference_energies.py             # all 600 structures (~10 min)
    python bench/reference_energies.py --limit 2   # 2 runs per (composition, policy), quick
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from ase.io import read
from tqdm import tqdm

from rlcsp.calculators import get_calculator
from rlcsp.calculators.library import load_library
from rlcsp.calculators.reference_energy import reference_energy

ROOT = Path(__file__).resolve().parent.parent
POLICIES = ("Original", "Uniform", "RLCSP")
RUNS = 40
TOLERANCE = 2e-6  # eV/atom: a run succeeded if its best energy is <= target + TOLERANCE
TARGETS = {"Y2O3": -27.394619, "Y2Ti2O7": -35.153743, "Y2TiO5": -32.682202, "SrY2O4": -24.428313,
           "Sr4Ti3O10": -29.984896}
PUBLISHED_SUCCESS = {"Y2O3": (14, 9, 12), "Y2Ti2O7": (40, 40, 40), "Y2TiO5": (40, 40, 40),
                     "SrY2O4": (14, 40, 40), "Sr4Ti3O10": (39, 40, 39)}
# Mean best-of-run energy (eV/atom), published to 1e-5 from the 30 A independent check: they match within
# half the last digit plus the 2e-6 by which that check may differ from the exact model.
PUBLISHED_MEANS = {"Y2O3": (-27.36827, -27.36320, -27.36624), "SrY2O4": (-24.39589, -24.42831, -24.42831)}
MEAN_TOLERANCE = 5e-6 + TOLERANCE


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "fuse_reference",
                        help="fuse_reference folder (<composition>/<policy>/lowest_energy_structure_<run>.cif)")
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N runs per cell")
    parser.add_argument("--c6-cutoff", type=float, default=30.0,
                        help="direct C6 sum radius (A) of the independent check; 30 made the published numbers")
    parser.add_argument("--recheck-cutoff", type=float, default=50.0,
                        help="direct C6 sum radius (A) for re-checking structures that disagree by > 2e-6")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "reference_energies.json")
    return parser.parse_args()


def evaluate(path: Path, calc, library, c6_cutoff: float) -> dict:
    """Energy per atom of one CIF by both methods, with their wall times."""
    atoms = read(path)
    n = len(atoms)
    atoms.calc = calc
    start = time.perf_counter()
    e_lammps = float(atoms.get_potential_energy()) / n
    t_lammps = time.perf_counter() - start
    start = time.perf_counter()
    e_reference = float(reference_energy(atoms, library, c6_cutoff).total) / n
    t_reference = time.perf_counter() - start
    return {"n_atoms": n, "e_lammps": e_lammps, "e_reference": e_reference, "diff": e_lammps - e_reference,
            "t_lammps_s": t_lammps, "t_reference_s": t_reference}


def main() -> int:
    args = parse_args()
    runs = range(1, (min(args.limit, RUNS) if args.limit else RUNS) + 1)
    jobs = [(comp, policy, run) for comp in TARGETS for policy in POLICIES for run in runs]
    calc = get_calculator("lammps-buckingham")  # one LAMMPS instance for all 600 structures
    library = load_library()

    records = []
    started = time.perf_counter()
    for comp, policy, run in tqdm(jobs, desc="structures", unit="cif"):
        path = args.data / comp / policy / f"lowest_energy_structure_{run}.cif"
        record = {"composition": comp, "policy": policy, "run": run, "file": str(path)}
        record.update(evaluate(path, calc, library, args.c6_cutoff))
        record["success"] = record["e_lammps"] <= TARGETS[comp] + TOLERANCE
        record["success_reference"] = record["e_reference"] <= TARGETS[comp] + TOLERANCE
        records.append(record)
    total_s = time.perf_counter() - started
    # Structures outside the tolerance: is it LAMMPS, or the independent check's 30 A C6 tail?
    rechecks = []
    for record in [r for r in records if abs(r["diff"]) > TOLERANCE]:
        again = evaluate(Path(record["file"]), calc, library, args.recheck_cutoff)
        rechecks.append({"file": record["file"], "n_atoms": record["n_atoms"], "diff": record["diff"],
                         "diff_recheck": again["diff"], "e_lammps": record["e_lammps"],
                         "e_reference_recheck": again["e_reference"]})
    calc.close()
    persistent = sum(abs(r["diff_recheck"]) > TOLERANCE for r in rechecks)
    complete = len(runs) == RUNS  # the published numbers only apply to all 40 runs

    def cell(comp: str, policy: str | None = None) -> list[dict]:
        return [r for r in records if r["composition"] == comp and policy in (None, r["policy"])]

    # 1. LAMMPS against the independent check.
    def worst(rows: list[dict]) -> dict:
        return max(rows, key=lambda r: abs(r["diff"]))

    agreement = {comp: worst(cell(comp)) for comp in TARGETS} | {"overall": worst(records)}
    print("\n## LAMMPS vs independent check (eV/atom)\n")
    print("| composition | structures | max abs diff | > 2e-6 | worst file |")
    print("|---|---|---|---|---|")
    for key, w in agreement.items():
        rows = records if key == "overall" else cell(key)
        over = sum(abs(r["diff"]) > TOLERANCE for r in rows)
        print(f"| {key} | {len(rows)} | {abs(w['diff']):.2e} | {over} | {Path(w['file']).relative_to(args.data)} |")
    if rechecks:
        print(f"\nRe-checked with C6 summed directly to {args.recheck_cutoff:g} A instead of {args.c6_cutoff:g} A:\n")
        print(f"| file | atoms | LAMMPS - check ({args.c6_cutoff:g} A) | LAMMPS - check ({args.recheck_cutoff:g} A) |")
        print("|---|---|---|---|")
        for r in rechecks:
            print(f"| {Path(r['file']).relative_to(args.data)} | {r['n_atoms']} | {r['diff']:.2e} | "
                  f"{r['diff_recheck']:.2e} |")

    # 2. Time per structure.
    timing = {}
    print("\n## Time per structure (s)\n")
    print("| method | mean | median | max | total |")
    print("|---|---|---|---|---|")
    for method, key in (("LAMMPS single point", "t_lammps_s"), ("independent check", "t_reference_s")):
        times = [r[key] for r in records]
        timing[key] = {"mean": statistics.mean(times), "median": statistics.median(times), "max": max(times),
                       "total": sum(times)}
        t = timing[key]
        print(f"| {method} | {t['mean']:.4f} | {t['median']:.4f} | {t['max']:.4f} | {t['total']:.1f} |")

    # 3. Success table.
    success = {}
    mismatches = 0
    print(f"\n## Runs that reached the GM (E <= target + {TOLERANCE:g} eV/atom), LAMMPS energies\n")
    print("| composition | policy | success | independent check | published | match |")
    print("|---|---|---|---|---|---|")
    for comp in TARGETS:
        for policy, published in zip(POLICIES, PUBLISHED_SUCCESS[comp]):
            rows = cell(comp, policy)
            ours = sum(r["success"] for r in rows)
            indep = sum(r["success_reference"] for r in rows)
            match = ours == published if complete else None
            mismatches += match is False
            success[f"{comp}/{policy}"] = {"success": ours, "success_reference": indep, "runs": len(rows),
                                           "published": published, "match": match}
            flag = "n/a (--limit)" if match is None else ("yes" if match else "NO")
            print(f"| {comp} | {policy} | {ours}/{len(rows)} | {indep}/{len(rows)} | {published}/{RUNS} | {flag} |")

    # 4. Mean best-of-run energies for the two compositions that separate the policies.
    means = {}
    print("\n## Mean best-of-run energy (eV/atom)\n")
    print("| composition | policy | mean (LAMMPS) | mean (independent check) | published | match |")
    print("|---|---|---|---|---|---|")
    for comp, published_means in PUBLISHED_MEANS.items():
        for policy, published in zip(POLICIES, published_means):
            mean = statistics.mean(r["e_lammps"] for r in cell(comp, policy))
            mean_reference = statistics.mean(r["e_reference"] for r in cell(comp, policy))
            match = abs(mean - published) <= MEAN_TOLERANCE if complete else None
            means[f"{comp}/{policy}"] = {"mean": mean, "mean_reference": mean_reference, "published": published,
                                         "match": match}
            flag = "n/a (--limit)" if match is None else ("yes" if match else "NO")
            print(f"| {comp} | {policy} | {mean:.7f} | {mean_reference:.7f} | {published:.5f} | {flag} |")

    print(f"\n{len(records)} structures in {total_s:.1f} s; "
          + ("success table matches the published one" if complete and not mismatches
             else f"{mismatches} success counts differ from the published table" if complete
             else "published comparison skipped (--limit)")
          + f"; {persistent} LAMMPS/independent disagreements > {TOLERANCE:g} survive the re-check")

    args.output.parent.mkdir(parents=True, exist_ok=True)
    summary = {
        "data": str(args.data), "runs_per_cell": len(runs), "tolerance_eV_per_atom": TOLERANCE,
        "targets": TARGETS, "c6_cutoff": args.c6_cutoff, "recheck_cutoff": args.recheck_cutoff, "wall_s": total_s,
        "agreement": {k: {"max_abs_diff": abs(w["diff"]), "file": w["file"]} for k, w in agreement.items()},
        "rechecks": rechecks, "persistent_disagreements": persistent, "timing_s": timing, "success": success,
        "mean_best_energy": means, "mismatches": mismatches,
    }
    args.output.write_text(json.dumps({"summary": summary, "structures": records}, indent=1))
    print(f"wrote {args.output}")
    return 1 if mismatches or persistent else 0


if __name__ == "__main__":
    sys.exit(main())
