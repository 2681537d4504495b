from __future__ import annotations

import csv
import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rlcsp.db import schema
from rlcsp.db import Store, StoreError, parse_url
from rlcsp.csp.config import SearchConfig
from rlcsp.csp.run import execute

from ..conftest import MYSQL_HOST, ROOT

SMALL = dict(composition={"Y": [2, 3], "O": [3, -2]}, library="lib2.lib", max_atoms=20, initial_population=8,
             target_energy=-27.394619)


def write_script(path: Path, **settings) -> Path:
    path.write_text(f"CONFIG = {json.dumps({**SMALL, **settings})}\n")
    return path


def csv_rows(path: Path) -> list[dict]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def test_schema_is_created_and_migrated(db_url, monkeypatch):
    store = Store(db_url)
    assert store.db.query("SELECT MAX(version) FROM schema_version")[0][0] == schema.SCHEMA_VERSION
    store.close()
    monkeypatch.setattr(schema, "SCHEMA_VERSION", schema.SCHEMA_VERSION + 1)
    monkeypatch.setitem(schema.MIGRATIONS, schema.SCHEMA_VERSION, ["ALTER TABLE runs ADD COLUMN note {key}"])
    store = Store(db_url)
    assert store.db.query("SELECT MAX(version) FROM schema_version")[0][0] == schema.SCHEMA_VERSION
    store.db.query("SELECT note FROM runs")  # the migrated column exists
    store.close()


def test_newer_schema_is_refused_with_the_fix(db_url):
    store = Store(db_url)
    store.db.run(lambda tx: tx.execute("INSERT INTO schema_version (version) VALUES (?)", (999,)))
    store.close()
    with pytest.raises(StoreError, match="schema version 999, newer .* upgrade rlcsp"):
        Store(db_url)


def test_a_50_step_run_is_recorded_row_for_row(db_url, tmp_path):
    config = SearchConfig(**SMALL, budget=50, seed=3)
    summary = execute(config, tmp_path / "out", progress=False, db_url=db_url)
    store = Store(db_url)
    rows = csv_rows(tmp_path / "out" / "steps.csv")
    run_id = summary["run_id"]
    assert store.count("steps", run_id) == len(rows) == 50
    assert store.count("structures", run_id) == sum(r["unique"] == "True" for r in rows)
    stored = store.steps(run_id)
    assert [s["outcome"] for s in stored] == [r["outcome"] for r in rows]
    assert [s["move"] for s in stored] == [int(r["move"]) if r["move"] else None for r in rows]
    info = store.run_info(run_id)
    assert info["status"] == "finished" and info["relaxations"] == 50
    assert info["best_energy"] == pytest.approx(summary["best_energy"], abs=1e-6)
    assert [r["id"] for r in store.list_runs()] == [run_id]


def test_a_run_stopped_by_its_stop_file_continues_when_rerun(db_url, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "stop").touch()
    config = SearchConfig(**SMALL, budget=20, seed=4)
    first = execute(config, out, progress=False, db_url=db_url)
    assert first["stop_reason"].startswith("stop file") and first["relaxations"] == 1
    assert not (out / "stop").exists()
    second = execute(config, out, progress=False, db_url=db_url)
    assert second["run_id"] == first["run_id"]
    assert second["stop_reason"] == "budget exhausted" and second["relaxations"] == 20
    # the stored config is sorted JSON; the resumed run keeps its formula's element order (not O3Y2)
    assert first["composition"] == second["composition"] == "Y2O3"
    store = Store(db_url)
    assert list(store.run_info(second["run_id"])["config"]["composition"]) == ["Y", "O"]
    store.close()


