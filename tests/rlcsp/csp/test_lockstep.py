"""Lockstep walkers take exactly the steps they take alone, with one shared relaxer, and resume after a SIGKILL."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import pytest
import torch

from rlcsp.csp.compare import walker_line
from rlcsp.csp.config import load_script, make_config
from rlcsp.csp import lockstep, shards
from rlcsp.csp.lockstep import run_lockstep, shared_relaxer
from rlcsp.csp.run import execute
from rlcsp.csp.shards import PARENT_CHECK_S
from rlcsp.db import Store
from rlcsp.exceptions import ConfigError

from ...conftest import ROOT

SRTIO3 = {**load_script(ROOT / "inputs" / "srtio3.py"), "target_energy": None}  # no early GM: steps to compare
Y2O3 = {"composition": {"Y": [2, 3], "O": [3, -2]}, "max_atoms": 20, "target_energy": -27.394619}
# Two compositions, three policies, two modes, and phases that overlap: B is searching while A and C still build
# their initial populations, and finishes first; C's FUSE 1.06 starts include ones failed by GULP's inner cut
# (relaxations 1, 5 and 8), which never reach the relaxer's batch.
WALKERS = {
    "A": make_config(SRTIO3, policy="uniform", seed=0, budget=12, initial_population=6),
    "B": make_config(SRTIO3, policy="reinforce-rlcsp", seed=1, budget=10, initial_population=3),
    "C": make_config(Y2O3, policy="uniform", seed=7, budget=11, initial_population=8, fuse="1.06"),
}


def trajectory(db_url: str, run_id: int) -> list[dict]:
    """A run's stored steps without their timings: everything a walker decided, energies to the last bit."""
    store = Store(db_url, create=False)
    try:
        return [{k: v for k, v in row.items() if not k.endswith("_s")} for row in store.steps(run_id)]
    finally:
        store.close()


@pytest.fixture(scope="module")
def alone(tmp_path_factory) -> dict[str, list[dict]]:
    root = tmp_path_factory.mktemp("alone")
    out = {}
    for name, config in WALKERS.items():
        summary = execute(config, root / name, progress=False)
        assert summary["settings"]["lockstep"] is False and summary["settings"]["device"] == "cpu"
        out[name] = trajectory(summary["db"], summary["run_id"])
    return out


def test_lockstep_walkers_take_the_steps_they_take_alone(tmp_path, alone):
    url = f"sqlite:///{tmp_path / 'lockstep.db'}"
    finished = []
    summaries = run_lockstep([(config, tmp_path / name) for name, config in WALKERS.items()], url,
                             on_done=lambda i, summary: finished.append(i))
    assert finished[0] == 1  # B's budget ends first; the others carry on without it
    assert alone["C"][0]["failure"] == "exploded"
    for (name, config), summary in zip(WALKERS.items(), summaries):
        assert trajectory(url, summary["run_id"]) == alone[name], name
        assert summary["relaxations"] == config.budget and summary["stop_reason"] == "budget exhausted"
        assert summary["settings"]["lockstep"] is True and summary["settings"]["device"] == "cpu"
        saved = json.loads((tmp_path / name / "summary.json").read_text())
        assert saved["settings"]["lockstep"] is True
        rows = (tmp_path / name / "steps.csv").read_text().strip().splitlines()
        assert len(rows) == config.budget + 1
    store = Store(url, create=False)
    assert [r["status"] for r in store.list_runs()] == ["finished"] * 3
    store.close()


