"""A walker carried to another store and back (``rlcsp copy``) ends as if it had never left, rows and all."""
from __future__ import annotations

import csv

import pytest

from rlcsp.cli import main
from rlcsp.csp.config import SearchConfig
from rlcsp.csp.run import WalkerRun, execute
from rlcsp.db import Store, StoreError
from rlcsp.db.store import STEP_COLUMNS
from rlcsp.db.transfer import copy_runs

SMALL = dict(composition={"Y": [2, 3], "O": [3, -2]}, max_atoms=20, initial_population=8, target_energy=-30.0,
             seed=2, policy="reinforce-rlcsp", budget=34)
TIMED = {"build_s", "relax_s", "policy_s"}


def rows(store: Store, run_id: int) -> dict:
    """What a run holds, without wall times and row ids."""
    columns = [c for c in STEP_COLUMNS if c not in TIMED]
    steps = store.db.query(f"SELECT {', '.join(columns)}, structure_id IS NOT NULL FROM steps WHERE run_id = ? "
                           "ORDER BY relaxation", (run_id,))
    structures = store.db.query("SELECT relaxation, energy, atoms, genome FROM structures WHERE run_id = ? "
                                "ORDER BY relaxation", (run_id,))
    params = store.db.query("SELECT update_no, params FROM policy_params WHERE policy_id = ? ORDER BY update_no",
                            (f"run{run_id}",))
    info = store.run_info(run_id)
    state = {k: v for k, v in info["state"].items() if k != "wall_s"}
    return {"steps": steps, "structures": structures, "params": params, "state": state,
            **{k: info[k] for k in ("status", "best_energy", "relaxations", "config")}}


