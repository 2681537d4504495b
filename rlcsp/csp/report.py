"""What a run leaves in its output folder: the per-step CSV, CIFs, a plot, summary.json and a one-line summary."""
from __future__ import annotations

import csv
import json
import os
from dataclasses import asdict, fields
from pathlib import Path

from ase.io import write

from rlcsp.csp.symmetry import write_conventional_cif
from rlcsp.csp.walker import SearchResult, StepRecord, Walker

CSV_COLUMNS = [f.name for f in fields(StepRecord)]


class RunOutput:
    """Writes as the run goes, so an interrupted run still leaves consistent files."""

    def __init__(self, out: str | Path, records: list[StepRecord] = ()):
        """Start the CSV afresh; a resumed run passes its stored records, which are written first."""
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.csv_path = self.out / "steps.csv"
        self._csv = self.csv_path.open("w", newline="")
        self._writer = csv.DictWriter(self._csv, fieldnames=CSV_COLUMNS)
        self._writer.writeheader()
        self._best = None
        self._current = None
        for record in records:
            self._row(record)
        self._csv.flush()

    def _row(self, record: StepRecord) -> None:
        row = asdict(record)
        for key in ("e_new", "e_current", "e_global"):
            if row[key] is not None:
                row[key] = f"{row[key]:.6f}"
        self._writer.writerow(row)

    def record(self, record: StepRecord, walker: Walker | None) -> None:
        self._row(record)
        self._csv.flush()
        if walker is not None:
            self.structures(walker)

    def structures(self, walker: Walker) -> None:
        """Rewrite the CIFs only when the best or current structure changed (atomic replace)."""
        for name, atoms, attr in (("lowest_energy_structure.cif", walker.best_atoms, "_best"),
                                  ("current_structure.cif", walker.atoms, "_current")):
            if getattr(self, attr) is not atoms:
                tmp = self.out / (name + ".tmp")
                write(tmp, atoms, format="cif")
                os.replace(tmp, self.out / name)
                setattr(self, attr, atoms)

    def close(self) -> None:
        self._csv.close()

    def finish(self, result: SearchResult, summary: dict, figures: bool = True) -> None:
        """The last CIFs and summary.json; with ``figures`` also the conventional cell and the energy plot."""
        self.close()
        self.structures(result.walker)
        tmp = self.out / "summary.json.tmp"
        tmp.write_text(json.dumps(summary, indent=2) + "\n")
        os.replace(tmp, self.out / "summary.json")
        if figures:
            write_conventional_cif(result.walker.best_atoms, self.out / "lowest_energy_structure_conventional.cif")
            plot_energy(result.records, self.out / "energy.png", summary.get("target_energy"))


def plot_energy(records: list[StepRecord], path: Path, target: float | None = None) -> None:
    """Energy of every relaxation, the current energy, and the temperature on a twin axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5))
    init = [r for r in records if r.kind == "I" and r.e_new is not None]
    steps = [r for r in records if r.kind == "S"]
    ok = [r for r in steps if r.e_new is not None]
    ax.scatter([r.relaxation for r in init], [r.e_new for r in init], s=8, c="0.6", label="initial population")
    ax.scatter([r.relaxation for r in ok], [r.e_new for r in ok], s=8, c="tab:blue", label="candidates")
    if steps:
        ax.plot([r.relaxation for r in steps], [r.e_global for r in steps], c="tab:green", lw=2.0, label="best",
                drawstyle="steps-post")
        ax.plot([r.relaxation for r in steps], [r.e_current for r in steps], c="tab:orange", lw=1.0,
                label="current", drawstyle="steps-post")
    if target is not None:
        ax.axhline(target, c="k", ls="--", lw=0.8, label="target (GM)")
    energies = [r.e_new for r in init + ok]
    if energies:
        lo = min(energies + ([target] if target is not None else []))
        ax.set_ylim(lo - 0.05, min(max(energies), lo + 3.0) + 0.05)
    ax.set_xlabel("relaxation")
    ax.set_ylabel("energy (eV/atom)")
    twin = ax.twinx()
    if steps:
        twin.plot([r.relaxation for r in steps], [r.temperature for r in steps], c="tab:red", lw=0.8, alpha=0.6)
    twin.set_ylabel("T (eV/atom)", color="tab:red")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=5, fontsize=8, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