def _run_cli(script: Path, out: Path, db_url: str, seed: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "rlcsp.cli", "run", str(script), "--seed", str(seed), "--out",
                             str(out), "--db", db_url, "--quiet"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _trajectory(rows: list[dict]) -> list[tuple]:
    keys = ("relaxation", "kind", "move", "attempts", "outcome", "e_new", "e_current", "e_global", "temperature",
            "unique", "n_atoms")
    return [tuple(r[k] for k in keys) for r in rows]


def test_resume_after_sigkill_is_identical_to_an_uninterrupted_run(db_url, tmp_path):
    budget = 36
    script = write_script(tmp_path / "small.py", budget=budget)
    reference = _run_cli(script, tmp_path / "reference", db_url, seed=8)
    assert reference.wait(timeout=600) == 0, reference.stderr.read()
    expected = _trajectory(csv_rows(tmp_path / "reference" / "steps.csv"))
    assert len(expected) == budget

    killed_db = db_url.replace(".db", "_killed.db") if db_url.startswith("sqlite") else db_url
    out = tmp_path / "killed"
    points = sorted(random.Random(1).sample(range(4, budget - 2), 3))
    for point in points:
        proc = _run_cli(script, out, killed_db, seed=8)
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None:
            path = out / "steps.csv"
            if path.exists() and len(path.read_text().splitlines()) > point:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    final = _run_cli(script, out, killed_db, seed=8)
    assert final.wait(timeout=600) == 0, final.stderr.read()
    assert "resuming run" in final.stderr.read()
    assert _trajectory(csv_rows(out / "steps.csv")) == expected


@pytest.mark.parametrize("field", ["name", "policy_id", "composition"])
def test_injection_attempts_are_stored_verbatim(db_url, field):
    evil = "x'); DROP TABLE runs; -- \" `steps` \\ ;"
    store = Store(db_url)
    values = {"name": "run", "composition": "Y2O3", "policy_id": "p"}
    values[field] = evil
    run_id = store.create_run({"evil": evil}, values["name"], values["composition"], "original", 1,
                              "lammps-buckingham", "test", policy_id=values["policy_id"])
    store.update_params(evil, lambda old: {"theta": [1.0], "note": evil})
    info = store.run_info(run_id)
    assert info[field] == evil and info["config"] == {"evil": evil}
    assert store.latest_params(evil) == (1, {"theta": [1.0], "note": evil})
    assert [r["id"] for r in store.list_runs()] == [run_id]  # the runs table survived


def test_resuming_an_unknown_run_says_how_to_find_one(db_url, tmp_path):
    store = Store(db_url)
    with pytest.raises(StoreError, match="no run 4242 .* `rlcsp runs`"):
        store.run_info(4242)


@pytest.mark.parametrize("url, message", [
    ("rlcsp.db", "malformed database URL"),
    ("postgres://u@h/db", "unsupported database URL scheme"),
    ("mysql://user@/db", "need a host"),
    ("mysql://user@host:99999/db", "bad port"),
    ("mysql://user@host/bad-name;drop", "letters, digits"),
    ("sqlite://", "no file path"),
])
def test_malformed_urls_get_the_fix(url, message):
    with pytest.raises(StoreError, match=message):
        parse_url(url)


def test_wrong_credentials(monkeypatch):
    monkeypatch.setenv("RLCSP_DB_PASSWORD", "not-the-password")
    with pytest.raises(StoreError, match="access denied .* RLCSP_DB_PASSWORD"):
        Store(f"mysql://rlcsp_test@{MYSQL_HOST}:3306/rlcsp_test_denied")


def test_unreachable_host_fails_fast():
    started = time.time()
    with pytest.raises(StoreError, match="cannot reach the MySQL server"):
        Store("mysql://rlcsp_test@127.0.0.1:1/rlcsp_test_unreachable")
    assert time.time() - started < 10


def test_password_never_comes_from_the_script_when_the_environment_has_one(monkeypatch):
    monkeypatch.setenv("RLCSP_DB_PASSWORD", "from-env")
    assert parse_url("mysql://u:inline@h/db").password == "from-env"
    monkeypatch.delenv("RLCSP_DB_PASSWORD")
    assert parse_url("sqlite:////tmp/x.db").database == "/tmp/x.db"
    assert parse_url("sqlite:///rel.db").database == "rel.db"
