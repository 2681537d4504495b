"""What the store costs per relaxation, and what carrying walkers to a device machine and back weighs.

Runs ``rlcsp compare --lockstep`` (LAMMPS) on Y2Ti2O7 in three modes: rlcsp's default (StructureMatcher
uniqueness, which resumes from every stored structure), the FUSE 1.06 profile with RLCSP's REINFORCE (FUSE's energy
uniqueness, which resumes from the steps alone), and the same keeping only each walker's new bests
(``--keep-structures best``). For each it measures the SQLite store per relaxation (vacuumed, and xz-compressed as
a device call would send it), the peer, schema 2's structure rows (ASE JSON positions and a CIF per structure,
re-encoded here from the same rows), and the carry ``rlcsp copy`` writes, whole and ``--lean``, of the same runs
marked unfinished (the bench's runs finish, and a lean copy keeps only a finished run's row). A device call
returns at most 64 MiB, which bounds the relaxations one call can bring back.

    python bench/store_size.py --seeds 2 --budget 150
"""
from __future__ import annotations

import argparse
import io
import json
import lzma
import os
import shutil
import sqlite3
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
RETURN_BYTES = 64 * 2 ** 20  # what one device call brings back
MODES = {"default": ({}, "uniform"), "fuse 1.06": ({"fuse": "1.06"}, "reinforce-rlcsp"),
         "fuse 1.06, bests kept": ({"fuse": "1.06", "keep_structures": "best"}, "reinforce-rlcsp")}


def sizes(path: Path) -> tuple[int, int]:
    """Bytes of an SQLite file after VACUUM, and of its xz compression."""
    with sqlite3.connect(path) as conn:
        conn.execute("VACUUM")
    data = path.read_bytes()
    return len(data), len(lzma.compress(data, preset=6))


def schema2_bytes(path: Path) -> tuple[int, int]:
    """(schema 2's atoms JSON + CIF, this schema's packed atoms) summed over the stored structures."""
    from ase.io import write

    from rlcsp.db import atoms_from_text

    old = new = 0
    with sqlite3.connect(path) as conn:
        for (text,) in conn.execute("SELECT atoms FROM structures"):
            atoms = atoms_from_text(text)
            cif = io.BytesIO()
            write(cif, atoms, format="cif")
            old += len(json.dumps({"numbers": atoms.numbers.tolist(), "cell": atoms.cell.array.tolist(),
                                   "positions": atoms.positions.tolist(), "pbc": atoms.pbc.tolist()}))
            old += len(cif.getvalue())
            new += len(text)
    return old, new


def measure(mode: str, seeds: int, budget: int, work: Path) -> dict:
    from rlcsp.cli import main as rlcsp
    from rlcsp.csp.compare import compare

    options, policy = MODES[mode]
    out = work / mode.replace(" ", "_").replace(",", "")
    compare(ROOT / "inputs" / "y2ti2o7.py", [policy], seeds, budget, out=out, echo=lambda line: None,
            mode=options, lockstep=True)
    store = out / "rlcsp.db"
    with sqlite3.connect(store) as conn:
        relaxations = conn.execute("SELECT COUNT(*) FROM steps").fetchone()[0]
        structures = conn.execute("SELECT COUNT(*) FROM structures").fetchone()[0]
    row = {"mode": mode, "policy": policy, "walkers": seeds, "relaxations": relaxations, "structures": structures}
    row["store_B"], row["store_xz_B"] = sizes(store)
    old, new = schema2_bytes(store)
    row["structure_B"], row["structure_schema2_B"] = new / structures, old / structures
    walking = work / f"{out.name}_walking.db"  # the same runs as if stopped at their last step
    shutil.copy(store, walking)
    with sqlite3.connect(walking) as conn:
        conn.execute("UPDATE runs SET status = 'interrupted'")
    for lean in (False, True):
        carry = work / f"{out.name}_carry{'_lean' * lean}.db"
        rlcsp(["copy", str(walking), str(carry), *(["--lean"] * lean)])
        key = "lean" if lean else "whole"
        row[f"carry_{key}_B"], row[f"carry_{key}_xz_B"] = sizes(carry)
    per = {k: row[k] / relaxations for k in ("store_B", "store_xz_B", "carry_whole_xz_B", "carry_lean_xz_B")}
    row.update({f"{k}_per_relax": round(v, 1) for k, v in per.items()})
    row["return_relaxations"] = int(RETURN_BYTES / per["store_xz_B"])  # a call's new rows, structures included
    return row


def main() -> None:
    from rlcsp.version import commit

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--budget", type=int, default=150)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure(mode, args.seeds, args.budget, Path(tmp)) for mode in MODES]
    sha = commit()
    for row in rows:
        row["commit"] = sha
    lines = ["| mode | relaxations | structures | structure B (schema 2 B, ratio) | store B/relax (xz) | "
             "carry whole xz B/relax | carry lean xz B/relax | relaxations per 64 MiB return |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['mode']} ({r['policy']}) | {r['relaxations']} | {r['structures']} | "
                     f"{r['structure_B']:.0f} ({r['structure_schema2_B']:.0f}, "
                     f"{r['structure_schema2_B'] / r['structure_B']:.1f}x) | {r['store_B_per_relax']:.0f} "
                     f"({r['store_xz_B_per_relax']:.0f}) | {r['carry_whole_xz_B_per_relax']:.0f} | "
                     f"{r['carry_lean_xz_B_per_relax']:.0f} | {r['return_relaxations']} |")
    table = "\n".join(lines)
    print(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "store_size.json").write_text(json.dumps({"commit": sha, "rows": rows}, indent=1) + "\n")
    (RESULTS / "store_size.md").write_text(f"# Store and carry size (commit {sha})\n\n{table}\n")


if __name__ == "__main__":
    main()
