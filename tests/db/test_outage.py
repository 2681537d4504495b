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

from db import Store

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
            if subprocess.run(["mariadb-admin", f"--socket={self.socket}", "ping"], capture_output=True).returncode == 0:
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


def test_server_outage_mid_run_loses_and_duplicates_nothing(server, tmp_path):
    budget = 40
    script = tmp_path / "small.py"
    script.write_text("CONFIG = " + json.dumps({
        "composition": {"Y": [2, 3], "O": [3, -2]}, "library": "lib2.lib", "max_atoms": 20, "budget": budget,
        "initial_population": 8}) + "\n")
    url = f"mysql://root@127.0.0.1:{PORT}/rlcsp_outage"
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "rlcsp.cli", "run", str(script), "--seed", "2", "--out", str(out),
                             "--db", url, "--quiet"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    steps = out / "steps.csv"
    deadline = time.time() + 300
    while time.time() < deadline and (not steps.exists() or len(steps.read_text().splitlines()) < 10):
        time.sleep(0.1)
    server.stop()
    time.sleep(10)
    rows_during_outage = len(steps.read_text().splitlines())
    server.start()
    assert proc.wait(timeout=600) == 0, proc.stderr.read()
    assert rows_during_outage < budget + 1  # the run really waited for the server

    store = Store(url)
    info = store.list_runs()[0]
    relaxations = [s["relaxation"] for s in store.steps(info["id"])]
    assert relaxations == list(range(1, budget + 1))  # none lost, none duplicated
    with steps.open() as handle:
        assert [int(r["relaxation"]) for r in csv.DictReader(handle)] == relaxations
    assert info["status"] == "finished"
