from __future__ import annotations

import json
import time

import pytest

from rlcsp.db import Store
from rlcsp.cli import main
from rlcsp.csp.compare import compare
from rlcsp.version import code_version
from rlcsp.csp.walker_stats import (action_histogram, energy_sequence, generation_sequence, moves_sequence,
                                     policy_summary,
                           time_to_gm)


def step(relaxation: int, kind: str, move: int | None, attempts: int, outcome: str, e_current: float) -> dict:
    return {"relaxation": relaxation, "kind": kind, "move": move, "attempts": attempts, "outcome": outcome,
            "e_current": e_current, "build_s": 0.5, "relax_s": 1.0, "policy_s": 0.0}


# An initial structure, then: rejected, downhill, downhill, rejected, uphill Metropolis, downhill, failed.
STEPS = [step(1, "I", None, 9, "initial", 5.0), step(2, "S", 1, 3, "rejected", 5.0),
         step(3, "S", 2, 2, "accepted", 4.0), step(4, "S", 1, 1, "accepted", 3.0), step(5, "S", 7, 4, "rejected", 3.0),
         step(6, "S", 7, 2, "metropolis", 6.0), step(7, "S", 1, 1, "accepted", 2.0), step(8, "S", 3, 5, "failed", 2.0)]


def test_sequences_of_a_hand_made_run():
    assert moves_sequence(STEPS) == [3 + 2, 1, 4 + 2, 1]  # the failed last step produced no generation
    assert generation_sequence(STEPS) == [4, 3]  # 5 4 3 3 | 6 2 2
    assert energy_sequence(STEPS) == [3.0]  # the minimum before the jump to 6
    assert action_histogram(STEPS) == {1: 3, 2: 1, 3: 1, 4: 0, 5: 0, 6: 0, 7: 2, 9: 0, 10: 0}
    assert generation_sequence([step(2, "S", 1, 1, "accepted", e) for e in (5, 4, 3, 2, 5)]) == [4, 1]


def test_time_to_gm_counts_relaxations_and_step_time_or_censors_at_the_end():
    assert time_to_gm(STEPS, 4) == (4, 4 * 1.5, True)
    assert time_to_gm(STEPS, None) == (8, 8 * 1.5, False)


def test_policy_summary_counts_successes_within_the_budget():
    walker = {"moves_sequence": [1], "generation_sequence": [2], "energy_sequence": [],
              "action_histogram": action_histogram(STEPS), "wall_s_to_gm": 10.0, "relax_s": 2.5}
    ws = [{**walker, "gm_reached": True, "relaxations_to_gm": 10, "best_energy": -2.0},
          {**walker, "gm_reached": True, "relaxations_to_gm": 30, "best_energy": -2.0},
          {**walker, "gm_reached": False, "relaxations_to_gm": 40, "best_energy": -1.5}]
    summary = policy_summary(ws, budget=40)
    assert (summary["successes"], summary["success_rate"]) == (2, pytest.approx(2 / 3))
    assert summary["relaxations_to_gm"]["km_median"] == 30
    assert summary["best_energy"] == {"median": -2.0, "min": -2.0} and summary["relax_s"] == 7.5
    assert summary["action_histogram"]["1"] == {"count": 9, "fraction": 9 / 21}
    assert summary["energy_sequence"] == {"per_run": 0.0, "mean": None, "median": None}


SCRIPT = ('CONFIG = {"composition": {"Y": [2, 3], "O": [3, -2]}, "library": "lib2.lib", "max_atoms": 20, '
          '"initial_population": 8, "target_energy": -27.394619}\n')