def test_walkers_in_processes_take_the_same_steps_and_a_walker_that_cannot_build_drops_out(tmp_path, alone):
    url = f"sqlite:///{tmp_path / 'processes.db'}"
    stuck = make_config(SRTIO3, seed=3, budget=12, initial_population=6, max_build_attempts=1, max_atoms=5)
    walkers = [(WALKERS["B"], tmp_path / "B"), (stuck, tmp_path / "stuck"), (WALKERS["A"], tmp_path / "A"),
               (WALKERS["C"], tmp_path / "C")]
    timings: dict[str, float] = {}
    finished = []
    summaries = run_lockstep(walkers, url, processes=2, timings=timings, on_done=lambda i, s: finished.append(i))
    assert sorted(finished) == [0, 1, 2, 3]
    assert "SearchError: no random SrTiO3 structure passed the checks in 1 attempts" in summaries[1]["error"]
    for i, name in ((0, "B"), (2, "A"), (3, "C")):  # shares: B and A in one process, the stuck one and C in the other
        assert trajectory(url, summaries[i]["run_id"]) == alone[name], name
        assert summaries[i]["settings"]["lockstep"] is True and summaries[i]["settings"]["relaxer"] == "lammps"
    assert timings["processes"] == 2 and timings["serve_s"] > 0 and timings["settle_s"] > 0
    share = shards.in_flight(timings)  # 4 walkers, a LAMMPS relaxation at a time: most wait on the host
    assert 0 < share <= 1 and "live_walker_s" not in timings, share


def test_a_walker_process_that_fails_fails_only_its_own_walkers(tmp_path, alone):
    taken = tmp_path / "taken"
    taken.write_text("a file where the walker's folder should be")
    summaries = run_lockstep([(WALKERS["A"], taken), (WALKERS["B"], tmp_path / "B")],
                             f"sqlite:///{tmp_path / 'crash.db'}", processes=2)
    assert summaries[0]["error"].startswith("walker process failed: FileExistsError"), summaries[0]
    assert trajectory(summaries[1]["db"], summaries[1]["run_id"]) == alone["B"]


def test_one_relaxer_for_all_walkers_and_a_device_only_for_engines_that_take_one():
    with pytest.raises(ConfigError, match="engines differ"):
        shared_relaxer([WALKERS["A"], make_config(SRTIO3, calculator_options={"fmax": 1e-3})])
    if torch.cuda.is_available():  # the Buckingham engine moves to its torch twin on a GPU
        assert shared_relaxer([WALKERS["A"]], device="cuda").name == "torch"
    else:
        with pytest.raises(ConfigError, match="torch-buckingham cannot run on cuda.*no CUDA GPU"):
            shared_relaxer([WALKERS["A"]], device="cuda")
    with pytest.raises(ConfigError, match="gulp cannot run on cuda"):  # an engine without a device option
        shared_relaxer([make_config(SRTIO3, calculator="gulp")], device="cuda")
    relaxer = shared_relaxer(list(WALKERS.values()), device="cpu")  # one library, two compositions
    relaxer.close()
    with pytest.raises(ConfigError, match="graphs replay the torch engine's steps; lammps-buckingham has none"):
        shared_relaxer([WALKERS["A"]], graphs=True)


def test_walkers_in_processes_record_the_settings_of_the_relaxer_that_serves_them(tmp_path):
    """summary.json's settings are what ran: walker processes record the serving relaxer's options, graphs
    included when the command switches them on (they are not part of a walker's config)."""
    configs = [make_config(SRTIO3, policy="uniform", seed=seed, budget=3, initial_population=2,
                           calculator="torch-buckingham") for seed in (0, 1)]
    summaries = run_lockstep([(c, tmp_path / f"w{k}") for k, c in enumerate(configs)],
                             f"sqlite:///{tmp_path / 'graphs.db'}", processes=2, graphs=True)
    for summary in summaries:
        assert summary["relaxations"] == 3
        assert summary["settings"]["relaxer"] == "torch" and summary["settings"]["lockstep"] is True
        assert summary["settings"]["relaxer_options"] == {"optimizer": "lbfgs", "graphs": True, "spare": 1.0}


SCRIPT = {"composition": {"Sr": [1, 2], "Ti": [1, 4], "O": [3, -2]}, "library": "lib2.lib", "max_atoms": 20,
          "initial_population": 5}
POLICIES = ("uniform", "reinforce-rlcsp")


