"""Walkers sharing one policy through the store: 8 processes x 200 updates, nothing lost (issue: storage)."""
from __future__ import annotations

import multiprocessing as mp

import numpy as np
import pytest

from rlcsp.db import Store
from rlcsp.policies import get_policy
from rlcsp.policies.base import State, Transition
from rlcsp.policies.shared import SharedPolicy

GAINS = np.array([0.0, 0.01, 0.02, 0.05, 0.0, 0.01, 0.03, 0.0, 0.01])  # energy drop per move (eV/atom)
ACTIONS = (1, 2, 3, 4, 5, 6, 7, 9, 10)


def walker(url: str, seed: int, updates: int) -> None:
    rng = np.random.default_rng(seed)
    store = Store(url)
    policy = SharedPolicy(get_policy("reinforce", alpha=0.05), store, "shared-bandit", run_id=seed)
    policy.begin(list(-27.0 + 0.05 * np.random.default_rng(0).standard_normal(100)))
    energy = -27.0
    for _ in range(updates):
        state = State(energy, 40, 80, 0, 0.02)
        action = policy.select(state, list(ACTIONS), rng)
        new = energy - GAINS[ACTIONS.index(action)] + 0.005 * rng.standard_normal()
        policy.observe(Transition(state, action, State(new, 40, 80, 0, 0.02), new, "accepted", True, 1))
        policy.update()
    store.close()


def test_eight_processes_share_one_policy_without_losing_updates(db_url):
    Store(db_url).close()  # create the schema once before the walkers race
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=walker, args=(db_url, seed, 200)) for seed in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=600)
        assert p.exitcode == 0
    store = Store(db_url)
    history = store.param_history("shared-bandit")
    assert [n for n, _ in history] == list(range(1, 1601))  # every update is a version, none lost
    steps = [params["rewards"]["step"] for _, params in history]
    assert steps == list(range(1, 1601))  # each version holds exactly one more observed reward
    size = np.size(get_policy("reinforce").state_dict()["theta"])
    assert all(np.size(params["theta"]) == size and "buffer" not in params for _, params in history)
    final = get_policy("reinforce")
    final.load_state_dict({**history[-1][1], "buffer": []})
    probs = final.probabilities(State(-27.0, 40, 80, 0, 0.02), list(ACTIONS))
    assert max(probs, key=probs.get) == 4  # the shared policy learned the best move from everyone's updates


def test_shared_state_round_trip(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    policy = SharedPolicy(get_policy("reinforce"), store, "p")
    copy = SharedPolicy(get_policy("reinforce"), store, "p")
    copy.load_state_dict(policy.state_dict())
    assert copy.state_dict() == policy.state_dict()
    with pytest.raises(KeyError):
        copy.load_state_dict({})
