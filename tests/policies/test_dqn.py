"""The online DQN: it learns a toy skeleton task, resumes exactly, logs stable metrics; the random baseline."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import bulk

from rlcsp.design.rewards import AnalyticEvaluator
from rlcsp.db import Store
from rlcsp.policies.dqn import METRICS, DQNConfig, evaluate, train
from rlcsp.policies.training_log import read_metrics
from rlcsp.design.fill_env import SkeletonFillEnv

VOCABULARY = ("Li", "Na", "F", "Cl", "O", "H")
SMALL = {"learning_starts": 200, "target_network_frequency": 100, "hidden": 16, "blocks": 1, "learning_rate": 2e-3,
         "train_frequency": 2}


def three_li_five_f(species) -> float:
    """Depends only on the counts of two elements; the optimum 1.0 is 3 Li + 5 F on the 8 sites."""
    return 1.0 - (abs(species.count("Li") - 3) + abs(species.count("F") - 5)) / 8


def toy_env() -> SkeletonFillEnv:
    """A learning task, not chemistry: its optimum puts F on cation sites, so the chemistry masks stay off."""
    return SkeletonFillEnv(bulk("NaCl", "rocksalt", a=5.6, cubic=True), AnalyticEvaluator(three_li_five_f),
                           vocabulary=VOCABULARY, chemistry=False)


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


def test_dqn_learns_the_toy_task_to_95_percent_of_the_optimum(tmp_path):
    env = toy_env()
    result = train(env, DQNConfig(seed=0, exploration_decay=3e-3, **SMALL), 150, tmp_path)
    assert result["global_step"] == 150 * 8
    greedy = evaluate(toy_env(), tmp_path / "checkpoint.pt", 20, seed=1)
    assert np.mean(greedy) >= 0.95  # optimum 1.0
    assert np.mean(result["returns"][:20]) < 0.8  # it started from random


def test_random_baseline_stays_random(tmp_path):
    result = train(toy_env(), DQNConfig(seed=0, agent="random", **SMALL), 60, tmp_path)
    rows = read_metrics(tmp_path / "metrics.csv")
    assert all(r["charts/epsilon"] == 1.0 for r in rows) and np.isnan(rows[-1]["losses/td_loss"])
    assert np.mean(result["returns"]) < 0.8


class Crash(Exception):
    pass


def crash_after(episode: int):
    def on_episode(row) -> None:
        if row["episode"] == episode:
            raise Crash

    return on_episode


def test_resume_after_a_crash_is_exact(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'rlcsp.db'}")
    runs = [store.create_run({"test": name}, "fill-toy", "NaCl", "dqn", 4, "analytic", "test") for name in "ab"]
    config = DQNConfig(seed=4, exploration_decay=1e-3, checkpoint_every=5, log_every=10,
                       **{**SMALL, "learning_starts": 40})
    straight = train(toy_env(), config, 14, tmp_path / "straight", store=store, run_id=runs[0])
    with pytest.raises(Crash):  # dies after episode 7 was logged; the last checkpoint is episode 5's
        train(toy_env(), config, 14, tmp_path / "resumed", store=store, run_id=runs[1], on_episode=crash_after(7))
    resumed = train(toy_env(), config, 14, tmp_path / "resumed", store=store, run_id=runs[1])  # new objects
    assert resumed["episodes"] == 14 and resumed["returns"] == straight["returns"][5:]
    a = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=False)
    b = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=False)
    for key, value in a["q_network"].items():
        assert torch.equal(value, b["q_network"][key]), key
    assert a["global_step"] == b["global_step"] and a["rng"] == b["rng"]
    straight_rows = (tmp_path / "straight" / "metrics.csv").read_text().splitlines()
    resumed_rows = (tmp_path / "resumed" / "metrics.csv").read_text().splitlines()
    drop_sps = lambda rows: [",".join(r.split(",")[:4] + r.split(",")[5:]) for r in rows]  # noqa: E731
    assert drop_sps(resumed_rows) == drop_sps(straight_rows)  # same rows, none twice (SPS is wall time)
    episodes = [[{k: v for k, v in e.items() if k != "wall_s"} for e in store.episodes(run)] for run in runs]
    assert episodes[1] == episodes[0]  # the rows after the checkpoint were replaced, not repeated
    assert store.metrics(runs[1], "losses/td_loss") == store.metrics(runs[0], "losses/td_loss")


def test_metrics_go_to_csv_and_store(db_url, tmp_path):
    store = Store(db_url)
    run_id = store.create_run({"test": "dqn"}, "fill-toy", "NaCl", "dqn", 0, "analytic", "test")
    config = DQNConfig(seed=0, log_every=20, **{**SMALL, "learning_starts": 10})
    train(toy_env(), config, 12, tmp_path, store=store, run_id=run_id)
    rows = read_metrics(tmp_path / "metrics.csv")
    assert list(rows[0]) == list(METRICS) and [r["episode"] for r in rows] == list(range(1, 13))
    episodes = store.episodes(run_id)
    assert [e["episode"] for e in episodes] == list(range(1, 13))
    assert [e["reward"] for e in episodes] == [r["charts/episodic_return"] for r in rows]
    assert len(episodes[0]["species"]) == 8
    assert [s for s, _ in store.metrics(run_id, "losses/td_loss")] == [20, 40, 60, 80]  # 96 steps