@pytest.mark.parametrize("fuse, lean", [(None, False), ("1.06", True)])
def test_a_walker_stopped_carried_continued_and_copied_back_equals_one_that_never_stopped(db_url, tmp_path, fuse,
                                                                                          lean):
    """A FUSE-profile walker (energy uniqueness, keeping only its new bests) travels without its structures
    and its policy's history (--lean) and still resumes; what it adds comes back whole."""
    config = SearchConfig(**SMALL, fuse=fuse, keep_structures="best" if fuse else "new")
    whole = execute(config, tmp_path / "whole", progress=False)
    reference = Store(whole["db"])
    expected = rows(reference, whole["run_id"])
    reference.close()
    if fuse:  # keep_structures='best': a structure is stored where a unique result is the walker's new best
        energies = [(step[5], step[9]) for step in expected["steps"]]  # e_new, is_unique
        bests = [e is not None and unique and e < min((f for f, _ in energies[:k] if f is not None), default=0.0)
                 for k, (e, unique) in enumerate(energies)]
        assert [bool(step[-1]) for step in expected["steps"]] == bests and 1 < sum(bests) < 34 // 2

    run = WalkerRun(config, tmp_path / "main", progress=False, db_url=db_url)  # the campaign's own store
    result = run.search.run(extra_stop=lambda: "stop file (test)" if len(run.search.records) >= 19 else None)
    run.finish(result)
    carry = tmp_path / "carry.db"
    assert main(["copy", db_url, str(carry), *(["--lean"] if lean else [])]) == 0
    carried = Store(f"sqlite:///{carry}")
    assert (carried.db.query("SELECT COUNT(*) FROM structures")[0][0] == 0) == lean
    # lean, the policy travels as its newest version alone (the walker resumes it from its checkpoint)
    versions = carried.db.query("SELECT COUNT(*), MAX(update_no) FROM policy_params")[0]
    assert versions[1] > 1 and (versions[0] == 1) == lean
    timings = [t for row in carried.db.query("SELECT build_s, relax_s, policy_s FROM steps") for t in row]
    assert len(timings) == 3 * 19 and all(t == round(t, 3) for t in timings) == lean  # lean: to the millisecond
    carried.close()
    execute(config, tmp_path / "device", progress=False, db_url=f"sqlite:///{carry}")  # a fresh folder resumes it
    # The campaign's history as deltas: what the carry added after the main store, copied onto a store as far as
    # the main one, makes the whole run; alone it is a gap.
    delta = tmp_path / "delta.db"
    assert main(["copy", str(carry), str(delta), "--after", db_url]) == 0
    assert Store(f"sqlite:///{delta}").db.query("SELECT MIN(relaxation), COUNT(*) FROM steps")[0] == (20, 15)
    # a delta that is itself the source (a device walk's, which campaign.sh returns) copies after the main store
    # into an empty file as the same delta: bench/experiments.py keep writes it as the campaign's next slice
    again = tmp_path / "again.db"
    assert main(["copy", str(delta), str(again), "--after", db_url]) == 0
    assert Store(f"sqlite:///{again}").db.query("SELECT MIN(relaxation), COUNT(*) FROM steps")[0] == (20, 15)
    rebuilt, alone = Store(f"sqlite:///{tmp_path / 'rebuilt.db'}"), Store(f"sqlite:///{tmp_path / 'alone.db'}")
    copy_runs(Store(db_url), rebuilt)
    assert copy_runs(Store(f"sqlite:///{delta}"), rebuilt)["forward"] == 1
    assert rows(rebuilt, 1) == expected
    assert copy_runs(Store(f"sqlite:///{delta}"), alone)["gap"] == 1 and alone.list_runs() == []
    with pytest.raises(StoreError, match="choose one"):
        copy_runs(Store(f"sqlite:///{carry}"), alone, lean=True, after=rebuilt)
    assert main(["copy", str(carry), db_url]) == 0

    main_store = Store(db_url)
    [run_id] = [r["id"] for r in main_store.list_runs()]
    assert rows(main_store, run_id) == expected
    counts = copy_runs(Store(f"sqlite:///{carry}"), main_store)  # again: nothing to bring
    assert counts["current"] == 1 and counts["steps"] == counts["new"] == counts["forward"] == 0
    assert rows(main_store, run_id) == expected
    with pytest.raises(StoreError, match="into itself"):
        copy_runs(main_store, main_store)
    main_store.close()
    with (tmp_path / "whole" / "steps.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == expected["relaxations"] == 34

    # A lean carry holds a finished run as its row alone, so that its walker is skipped there; such a row never
    # makes a run in a store that lacks it.
    finished = Store(whole["db"])
    lean_carry, elsewhere = Store(f"sqlite:///{tmp_path / 'lean.db'}"), Store(f"sqlite:///{tmp_path / 'else.db'}")
    assert copy_runs(finished, lean_carry, lean=True)["new"] == 1
    assert [r["status"] for r in lean_carry.list_runs()] == ["finished"] and lean_carry.steps(1) == []
    assert copy_runs(lean_carry, elsewhere)["partial"] == 1 and elsewhere.list_runs() == []
    assert copy_runs(lean_carry, finished)["current"] == 1


def test_composition_design_runs_are_counted_not_copied(tmp_path):
    source = Store(f"sqlite:///{tmp_path / 'a.db'}")
    run_id = source.create_run({"x": 1}, "fill", "NaCl", "dqn", 0, "hybrid", "test")
    source.record_episode(run_id, "dqn", 1, 0.5, {"formula": "NaCl"})
    dest = Store(f"sqlite:///{tmp_path / 'b.db'}")
    assert copy_runs(source, dest)["skipped"] == 1 and dest.list_runs() == []


def test_a_copy_of_chosen_runs_holds_them_alone(tmp_path, capsys):
    """A campaign too large for one carry walks in parts: ``--runs`` carries only the part's runs."""
    source = f"sqlite:///{tmp_path / 'source.db'}"
    ids = [execute(SearchConfig(**{**SMALL, "budget": 10, "initial_population": 4, "seed": seed}),
                   tmp_path / f"seed{seed}", progress=False, db_url=source)["run_id"] for seed in (1, 2, 3)]
    part = tmp_path / "part.db"
    assert main(["copy", source, str(part), "--runs", str(ids[0]), str(ids[2])]) == 0
    carried = Store(f"sqlite:///{part}")
    assert sorted(r["seed"] for r in carried.list_runs()) == [1, 3]
    assert carried.db.query("SELECT COUNT(*) FROM steps")[0][0] == 20
    carried.close()
    assert main(["copy", source, str(tmp_path / "none.db"), "--runs", "99"]) != 0
    assert "no run 99" in capsys.readouterr().err
