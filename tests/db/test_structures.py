"""Schema version 3: structures are stored packed and without a CIF, runs have a uid; version-2 rows still read."""
from __future__ import annotations

import json

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk

from rlcsp.db import Store, atoms_from_text, atoms_to_text, schema
from rlcsp.csp.walker import StepRecord

V2_STRUCTURES = """
        id {id}, run_id BIGINT NOT NULL, relaxation INTEGER NOT NULL, formula {key} NOT NULL,
        n_atoms INTEGER NOT NULL, energy {float} NOT NULL, fingerprint {key}, atoms {text} NOT NULL,
        cif {text} NOT NULL, genome {text} NOT NULL, UNIQUE (run_id, relaxation)"""


def relaxed_like(seed: int = 0) -> Atoms:
    """A triclinic cell with positions that no short decimal writes exactly, as a relaxation leaves them."""
    rng = np.random.default_rng(seed)
    atoms = bulk("MgO", "rocksalt", a=4.21, cubic=True).repeat((2, 1, 1))
    atoms.set_cell(atoms.cell.array + rng.normal(0, 0.1, (3, 3)), scale_atoms=True)
    atoms.positions += rng.normal(0, 0.05, atoms.positions.shape)
    atoms.numbers[0] = 39  # yttrium: a heavier element than 8-bit padding tricks would survive
    return atoms


def record(relaxation: int) -> StepRecord:
    return StepRecord(relaxation, "S", 1, 1, "accepted", -1.0, -1.0, -1.0, 0.02, True, 16, 0.1, 0.2, 0.0, "")


def test_packed_atoms_round_trip_bit_for_bit_in_a_third_of_the_json():
    atoms = relaxed_like()
    text = atoms_to_text(atoms)
    back = atoms_from_text(text)
    assert back.numbers.tolist() == atoms.numbers.tolist() and back.pbc.tolist() == atoms.pbc.tolist()
    assert np.array_equal(back.cell.array, atoms.cell.array) and np.array_equal(back.positions, atoms.positions)
    legacy = json.dumps({"numbers": atoms.numbers.tolist(), "cell": atoms.cell.array.tolist(),
                         "positions": atoms.positions.tolist(), "pbc": atoms.pbc.tolist()})
    assert len(text) < 0.5 * len(legacy)
    assert np.array_equal(atoms_from_text(legacy).positions, atoms.positions)  # version-2 rows and checkpoints
    slab = Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]], cell=[5, 5, 0], pbc=[True, True, False])
    assert atoms_from_text(atoms_to_text(slab)).pbc.tolist() == [True, True, False]
    with pytest.raises(ValueError, match="0..255"):
        atoms_to_text(Atoms(numbers=[300], cell=[3, 3, 3], pbc=True))


def test_a_version_2_store_drops_its_cifs_and_reads_its_old_rows(db_url, monkeypatch):
    atoms = relaxed_like(1)
    legacy = json.dumps({"numbers": atoms.numbers.tolist(), "cell": atoms.cell.array.tolist(),
                         "positions": atoms.positions.tolist(), "pbc": atoms.pbc.tolist()})
    with monkeypatch.context() as patch:
        patch.setattr(schema, "SCHEMA_VERSION", 2)
        patch.setitem(schema.TABLES, "structures", V2_STRUCTURES)
        old = Store(db_url)
        run_id = old.create_run({"x": 1}, "old", "Y2O3", "uniform", 1, "lammps-buckingham", "test")
        old.db.run(lambda tx: tx.execute(
            "INSERT INTO structures (run_id, relaxation, formula, n_atoms, energy, atoms, cif, genome) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (run_id, 1, "MgO", len(atoms), -1.5, legacy, "data_old", "{}")))
        old.close()
    store = Store(db_url)
    assert store.db.query("SELECT MAX(version) FROM schema_version")[0][0] == 3
    [(uid,)] = store.db.query("SELECT uid FROM runs")  # the name it has in every store it is copied to
    assert len(uid) == 32
    with pytest.raises(Exception):
        store.db.query("SELECT cif FROM structures")
    new = relaxed_like(2)
    store.record_step(run_id, record(2), {"k": 1}, {"atoms": new, "energy": -1.6, "genome": {"g": [1, 2]}})
    rows = store.structures(run_id)
    assert [r["relaxation"] for r in rows] == [1, 2] and rows[1]["genome"] == {"g": [1, 2]}
    assert np.array_equal(rows[0]["atoms"].positions, atoms.positions)
    assert np.array_equal(rows[1]["atoms"].positions, new.positions)
    assert store.db.query("SELECT atoms FROM structures WHERE relaxation = 2")[0][0].startswith("f64:")
    store.close()