def stored_steps(db) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            return conn.execute("SELECT COUNT(*) FROM steps").fetchone()[0]
    except sqlite3.Error:  # not created yet
        return 0


def test_a_walker_process_held_past_the_grace_is_killed_and_its_walkers_resume_exactly(tmp_path, alone,
                                                                                       monkeypatch):
    """After a stop, walker processes held outside their stream (here by another connection's lock on the store,
    which they would wait out for a minute) are killed once the grace and FORCE_AFTER_S have passed, so the stop
    is bounded; their walkers resume from their last stored step as after a SIGKILL."""
    monkeypatch.setattr(shards, "STOP_GRACE_S", 1.0)
    monkeypatch.setattr(shards, "FORCE_AFTER_S", 1.0)
    db = tmp_path / "held.db"
    walkers = [(WALKERS["A"], tmp_path / "A"), (WALKERS["B"], tmp_path / "B")]
    holder: dict[str, object] = {}

    def hold_then_stop() -> None:
        while stored_steps(db) < 6:
            time.sleep(0.05)
        conn = sqlite3.connect(db, timeout=60, isolation_level=None, check_same_thread=False)
        conn.execute("BEGIN EXCLUSIVE")
        holder["conn"], holder["at"] = conn, time.monotonic()
        os.kill(os.getpid(), signal.SIGINT)

    thread = threading.Thread(target=hold_then_stop)
    thread.start()
    summaries = run_lockstep(walkers, f"sqlite:///{db}", processes=2)
    ended = time.monotonic()
    thread.join()
    holder["conn"].rollback()
    holder["conn"].close()
    assert ended - holder["at"] < 15  # not the store's 60 s wait
    assert all(s["error"].startswith("walker process killed") for s in summaries), summaries

    summaries = run_lockstep(walkers, f"sqlite:///{db}", processes=2)
    for summary, name in zip(summaries, "AB"):
        assert trajectory(summary["db"], summary["run_id"]) == alone[name]


@pytest.mark.parametrize("stop, processes", [(signal.SIGKILL, 0), (signal.SIGKILL, 2), (signal.SIGINT, 2)])
def test_compare_in_lockstep_resumes_every_walker_exactly_after_a_sigkill_or_a_stop(tmp_path, stop, processes):
    """Killed, the walker processes die with the relaxer's and nothing is written after it; one SIGINT to the
    relaxer's process stops every walker cleanly after its relaxation in flight."""
    script = tmp_path / "srtio3_small.py"
    script.write_text(f"CONFIG = {SCRIPT!r}\n")
    out = tmp_path / "cmp"
    command = [sys.executable, "-m", "rlcsp.cli", "compare", str(script), "--policies", *POLICIES, "--seeds", "2",
               "--budget", "12", "--out", str(out), "--device", "cpu"]
    command += ["--walker-processes", str(processes)] if processes else []
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and stored_steps(out / "rlcsp.db") < 18 and proc.poll() is None:
        time.sleep(0.1)
    proc.send_signal(stop)
    _, stderr = proc.communicate(timeout=120)
    stopped_at = stored_steps(out / "rlcsp.db")
    time.sleep(2 * PARENT_CHECK_S)
    assert stored_steps(out / "rlcsp.db") == stopped_at  # no walker process lives on
    assert 18 <= stopped_at < 48, stopped_at
    if stop == signal.SIGINT:
        assert proc.returncode == 1 and "Traceback" not in stderr, stderr
        store = Store(f"sqlite:///{out / 'rlcsp.db'}", create=False)
        assert [r["status"] for r in store.list_runs()] == ["interrupted"] * 4
        store.close()
        folders = sorted(out.glob("*-seed*"))  # stopped: summary and CIFs now, the figures when it finishes
        assert len(folders) == 4 and all((f / "summary.json").exists() for f in folders)
        assert not any((f / "energy.png").exists() for f in folders)

    rerun = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert "0 of 4 walkers already finished" in rerun.stdout
    report = json.loads((out / "report.json").read_text())
    assert report["missing"] == [] and report["failures"] == {}
    url = f"sqlite:///{out / 'rlcsp.db'}"
    for policy in POLICIES:
        for seed in (0, 1):
            folder = out / f"{policy}-seed{seed}"
            summary = json.loads((folder / "summary.json").read_text())
            assert (folder / "energy.png").exists() and (folder / "lowest_energy_structure_conventional.cif").exists()
            assert summary["settings"]["lockstep"] is True and summary["settings"]["device"] == "cpu"
            config = make_config(SCRIPT, policy=policy, seed=seed, budget=12)
            reference = execute(config, tmp_path / "alone" / folder.name, progress=False)
            assert trajectory(url, summary["run_id"]) == trajectory(reference["db"], reference["run_id"])


