"""Exact save/restore through JSON, and no NaN in the parameters whatever the rewards."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from rlcsp.policies import get_policy
from rlcsp.policies.base import ACTIONS, State, Transition

POLICIES = [("reinforce-rlcsp", {}),
            ("reinforce", {"alpha": 0.05, "c_ent": 0.01, "epsilon": 0.1, "baseline": "entropy", "episode_length": 3}),
            ("npg:value", {"features": "energy+last_move"}),
            ("ppo:mixed", {"features": "energy+stagnation+size+temperature", "epsilon": 0.05})]
INITIAL = [-1.9, -1.7, -1.6, -1.5, -1.45, -1.3, -1.2, -1.0]


def walk(policy, rng: np.random.Generator, steps: int, start: int = 0) -> list[int]:
    """A varied walk (changing states and allowed sets, failures, repeats); returns the moves selected."""
    moves = []
    for i in range(start, start + steps):
        s = State(-1.5 + 0.1 * math.sin(i), 8 + i % 5, 20, i % 7, 0.02 + 0.001 * (i % 3), ACTIONS[i % 9])
        allowed = list(ACTIONS) if i % 4 else [1, 2, 3, 6, 7]
        move = policy.select(s, allowed, rng)
        moves.append(move)
        u = rng.random()
        e_new = None if u < 0.1 else s.energy + float(rng.normal(0.0, 0.05))
        policy.observe(Transition(s, move, s, e_new, "failed" if e_new is None else "accepted", u > 0.2, 1))
        if (i + 1) % policy.episode_length == 0:
            policy.update()
    return moves


def plain_json(value) -> bool:
    """Only dict/list/str/int/float/bool/None, exactly (numpy scalars subclass float, but are not wanted)."""
    if type(value) is dict:
        return all(type(k) is str and plain_json(v) for k, v in value.items())
    if type(value) is list:
        return all(plain_json(v) for v in value)
    return value is None or type(value) in (str, int, float, bool)


@pytest.mark.parametrize("name, options", POLICIES, ids=[p[0] for p in POLICIES])
def test_save_and_restore_is_exact(name, options):
    policy = get_policy(name, **options)
    policy.begin(INITIAL)
    walk(policy, np.random.default_rng(1), 23)  # 23: mid-episode for H = 3 and H = 5
    saved = policy.state_dict()
    assert plain_json(saved)
    copy = get_policy(name, **options)
    copy.load_state_dict(json.loads(json.dumps(saved)))
    assert copy.state_dict() == saved
    moves = walk(policy, np.random.default_rng(2), 30, start=23)
    assert walk(copy, np.random.default_rng(2), 30, start=23) == moves
    assert copy.state_dict() == policy.state_dict()
    assert len(set(moves)) > 1 and policy.state_dict()["theta"] != saved["theta"]  # it did keep learning


@pytest.mark.parametrize("name, options", POLICIES, ids=[p[0] for p in POLICIES])
def test_nan_never_reaches_the_parameters(name, options):
    """sd0 = 0 and a run of equal rewards (reward std 0, where RLCSP divides by 0), then NaN energies."""
    policy = get_policy(name, **{**options, "warmup": 0})
    policy.begin([-2.0, -2.0, -2.0])
    s = State(-2.0, 10, 20, 0, 0.02, 1)
    rng = np.random.default_rng(0)
    for e_new in [-2.0] * 12 + [-2.1, float("nan"), None, -1.9] * 3:
        policy.observe(Transition(s, policy.select(s, list(ACTIONS), rng), s, e_new, "accepted", True, 1))
        policy.update()
    nan_state = State(float("nan"), 10, 20, 0, 0.02, 1)
    policy.observe(Transition(nan_state, 1, s, -2.0, "accepted", True, 1))
    policy.update()
    theta = np.array(policy.state_dict()["theta"])
    assert np.isfinite(theta).all() and theta.any()
    assert np.isfinite(policy.state_dict()["rewards"]["history"]).all()
    assert all(math.isfinite(p) for p in policy.probabilities(s, list(ACTIONS)).values())
