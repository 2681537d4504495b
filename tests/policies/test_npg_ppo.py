"""NPG's trust region and PPO's clipped surrogate."""
from __future__ import annotations

import numpy as np
import pytest

from rlcsp.policies import get_policy
from rlcsp.policies.base import ACTIONS, State, Transition
from rlcsp.policies.ppo import clipped_surrogate
from tests.policies.test_gradients import finite_difference

ALLOWED_SETS = [list(ACTIONS), [1, 2, 3, 6, 7, 9, 10], [1, 2, 3, 4, 6, 7, 9, 10], list(ACTIONS), [2, 3, 6, 7]]


def episode(policy, seed: int):
    """Five steps from different states and allowed sets; returns (states, allowed sets) of the batch."""
    rng = np.random.default_rng(seed)
    policy.begin([-2.0, -1.6, -1.2, -1.0])
    policy.theta = rng.normal(0.0, 0.5, policy.theta.shape)
    states = [State(float(rng.uniform(-2.2, -0.9)), int(rng.integers(5, 40)), 40, 0, 0.02) for _ in range(5)]
    for s, allowed in zip(states, ALLOWED_SETS):
        move = policy.select(s, allowed, rng)
        policy.observe(Transition(s, move, s, s.energy + float(rng.normal(0.0, 0.2)), "accepted", True, 1))
    return states, ALLOWED_SETS


def kl(policy, theta_old, theta_new, states, allowed_sets) -> float:
    total = 0.0
    for s, allowed in zip(states, allowed_sets):
        x, m = policy.x(s), policy.mask(allowed)
        p, q = policy.mu(theta_old, x, m)[1][m], policy.mu(theta_new, x, m)[1][m]
        total += (p * np.log(p / q)).sum()
    return total / len(states)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("epsilon", [0.0, 0.1])
def test_npg_step_meets_the_kl_trust_region(seed, epsilon):
    policy = get_policy("npg", features="energy+size", epsilon=epsilon, warmup=0)
    states, allowed_sets = episode(policy, seed)
    theta_old = policy.theta.copy()
    policy.update()
    assert kl(policy, theta_old, policy.theta, states, allowed_sets) == pytest.approx(0.01, rel=0.1)


def test_npg_without_line_search_takes_the_quadratic_step_along_the_natural_gradient():
    steps, models = [], []
    for line_search in (False, True):
        policy = get_policy("npg", features="energy+size", warmup=0, line_search=line_search)
        states, allowed_sets = episode(policy, 5)
        xs, masks = [policy.x(s) for s in states], [policy.mask(a) for a in allowed_sets]
        fisher, theta_old = policy.fisher(xs, masks), policy.theta.copy()
        policy.update()
        step = (policy.theta - theta_old).ravel()
        steps.append(step)
        models.append(0.5 * step @ fisher @ step)
    assert models[0] == pytest.approx(0.01, rel=1e-9)  # 1/2 d^T F d = delta, the quadratic model
    cosine = steps[0] @ steps[1] / np.linalg.norm(steps[0]) / np.linalg.norm(steps[1])
    assert cosine == pytest.approx(1.0, abs=1e-12)  # the line search only rescales the natural gradient


def test_npg_does_not_step_without_a_gradient():
    policy = get_policy("npg", warmup=0, scale_reward=False, smart_penalty=False, zero_reward_penalty=0.0)
    policy.begin([-2.0, -1.0])
    s = State(-1.5, 10, 40, 0, 0.02)
    for _ in range(5):
        policy.observe(Transition(s, policy.select(s, list(ACTIONS), np.random.default_rng(0)), s, -1.5,
                                  "rejected", True, 1))  # E_n == E_o with a 0 penalty: every advantage is 0
    policy.update()
    assert not policy.theta.any()


def test_clip_edges():
    ratios = np.array([0.5, 0.79, 0.81, 1.0, 1.19, 1.21, 2.0])
    value, slope = clipped_surrogate(ratios, np.full(7, 2.0), 0.2)
    assert slope.tolist() == [2.0, 2.0, 2.0, 2.0, 2.0, 0.0, 0.0]  # A > 0: flat only beyond 1 + eps
    assert value == pytest.approx([1.0, 1.58, 1.62, 2.0, 2.38, 2.4, 2.4])
    value, slope = clipped_surrogate(ratios, np.full(7, -2.0), 0.2)
    assert slope.tolist() == [0.0, 0.0, -2.0, -2.0, -2.0, -2.0, -2.0]  # A < 0: flat only below 1 - eps
    assert value == pytest.approx([-1.6, -1.6, -1.62, -2.0, -2.38, -2.42, -4.0])


def ppo_batch(seed: int):
    policy = get_policy("ppo", features="energy+size", c_ent=0.05, warmup=0)
    episode(policy, seed)
    batch = policy.state_dict()["buffer"]
    xs = [np.array(b["x"]) for b in batch]
    masks = [policy.mask(b["allowed"]) for b in batch]
    actions = [b["action"] for b in batch]
    p_old = np.array([b["p_old"] for b in batch])
    return policy, xs, masks, actions, p_old


def test_ppo_gradient_at_the_old_policy_is_the_policy_gradient():
    policy, xs, masks, actions, p_old = ppo_batch(0)
    adv = np.array([1.0, -0.5, 2.0, -1.5, 0.7])
    _, grad = policy.objective(policy.theta, xs, masks, actions, adv, p_old)
    pg = sum(a * policy.score(policy.theta, x, m, k) + 0.05 * policy.entropy_grad(policy.theta, x, m)[1]
             for x, m, k, a in zip(xs, masks, actions, adv)) / 5
    assert grad == pytest.approx(pg, abs=1e-12)


@pytest.mark.parametrize("seed", [0, 3, 4])
def test_ppo_gradient_matches_finite_differences_inside_and_beyond_the_clip(seed):
    policy, xs, masks, actions, p_old = ppo_batch(seed)
    adv = np.array([1.0, -0.5, 2.0, -1.5, 0.7])
    theta = policy.theta + np.random.default_rng(10 + seed).normal(0.0, 0.2, policy.theta.shape)
    rho = np.array([policy.mu(theta, x, m)[1][k] for x, m, k in zip(xs, masks, actions)]) / p_old
    slope = clipped_surrogate(rho, adv, 0.2)[1]
    assert (slope == 0).any() and (slope != 0).any()  # some steps clipped, some not
    assert (np.abs(np.abs(rho - 1) - 0.2) > 1e-3).all()  # no ratio on a kink, where the derivative jumps
    _, grad = policy.objective(theta, xs, masks, actions, adv, p_old)
    numeric = finite_difference(lambda t: policy.objective(t, xs, masks, actions, adv, p_old)[0], theta)
    assert grad == pytest.approx(numeric, abs=1e-7)


def test_ppo_runs_k_adam_epochs_per_episode():
    policy, *_ = ppo_batch(0)
    policy.update()
    assert policy.adam_t == 4 and policy.theta.any()
