"""A run folder belongs to one run: rerun, extend, refuse, or start anew on request; and the CLI finds it by name."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from rlcsp.csp.config import SearchConfig
from rlcsp.csp.run import RunFolderTaken, execute
from rlcsp.db import Store


SMALL = dict(composition={"Y": [2, 3], "O": [3, -2]}, max_atoms=20, budget=14, initial_population=6,
             target_energy=-27.394619, seed=4, policy="uniform")


def snapshot(out) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.is_file() and not p.name.startswith("rlcsp.db")}


def runs_in(out) -> list[dict]:
    store = Store(f"sqlite:///{out / 'rlcsp.db'}", create=False)
    try:
        return store.list_runs()
    finally:
        store.close()


def test_a_finished_run_is_never_overwritten_extended_by_a_larger_budget_and_guarded_from_other_searches(tmp_path):
    out = tmp_path / "a"
    first = execute(SearchConfig(**SMALL), out, progress=False)
    files = snapshot(out)
    assert json.loads((out / "run.json").read_text()) == {"run_id": first["run_id"], "db": first["db"]}

    again = execute(SearchConfig(**SMALL), out, progress=False)  # the same command: its summary, nothing rewritten
    assert again == first and snapshot(out) == files and len(runs_in(out)) == 1

    with pytest.raises(RunFolderTaken, match="holds run 1 .* a different search; nothing was changed"):
        execute(SearchConfig(**{**SMALL, "seed": 5}), out, progress=False)
    assert snapshot(out) == files and len(runs_in(out)) == 1
    elsewhere = f"sqlite:///{tmp_path / 'other.db'}"  # the same search, asked of another store
    with pytest.raises(RunFolderTaken, match=f"holds run 1 of {first['db']}, not of this command's store "
                                             f"{elsewhere}; nothing was changed. Give --db"):
        execute(SearchConfig(**SMALL), out, progress=False, db_url=elsewhere)
    assert snapshot(out) == files and len(runs_in(out)) == 1

    longer = execute(SearchConfig(**{**SMALL, "budget": 20}), out, progress=False)  # extends the same run
    assert longer["run_id"] == first["run_id"] and longer["relaxations"] == 20
    steps = (out / "steps.csv").read_text().splitlines()
    assert steps[:15] == files["steps.csv"].decode().splitlines() and len(steps) == 21
    assert longer["best_energy"] <= first["best_energy"]

    other = execute(SearchConfig(**{**SMALL, "seed": 5}), out, progress=False, new_run=True)
    assert other["run_id"] != first["run_id"] and len(runs_in(out)) == 2
    kept = out / f"run{first['run_id']}"
    assert json.loads((kept / "summary.json").read_text())["relaxations"] == 20
    assert (kept / "lowest_energy_structure.cif").exists()


def cli(*args, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rlcsp.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def test_one_name_for_a_run_everywhere_and_read_only_commands_create_nothing(tmp_path):
    out = tmp_path / "runs" / "demo"
    summary = execute(SearchConfig(**SMALL), out, progress=False)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    url = f"sqlite:///{out / 'rlcsp.db'}"
    for way in (["show", "runs/demo"], ["show", "1", "--db", "runs/demo/rlcsp.db"], ["show", "1", "--db", url],
                ["show", "1"], ["show", str(out)]):
        proc = cli(*way, cwd=tmp_path)
        assert proc.returncode == 0, (way, proc.stderr)
        shown = next(line.split()[1] for line in proc.stdout.splitlines() if line.startswith("best_energy"))
        assert float(shown) == pytest.approx(summary["best_energy"], abs=1e-6)  # summary.json rounds to 1e-6
    listed = cli("runs", cwd=tmp_path)
    assert listed.returncode == 0 and "uniform" in listed.stdout and str(out / "rlcsp.db") in listed.stdout
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing written by show or runs
    assert "distinct minima" not in cli("show", "runs/demo", cwd=tmp_path).stdout
    top = cli("show", "runs/demo", "--top", "2", cwd=tmp_path).stdout
    assert "E (eV/f.u.)" in top and "found at" in top and len(top.split("space group")[1].splitlines()) == 3
    exported = cli("export", "runs/demo", "--format", "csv", "--out", "csv", cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    header = (out / "steps.csv").read_text().splitlines()[0]
    assert (tmp_path / "csv" / "steps.csv").read_text().splitlines()[0] == header

    empty = tmp_path / "empty"
    empty.mkdir()
    for way in (["runs"], ["show", "1"], ["runs", "--db", "nowhere.db"], ["export", "1", "--db", "nowhere.db"]):
        proc = cli(*way, cwd=empty)
        assert proc.returncode != 0 and "Traceback" not in proc.stderr, way
    assert list(empty.iterdir()) == []


def test_a_read_only_store_never_creates_a_mysql_database():
    from ...conftest import mysql_url
    from rlcsp.db import StoreError

    with pytest.raises(StoreError, match="no database 'rlcsp_test_never_created'"):
        Store(mysql_url("rlcsp_test_never_created"), create=False)
    with pytest.raises(StoreError, match="no database 'rlcsp_test_never_created'"):
        Store(mysql_url("rlcsp_test_never_created"), create=False)  # still not there
