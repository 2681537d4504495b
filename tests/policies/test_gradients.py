"""The exact-REINFORCE gradient against central finite differences of log mu and H(mu)."""
from __future__ import annotations

import numpy as np
import pytest

from rlcsp.policies import get_policy
from rlcsp.policies.base import ACTIONS, State, Transition

STATE = State(energy=-1.3, n_atoms=12, max_atoms=40, steps_since_downhill=40, temperature=0.03, last_move=7)
ALLOWED = [1, 2, 4, 6, 7, 10]


def finite_difference(f, theta: np.ndarray, h: float = 1e-6) -> np.ndarray:
    grad = np.zeros_like(theta)
    for i in np.ndindex(theta.shape):
        up, down = theta.copy(), theta.copy()
        up[i] += h
        down[i] -= h
        grad[i] = (f(up) - f(down)) / (2 * h)
    return grad


def policy_at(epsilon: float, seed: int = 0):
    policy = get_policy("reinforce", epsilon=epsilon, features="energy+stagnation+size+last_move")
    policy.begin([-2.0, -1.5, -1.0, -0.8])
    policy.theta = np.random.default_rng(seed).normal(0.0, 1.0, policy.theta.shape)
    return policy


@pytest.mark.parametrize("epsilon", [0.0, 0.1])
@pytest.mark.parametrize("move", [1, 6, 10])
def test_score_is_the_gradient_of_log_mu(epsilon, move):
    policy = policy_at(epsilon)
    x, mask, k = policy.x(STATE), policy.mask(ALLOWED), ACTIONS.index(move)
    numeric = finite_difference(lambda t: np.log(policy.mu(t, x, mask)[1][k]), policy.theta)
    assert policy.score(policy.theta, x, mask, k) == pytest.approx(numeric, abs=1e-7)
    assert not policy.score(policy.theta, x, mask, k)[~mask].any()  # excluded moves' parameters never move


@pytest.mark.parametrize("epsilon", [0.0, 0.1])
def test_entropy_gradient(epsilon):
    policy = policy_at(epsilon, seed=1)
    x, mask = policy.x(STATE), policy.mask(ALLOWED)

    def h(theta):
        mu = policy.mu(theta, x, mask)[1][mask]
        return -(mu * np.log(mu)).sum()

    value, grad = policy.entropy_grad(policy.theta, x, mask)
    assert value == pytest.approx(h(policy.theta))
    assert grad == pytest.approx(finite_difference(h, policy.theta), abs=1e-7)


def test_one_update_is_alpha_times_reward_times_the_numeric_gradient():
    """Through select/observe/update: theta += alpha (r grad log mu(a) + c_ent grad H), the mu the move came from."""
    policy = get_policy("reinforce", alpha=0.1, c_ent=0.3, epsilon=0.1, features="energy+size", warmup=0,
                        scale_reward=False)
    policy.begin([-2.0, -1.0])  # mu0 = -1.5, sd0 = 0.5
    policy.theta = np.random.default_rng(2).normal(0.0, 1.0, policy.theta.shape)
    theta0, x, mask = policy.theta.copy(), policy.x(STATE), policy.mask(ALLOWED)
    move = policy.select(STATE, ALLOWED, np.random.default_rng(3))
    k = ACTIONS.index(move)
    policy.observe(Transition(STATE, move, STATE, -1.4, "accepted", True, 1))
    policy.update()
    r = (-1.3 - -1.4) / 0.5

    def entropy(t):
        mu = policy.mu(t, x, mask)[1][mask]
        return -(mu * np.log(mu)).sum()

    expected = theta0 + 0.1 * (r * finite_difference(lambda t: np.log(policy.mu(t, x, mask)[1][k]), theta0)
                               + 0.3 * finite_difference(entropy, theta0))
    assert policy.theta == pytest.approx(expected, abs=1e-8)


def test_rlcsp_update_moves_only_the_chosen_block_unlike_the_exact_gradient():
    kwargs = dict(warmup=0, scale_reward=False)
    rlcsp, exact = get_policy("reinforce-rlcsp", **kwargs), get_policy("reinforce", **kwargs)
    for policy in (rlcsp, exact):
        policy.begin([-2.0, -1.0])
        policy.observe(Transition(STATE, 6, STATE, -1.4, "accepted", True, 1))
        policy.update()
    moved = np.flatnonzero(np.array(rlcsp.state_dict()["theta"]).reshape(9, 2).any(axis=1))
    assert moved.tolist() == [ACTIONS.index(6)]
    assert np.count_nonzero(exact.theta.any(axis=1)) == 9