def test_compare_runs_reports_and_then_skips_finished_walkers(tmp_path, capsys):
    (tmp_path / "small.py").write_text(SCRIPT)
    out, db = tmp_path / "cmp", f"sqlite:///{tmp_path / 'cmp.db'}"
    argv = ["compare", str(tmp_path / "small.py"), "--policies", "original", "reinforce-rlcsp", "--seeds", "2",
            "--budget", "40", "--db", db, "--out", str(out), "--workers", "2"]
    assert main(argv) == 0
    for name in ("report.md", "report.html", "report.json", "time_to_gm.png", "best_energy.png",
                 "probabilities_reinforce-rlcsp.png"):
        assert (out / name).stat().st_size > 0, name
    report = json.loads((out / "report.json").read_text())
    assert report["missing"] == [] and len(report["walkers"]) == 4
    assert {(w["policy"], w["seed"]) for w in report["walkers"]} == {
        (p, s) for p in ("original", "reinforce-rlcsp") for s in (0, 1)}
    assert set(report["logrank_relaxations_to_gm"]) == {"reinforce-rlcsp"}
    test = report["logrank_relaxations_to_gm"]["reinforce-rlcsp"]["original"]
    assert test["p_holm"] == test["p"]  # one row per reference: nothing to correct
    assert [report["summary"][p]["fuse"]["of_40"] for p in ("original", "reinforce-rlcsp")] == [14, 12]
    assert all(w["code_version"] == code_version() and w["relax_s"] > 0 for w in report["walkers"])
    assert report["summary"]["original"]["relax_s"] == pytest.approx(
        sum(w["relax_s"] for w in report["walkers"] if w["policy"] == "original"), abs=0.2)
    assert all((out / f"{p}-seed{s}" / "summary.json").exists() for p in ("original", "reinforce-rlcsp")
               for s in (0, 1))
    store = Store(db)
    runs = store.list_runs()
    assert [r["status"] for r in runs] == ["finished"] * 4
    capsys.readouterr()

    started = time.perf_counter()
    assert main(argv) == 0  # everything finished: no cluster, no walker runs again
    assert time.perf_counter() - started < 20
    assert "4 of 4 walkers already finished" in capsys.readouterr().out
    assert store.list_runs() == runs

    by_policy = {r["policy"]: r["id"] for r in runs}
    assert main(["show", str(by_policy["reinforce-rlcsp"]), "--db", db, "--out", str(tmp_path / "show")]) == 0
    assert (tmp_path / "show" / f"run{by_policy['reinforce-rlcsp']}_probabilities.png").exists()
    assert main(["show", str(by_policy["original"]), "--db", db, "--out", str(tmp_path / "show")]) == 0
    assert not (tmp_path / "show" / f"run{by_policy['original']}_probabilities.png").exists()  # no parameters

    capsys.readouterr()
    assert main([*argv[:5], "--first-seed", "1", *argv[5:]]) == 0  # seeds 1-2: seed 1 is done, seed 2 is new
    assert "2 of 4 walkers already finished" in capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    assert {w["seed"] for w in report["walkers"]} == {1, 2} and "seeds 1-2," in (out / "report.md").read_text()

    # A campaign's interim table: a walker still walking is censored at its last stored relaxation, not left out.
    walking = next(r for r in store.list_runs() if r["policy"] == "original" and r["seed"] == 1)
    store.set_status(walking["id"], "interrupted")
    report = compare(tmp_path / "small.py", ["original"], 2, 40, out=out, db_url=db, echo=lambda line: None,
                     run_missing=False, first_seed=1)
    assert report["missing"] == ["original seed 1"] and report["summary"]["original"]["runs"] == 1
    report = compare(tmp_path / "small.py", ["original"], 2, 40, out=out, db_url=db, echo=lambda line: None,
                     run_missing=False, first_seed=1, interim=True)
    assert report["missing"] == [] and report["walking"] == ["original seed 1"]
    assert sorted(w["run_id"] for w in report["walkers"]) == sorted(
        r["id"] for r in store.list_runs() if r["policy"] == "original" and r["seed"] in (1, 2))
    assert "1 walkers are still walking" in (out / "report.md").read_text()


def test_unreachable_scheduler_fails_fast_with_a_clear_message(tmp_path, capsys):
    (tmp_path / "small.py").write_text(SCRIPT)
    started = time.perf_counter()
    assert main(["compare", str(tmp_path / "small.py"), "--policies", "original", "--seeds", "1", "--budget", "20",
                 "--out", str(tmp_path / "cmp"), "--scheduler", "tcp://127.0.0.1:1"]) == 2
    assert time.perf_counter() - started < 15
    assert "no Dask scheduler answered at tcp://127.0.0.1:1" in capsys.readouterr().err


@pytest.mark.parametrize("policy, valid", [("ppo2", "original, ppo, random"), ("ppo:valu", "mean, mixed, none")])
def test_unknown_policy_or_baseline_lists_the_valid_names_before_any_cluster(tmp_path, capsys, policy, valid):
    (tmp_path / "small.py").write_text(SCRIPT)
    started = time.perf_counter()
    # The unreachable scheduler would take seconds: the name is checked first.
    assert main(["compare", str(tmp_path / "small.py"), "--policies", "original", policy, "--out",
                 str(tmp_path / "cmp"), "--scheduler", "tcp://127.0.0.1:1"]) == 2
    assert time.perf_counter() - started < 3
    err = capsys.readouterr().err
    assert "valid names:" in err and valid in err
    assert not (tmp_path / "cmp").exists()