def test_walkers_streamed_through_the_torch_batch_repeat_exactly_and_relax_as_they_do_alone(tmp_path, monkeypatch):
    """With the batched torch relaxer a walker's candidate joins the batch while others are still relaxing
    (TorchStream). The same walkers then repeat their steps to the last bit, also when a stop dropped their
    relaxations in flight (the grace after a stop set to nothing) and a rerun continued them; against the walker
    alone they agree to rounding only (a structure's L-BFGS path depends, at the level of rounding, on what else
    shares its batch; measured on Y2Ti2O7 candidates: final energies within 1e-7 eV/atom), so the initial
    population, whose draws need no relaxation result, relaxes to the same energies. The relaxer's steps between
    refills run as graphs (emulated on a CPU), and each walker's summary.json says so."""
    configs = [make_config(SRTIO3, policy=policy, seed=seed, budget=5, initial_population=3,
                           calculator="torch-buckingham", calculator_options={"graphs": True})
               for policy, seed in (("uniform", 0), ("original", 1))]
    alone = execute(configs[0], tmp_path / "alone", progress=False)
    alone = trajectory(alone["db"], alone["run_id"])
    streamed = []
    for attempt in range(2):
        url = f"sqlite:///{tmp_path / f'stream{attempt}.db'}"
        summaries = run_lockstep([(config, tmp_path / f"walker{k}-{attempt}") for k, config in enumerate(configs)],
                                 url)
        assert [s["relaxations"] for s in summaries] == [5, 5]
        assert summaries[0]["settings"]["relaxer_options"] == {"optimizer": "lbfgs", "graphs": True, "spare": 1.0}
        streamed.append([trajectory(url, s["run_id"]) for s in summaries])
    assert streamed[0] == streamed[1]

    monkeypatch.setattr(lockstep, "STOP_GRACE_S", 0.0)
    url = f"sqlite:///{tmp_path / 'dropped.db'}"
    walkers = [(k, c, tmp_path / f"dropped{k}") for k, c in enumerate(configs)]
    store, relaxer = Store(url), shared_relaxer(configs)
    stopped: dict[int, dict] = {}
    lockstep.drive(walkers, store, relaxer, relaxer.stream(), stopped.__setitem__,
                   stop=lambda: "signal SIGTERM" if stored_steps(tmp_path / "dropped.db") >= 4 else None)
    runs = store.list_runs()
    store.close()
    assert [r["status"] for r in runs] == ["interrupted"] * 2
    dropped = [s for s in stopped.values() if s["stop_reason"] == "signal SIGTERM, its relaxation in flight dropped"]
    assert dropped and walker_line("uniform", 0, dropped[0]).startswith("uniform seed 0: stopped after")
    assert 4 <= stored_steps(tmp_path / "dropped.db") < 10
    summaries = run_lockstep([(c, f) for _, c, f in walkers], url)
    assert [trajectory(url, s["run_id"]) for s in summaries] == streamed[0]
    initial = [(a, b) for a, b in zip(alone, streamed[0][0]) if a["kind"] == "I"]
    assert len(initial) == 3
    for a, b in initial:
        assert a["n_atoms"] == b["n_atoms"] and a["attempts"] == b["attempts"]
        assert b["e_new"] == pytest.approx(a["e_new"], abs=1e-4)
