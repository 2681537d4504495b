"""A MariaDB outage mid-run (server stopped for 10 s, then restarted) loses and duplicates no steps.

The test runs its own MariaDB server on a private port and data directory, so stopping it touches nothing else.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rlcsp.db import Store

from ..conftest import ROOT

PORT = 3399


def _server_binary() -> str:
    for name in ("mariadbd", "mysqld"):
        for folder in ("/usr/sbin", "/usr/bin"):
            if Path(folder, name).exists():
                return str(Path(folder, name))
    pytest.fail("no MariaDB server binary; run bash .ci/setup (it installs mariadb-server)")


class PrivateServer:
    def __init__(self, root: Path):
        self.datadir = root / "data"
        self.socket = root / "mysqld.sock"
        self.proc: subprocess.Popen | None = None
        user = ["--user=root"] if os.geteuid() == 0 else []
        subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={self.datadir}", "--skip-test-db",
                        "--auth-root-authentication-method=normal", *user], check=True, capture_output=True)
        self.args = [_server_binary(), "--no-defaults", f"--datadir={self.datadir}", f"--socket={self.socket}",
                     f"--port={PORT}", "--bind-address=127.0.0.1", "--skip-grant-tables", "--skip-log-bin",
                     "--innodb-buffer-pool-size=16M", *user]

    def start(self) -> None:
        self.proc = subprocess.Popen(self.args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        while time.time() < deadline:
            ping = subprocess.run(["mariadb-admin", f"--socket={self.socket}", "ping"], capture_output=True)
            if ping.returncode == 0:
                return
            time.sleep(0.2)
        raise RuntimeError("private MariaDB server did not start")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)


@pytest.fixture
def server(tmp_path):
    if not shutil.which("mariadb-install-db"):
        pytest.fail("mariadb-install-db missing; run bash .ci/setup")
    srv = PrivateServer(tmp_path / "mysql")
    srv.start()
    yield srv
    if srv.proc and srv.proc.poll() is None:
        srv.stop()


def start_run(tmp_path: Path, budget: int, *extra: str) -> tuple[subprocess.Popen, Path, str]:
    script = tmp_path / "small.py"
    script.write_text("CONFIG = " + json.dumps({
        "composition": {"Y": [2, 3], "O": [3, -2]}, "library": "lib2.lib", "max_atoms": 20, "budget": budget,
        "initial_population": 8}) + "\n")
    url = f"mysql://root@127.0.0.1:{PORT}/rlcsp_outage"
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "rlcsp.cli", "run", str(script), "--seed", "2", "--out", str(out),
                             "--db", url, "--quiet", *extra], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    return proc, out, url


def wait_rows(path: Path, rows: int) -> None:
    deadline = time.time() + 300
    while time.time() < deadline and (not path.exists() or len(path.read_text().splitlines()) < rows):
        time.sleep(0.1)


def test_server_outage_mid_run_loses_and_duplicates_nothing(server, tmp_path):
    budget = 40
    proc, out, url = start_run(tmp_path, budget)
    steps = out / "steps.csv"
    wait_rows(steps, 10)
    server.stop()
    time.sleep(10)
    rows_during_outage = len(steps.read_text().splitlines())
    server.start()
    assert proc.wait(timeout=600) == 0
    stderr = proc.stderr.read()
    assert "buffering steps locally" in stderr and "database back" in stderr, stderr  # kept going, then flushed
    assert rows_during_outage > 10  # steps went on while the server was down
    assert not (out / "pending_steps.jsonl").exists()

    store = Store(url)
    info = store.list_runs()[0]
    relaxations = [s["relaxation"] for s in store.steps(info["id"])]
    assert relaxations == list(range(1, budget + 1))  # none lost, none duplicated
    with steps.open() as handle:
        assert [int(r["relaxation"]) for r in csv.DictReader(handle)] == relaxations
    assert info["status"] == "finished"


def test_a_run_that_finishes_during_an_outage_says_where_its_steps_wait(server, tmp_path):
    budget = 40
    proc, out, url = start_run(tmp_path, budget)
    wait_rows(out / "steps.csv", 12)
    proc.send_signal(signal.SIGSTOP)  # the server goes away before the run can finish, however fast it is
    server.stop()
    proc.send_signal(signal.SIGCONT)
    assert proc.wait(timeout=300) == 0
    stderr = proc.stderr.read()
    assert "The search finished but the database is away" in stderr and "steps wait in" in stderr, stderr
    waiting = len((out / "pending_steps.jsonl").read_text().splitlines())
    assert waiting >= budget - 12
    server.start()
    rerun, _, _ = start_run(tmp_path, budget)
    assert rerun.wait(timeout=600) == 0, rerun.stderr.read()
    store = Store(url)
    run = store.list_runs()[0]
    assert [s["relaxation"] for s in store.steps(run["id"])] == list(range(1, budget + 1))
    assert run["status"] == "finished" and not (out / "pending_steps.jsonl").exists()


def test_a_long_outage_stops_cleanly_and_a_rerun_flushes_the_saved_steps(server, tmp_path):
    budget = 40
    proc, out, url = start_run(tmp_path, budget, "--max-outage", "3")
    wait_rows(out / "steps.csv", 10)
    server.stop()
    assert proc.wait(timeout=300) == 0
    stderr = proc.stderr.read()
    assert "database unreachable for over 3 s" in stderr and "steps wait in" in stderr, stderr
    pending = out / "pending_steps.jsonl"
    waiting = len(pending.read_text().splitlines())
    assert waiting >= 1
    server.start()
    rerun, _, _ = start_run(tmp_path, budget, "--max-outage", "3")
    assert rerun.wait(timeout=600) == 0, rerun.stderr.read()
    store = Store(url)
    run = store.list_runs()[0]
    assert [s["relaxation"] for s in store.steps(run["id"])] == list(range(1, budget + 1))
    assert run["status"] == "finished" and not pending.exists()
