"""Baselines reduce the gradient's variance; every learning policy finds the bandit's best move."""
from __future__ import annotations

import numpy as np
import pytest

from rlcsp.policies import get_policy
from rlcsp.policies.base import ACTIONS
from rlcsp.policies.baselines import BASELINES, make_baseline
from rlcsp.exceptions import ConfigError, UnknownName
from tests.policies.bandit import BEST, GAINS, INITIAL, NOISE, STATE, play

OFFSET = 3.0  # raw returns far from 0, where a baseline matters most


@pytest.mark.parametrize("name", [b for b in BASELINES if b != "none"])
def test_baseline_reduces_gradient_variance(name):
    """Fixed non-uniform policy; returns OFFSET + gain + noise. Fit the baseline on 300 returns, then compare the
    spread of 4000 single-sample gradient estimates (G - b) score with that of G score."""
    rng = np.random.default_rng(0)
    policy = get_policy("reinforce")
    policy.begin(INITIAL)
    policy.theta = rng.normal(0.0, 0.7, policy.theta.shape)
    x, mask = policy.x(STATE), policy.mask(list(ACTIONS))
    mu = policy.mu(policy.theta, x, mask)[1]
    baseline = make_baseline(name, policy.features.size)

    def sample(n):
        moves = rng.choice(len(ACTIONS), size=n, p=mu)
        returns = OFFSET + np.array([GAINS[ACTIONS[k]] for k in moves]) + rng.normal(0.0, NOISE, n)
        return moves, returns

    moves, returns = sample(300)
    for start in range(0, 300, 5):  # fitted episode by episode, as the policies do
        baseline.fit([x[:-1]] * 5, returns[start:start + 5].tolist())
    b = baseline(x[:-1], mu)
    moves, returns = sample(4000)
    scores = np.array([policy.score(policy.theta, x, mask, k).ravel() for k in moves])
    plain = np.var(returns[:, None] * scores, axis=0).sum()
    reduced = np.var((returns - b)[:, None] * scores, axis=0).sum()
    assert reduced < 0.1 * plain


def test_value_baseline_fits_a_linear_value():
    baseline = make_baseline("value", 2)
    rng = np.random.default_rng(1)
    xs = [rng.normal(size=2) for _ in range(50)]
    baseline.fit(xs, [2.0 * x[0] - x[1] + 0.5 for x in xs])
    assert baseline(np.array([1.0, 2.0]), np.full(9, 1 / 9)) == pytest.approx(2.0 - 2.0 + 0.5, abs=1e-3)


def test_entropy_baseline_is_the_mean_at_maximal_entropy_and_rises_as_the_policy_concentrates():
    baseline = make_baseline("entropy", 1)
    baseline.fit([np.zeros(1)] * 4, [1.0, 3.0, 1.0, 3.0])  # mean 2, std 1
    x = np.zeros(1)
    assert baseline(x, np.full(9, 1 / 9)) == pytest.approx(2.0)
    assert baseline(x, np.array([1.0] + [0.0] * 8)) == pytest.approx(3.0)
    p = np.array([0.5, 0.5, 0, 0])
    assert baseline(x, p) == pytest.approx(2.0 + 1.0 - np.log(2) / np.log(4))


# reinforce-rlcsp's entropy bonus keeps H >= 0.8 nats, so its best move cannot pass ~0.8: judged by the greedy move
CONVERGE = [("reinforce-rlcsp", {"alpha": 0.05}, 0.6), ("reinforce", {"alpha": 0.05}, 0.9), ("npg", {}, 0.9),
            ("ppo", {}, 0.9)] + [(f"{name}:{b}", opts, 0.5) for name, opts in
                                 [("reinforce", {"alpha": 0.05}), ("npg", {}), ("ppo", {})]
                                 for b in BASELINES if b != "none"]


@pytest.mark.parametrize("name, options, floor", CONVERGE, ids=[c[0] for c in CONVERGE])
def test_every_learning_policy_finds_the_best_move(name, options, floor):
    policy = get_policy(name, **options)
    policy.begin(INITIAL)
    probs = play(policy, 600, seed=1).probabilities(STATE, list(ACTIONS))
    assert max(probs, key=probs.get) == BEST and probs[BEST] > floor


def test_baselines_by_name():
    assert type(get_policy("ppo:value").baseline) is type(get_policy("ppo", baseline="value").baseline)
    with pytest.raises(UnknownName, match="valid names: entropy, mean, mixed, none, value"):
        get_policy("npg:median")
    with pytest.raises(UnknownName, match="valid names: .*reinforce-rlcsp"):
        get_policy("trpo")
    with pytest.raises(ConfigError, match="takes no baseline"):
        get_policy("reinforce-rlcsp:value")
    with pytest.raises(ConfigError, match="baseline"):
        get_policy("ppo:value", baseline="mean")
