"""The uniqueness index decides as pymatgen's StructureMatcher does, reducing each structure at most once."""
from __future__ import annotations

import numpy as np
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.io.ase import AseAtomsAdaptor

from rlcsp.csp.uniqueness import UniquenessIndex

from ...calculators.test_buckingham import gm


def test_duplicates_are_the_matchers_and_only_window_members_are_reduced():
    pyrochlore = gm("Y2Ti2O7")
    rotated = pyrochlore.copy()  # the same crystal in another setting: a supercell, shifted and rotated
    rotated = rotated.repeat((2, 1, 1))
    rotated.translate([0.7, 0.2, 0.1])
    rotated.rotate(30, "z", rotate_cell=True)
    rotated.wrap()
    other = pyrochlore.copy()  # the same composition, another structure
    other.positions[:4] += np.array([0.9, -0.6, 0.4])
    index = UniquenessIndex(energy_tolerance=1e-4)
    assert index.add(pyrochlore, -35.15)
    assert index._reduced_flags == [False]  # alone in its window: never reduced
    assert not index.add(rotated, -35.15 + 5e-5)
    assert index._reduced_flags == [True]
    assert index.add(other, -35.15 - 5e-5)  # in the window, but a different structure
    assert index.add(pyrochlore, -34.0)  # the same structure outside the window counts as new, as FUSE counts
    assert len(index) == 3
    matcher = StructureMatcher(ltol=0.2, stol=0.3, angle_tol=5, primitive_cell=True, attempt_supercell=True,
                               scale=True)
    as_pmg = AseAtomsAdaptor.get_structure
    assert matcher.fit(as_pmg(pyrochlore), as_pmg(rotated))
    assert not matcher.fit(as_pmg(pyrochlore), as_pmg(other))


SMALL_Y2O3 = dict(composition={"Y": [2, 3], "O": [3, -2]}, max_atoms=20, initial_population=8,
                  target_energy=-30.0, seed=4, policy="reinforce-rlcsp", quirks=["energy_uniqueness"])


def test_energy_uniqueness_is_fuses_rule_and_a_resumed_run_rebuilds_it_from_its_steps(tmp_path):
    """The quirk reaches the flag every step records (and the policy's reward reads): new means a rounded energy
    not seen since the best initial structure. A run stopped at 20 relaxations and extended to 34 repeats an
    uninterrupted run of 34, structures unread."""
    import csv

    from rlcsp.csp.config import SearchConfig
    from rlcsp.csp.run import execute
    from rlcsp.db import Store

    whole = execute(SearchConfig(**SMALL_Y2O3, budget=34), tmp_path / "whole", progress=False)
    assert whole["settings"]["uniqueness"] == "energy rounded to 1e-6"
    rows = list(csv.DictReader((tmp_path / "whole" / "steps.csv").open()))
    initial = [float(r["e_new"]) for r in rows if r["kind"] == "I" and r["e_new"]]
    seen, flags = {round(min(initial), 6)}, []
    for row in (r for r in rows if r["kind"] == "S"):
        if not row["e_new"]:
            flags.append((row["unique"], "False"))
            continue
        key = round(float(row["e_new"]), 6)
        flags.append((row["unique"], str(key not in seen)))
        seen.add(key)
    assert [a for a, _ in flags] == [b for _, b in flags] and ("False", "False") in flags
    assert whole["settings"]["uniqueness"] != execute(
        SearchConfig(**{**SMALL_Y2O3, "quirks": []}, budget=9), tmp_path / "own", progress=False)[
        "settings"]["uniqueness"]

    execute(SearchConfig(**SMALL_Y2O3, budget=20), tmp_path / "parts", progress=False)
    store = Store(f"sqlite:///{tmp_path / 'parts' / 'rlcsp.db'}")
    store.db.run(lambda tx: tx.execute("UPDATE structures SET atoms = 'unreadable'"))  # restore must not read them
    store.close()
    execute(SearchConfig(**SMALL_Y2O3, budget=34), tmp_path / "parts", progress=False)
    timed = ("build_s", "relax_s", "policy_s")
    resumed = [{k: v for k, v in r.items() if k not in timed}
               for r in csv.DictReader((tmp_path / "parts" / "steps.csv").open())]
    assert resumed == [{k: v for k, v in r.items() if k not in timed} for r in rows]


def test_keeping_only_bests_needs_the_energy_rule_and_old_runs_keep_their_names():
    import pytest

    from rlcsp.csp.config import SearchConfig
    from rlcsp.exceptions import ConfigError

    base = {k: v for k, v in SMALL_Y2O3.items() if k != "quirks"}
    with pytest.raises(ConfigError, match="energy uniqueness"):
        SearchConfig(**base, keep_structures="best")
    with pytest.raises(ConfigError, match="new, best"):
        SearchConfig(**base, fuse="1.06", keep_structures="all")
    assert "keep_structures" not in SearchConfig(**base).to_dict()  # the name runs stored before it was added
    assert SearchConfig(**base, fuse="1.06", keep_structures="best").to_dict()["keep_structures"] == "best"
