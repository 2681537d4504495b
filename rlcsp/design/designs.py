"""The design list a filling run leaves behind: its distinct DFT-verified fillings, closest to the target first.

A chemist reads a run's outcome as candidates to make, not as rewards: ``designs.csv`` has one row per distinct
filling (the species on every skeleton site; symmetry-equivalent fillings are one) whose DFT gap came back, ranked
by |gap − target|, with its formula, DFT and model gaps, whether it is inside the ±0.25 eV window, SMACT validity
and how often the agent proposed it (0: a neighbour the hybrid loop sent to DFT in its stead); ``designs/`` holds
a CIF of each: the crystal pw.x computed (CHGNet-relaxed where the run relaxes, read back from the DFT cache), not
the skeleton it was filled on, whose gap nobody measured. With a :class:`rlcsp.design.hull.Hull` each row also gets
its CHGNet formation energy and energy above the hull of its competing phases (``rlcsp.design.hull`` says which,
and why the distance is a lower bound), so the list shows which designs might exist.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from ase import Atoms
from ase.io import write
from tqdm import tqdm

from rlcsp.design.chem_rules import smact_valid
from rlcsp.design.hull import Hull
from rlcsp.design.rewards import WINDOW
from rlcsp.design.skeleton import Skeleton
COLUMNS = ("rank", "formula", "dft_gap", "gap_error", "in_window", "smact_valid", "chgnet_e_form", "e_above_hull",
           "decomposition", "model_gap", "proposed", "first_episode", "cif")


def dft_answers(episodes: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every filling DFT answered in a run's episodes, in order: an episode's own, and the neighbour DFT answered
    at it instead (HybridEvaluator's ``explored``), marked ``neighbour``."""
    for episode in episodes:
        yield episode
        if episode.get("explored"):
            yield {**episode["explored"], "episode": episode.get("episode"), "neighbour": True}


def dft_structures(store, run_id: int) -> dict[int, Atoms]:
    """The crystal pw.x was given at each episode of a fill run that made a DFT call, from the cache record its
    call was logged under (a filling that failed before pw.x, such as ``wrong_charge``, has none)."""
    from rlcsp.calculators.espresso import structure_atoms

    out = {}
    for call in store.fill_dft_calls(run_id):
        record = store.dft_get(call["cache_key"]) if call["cache_key"] else None
        structure = ((record or {}).get("inputs") or {}).get("structure")
        if structure:
            out[call["episode"]] = structure_atoms(structure)
    return out


def write_designs(out: Path, skeleton: Skeleton, target: float, episodes: Iterable[dict[str, Any]],
                  hull: Hull | None = None, structures: Mapping[int, Atoms] | None = None) -> list[dict]:
    """``designs.csv`` and ``designs/*.cif`` in ``out`` from a run's stored episodes; returns the rows. Without a
    ``hull`` the stability columns stay empty. ``structures`` (:func:`dft_structures`) are the crystals DFT
    computed, by episode: the CIFs and the hull take them; a filling without one gets the skeleton's."""
    found: dict[tuple[str, ...], dict[str, Any]] = {}
    for row in dft_answers(episodes):
        if row.get("dft_outcome") != "ok" or row.get("dft_gap") is None or not row.get("species"):
            continue
        species = skeleton.canonical(row["species"])
        proposed = int(not row.get("neighbour"))
        if species in found:
            found[species]["proposed"] += proposed
            continue
        atoms = (structures or {}).get(row.get("episode"))
        if atoms is None or atoms.get_chemical_symbols() != list(row["species"]):
            atoms = skeleton.atoms(list(species))
        formula = atoms.get_chemical_formula(mode="metal", empirical=True)
        found[species] = {"formula": formula, "dft_gap": float(row["dft_gap"]),
                          "gap_error": abs(float(row["dft_gap"]) - target), "model_gap": row.get("model_gap"),
                          "smact_valid": smact_valid(atoms.get_chemical_formula()), "proposed": proposed,
                          "first_episode": row.get("episode"), "atoms": atoms}
    rows = sorted(found.values(), key=lambda r: (r["gap_error"], r["first_episode"] or 0))
    folder = out / "designs"
    folder.mkdir(parents=True, exist_ok=True)
    for rank, row in enumerate(tqdm(rows, desc="designs: CHGNet hull", unit="design", disable=hull is None), 1):
        row["rank"], row["in_window"] = rank, row["gap_error"] <= WINDOW
        placed = hull.evaluate(row["atoms"]) if hull is not None else None
        if placed is not None:
            row.update(chgnet_e_form=round(placed.e_form, 4), e_above_hull=round(placed.e_above_hull, 4),
                       decomposition=placed.decomposition)
        row["cif"] = f"designs/{rank:03d}_{row['formula']}.cif"
        write(out / row["cif"], row.pop("atoms"))
    with (out / "designs.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS, restval="")
        writer.writeheader()
        writer.writerows(rows)
    return rows
