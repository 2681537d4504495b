"""reinforce-rlcsp against fuse.md 4.4-4.6 and 4.9, recomputed independently on plain floats."""
from __future__ import annotations

import math
import statistics

import pytest

from rlcsp.policies import get_policy
from rlcsp.policies.base import ACTIONS, State, Transition

INITIAL = [-1.10, -1.32, -0.95, -1.41, -1.05, -0.80, -1.25, -1.18, -0.99, -1.30, -1.22, -0.87]


def state(energy: float) -> State:
    return State(energy=energy, n_atoms=10, max_atoms=40, steps_since_downhill=0, temperature=0.02)


# (E_old, move, E_new (None = failed), unique): downhill, uphill, failed, unchanged and repeated energies
SCRIPT = [(-1.20, 1, -1.25, True), (-1.25, 2, None, False), (-1.25, 6, -1.25, True), (-1.25, 1, -1.31, True),
          (-1.31, 7, -1.10, True), (-1.31, 9, -1.40, False), (-1.31, 3, -1.36, True), (-1.36, 10, 0.5, True),
          (-1.36, 1, -1.38, True), (-1.38, 4, -1.42, True), (-1.42, 5, -1.45, True), (-1.45, 1, -1.50, True),
          (-1.50, 6, None, False), (-1.50, 2, -1.50, True), (-1.50, 1, -1.49, True), (-1.50, 7, -1.56, True)]


def reference(script, theta, alpha=5e-4, e_threshold=0.8, beta=1.0):
    """fuse.md 4.9 line by line: smart penalty, z-scored rewards over the previous ones, warm-up, own-action
    update with the entropy bonus. Returns theta after every step."""
    mu, sd = statistics.mean(INITIAL), statistics.pstdev(INITIAL)
    high = statistics.mean(sorted(INITIAL)[-max(1, len(INITIAL) // 10):])
    theta, rewards, step, after = list(theta), [0.0], 0, []
    for e_old, move, e_new, unique in script:
        z = (e_old - mu) / sd
        if e_new is None or e_new > 0 or e_new == e_old or not unique:
            r = (e_old - high) / sd
        else:
            r = (e_old - e_new) / sd
        r_s = (r - statistics.mean(rewards)) / statistics.pstdev(rewards) if len(rewards) >= 2 else r
        rewards.append(r)
        step += 1
        if step < 10:
            r_s = max(-1.0, min(1.0, r_s))
        if step > 10:
            k = ACTIONS.index(move)
            h = [theta[2 * i] * z + theta[2 * i + 1] for i in range(9)]
            ex = [math.exp(v - max(h)) for v in h]
            pi = [v / sum(ex) for v in ex]
            big_h = -sum(p * math.log(p) for p in pi)
            factor = r_s - (beta * (math.log(pi[k]) + 1) if big_h < e_threshold else 0.0)
            theta[2 * k] += alpha * (1 - pi[k]) * z * factor
            theta[2 * k + 1] += alpha * (1 - pi[k]) * factor
        after.append(list(theta))
    return after


def run(policy, script):
    after = []
    for e_old, move, e_new, unique in script:
        policy.observe(Transition(state(e_old), move, state(e_new if e_new is not None else e_old), e_new,
                                  "accepted", unique, 1))
        policy.update()
        after.append(policy.state_dict()["theta"])
    return after


# theta = 0: uniform, H = ln 9 > 0.8; the second keeps pi(move 1) near 0.95, H < 0.8, so the entropy bonus acts
@pytest.mark.parametrize("theta0", [[0.0] * 18, [0.3, 5.0, -0.2, 0.1] + [0.05, -0.4] * 7])
def test_scripted_run_matches_the_spec_step_by_step(theta0):
    policy = get_policy("reinforce-rlcsp", theta=theta0)
    policy.begin(INITIAL)
    got, want = run(policy, SCRIPT), reference(SCRIPT, theta0)
    for step, (g, w) in enumerate(zip(got, want), start=1):
        assert g == pytest.approx(w, rel=1e-12, abs=1e-15), f"step {step}"
    assert got[9] == theta0 and got[10] != theta0  # warm-up: the 10th step still only logs, the 11th updates


def test_first_update_by_hand():
    """mu0 = -2, sd0 = 1, E_high = -1; from E = -3 (z = -1) to -3.5: r = 0.5, unscaled (one previous reward),
    pi = 1/9, H = ln 9 > 0.8: the move's (weight, bias) gain 5e-4 * 8/9 * [-1, 1] * 0.5."""
    policy = get_policy("reinforce-rlcsp", warmup=0)
    policy.begin([-3.0, -1.0])
    policy.observe(Transition(state(-3.0), 4, state(-3.5), -3.5, "accepted", True, 1))
    policy.update()
    theta = policy.state_dict()["theta"]
    assert theta[6:8] == pytest.approx([5e-4 * 8 / 9 * -1 * 0.5, 5e-4 * 8 / 9 * 1 * 0.5], rel=1e-12)
    assert theta[:6] == [0.0] * 6 and theta[8:] == [0.0] * 10
    # the next step fails: smart penalty (E_o - E_high)/sd0 = -2, scaled by the rewards [0, 0.5]: -9
    assert policy.rewards.raw(-3.0, None, True) == -2.0
    assert policy.rewards.standardise(-2.0) == pytest.approx((-2.0 - 0.25) / 0.25)


def test_entropy_bonus_switches_on_below_the_threshold():
    """With a bias of 5 on move 1, pi_1 = e^5 / (e^5 + 8) and H < 0.8 nats: the bonus -beta (ln pi + 1) is added."""
    theta0 = [0.0, 5.0] + [0.0] * 16
    deltas = {}
    for threshold in (0.8, 0.0):
        policy = get_policy("reinforce-rlcsp", theta=theta0, warmup=0, scale_reward=False, e_threshold=threshold)
        policy.begin([-3.0, -1.0])
        policy.observe(Transition(state(-3.0), 1, state(-3.5), -3.5, "accepted", True, 1))
        policy.update()
        deltas[threshold] = [a - b for a, b in zip(policy.state_dict()["theta"], theta0)]
    pi = math.exp(5) / (math.exp(5) + 8)
    assert -pi * math.log(pi) - (1 - pi) * math.log((1 - pi) / 8) < 0.8
    assert deltas[0.0][:2] == pytest.approx([5e-4 * (1 - pi) * -1 * 0.5, 5e-4 * (1 - pi) * 0.5], rel=1e-12)
    bonus = -(math.log(pi) + 1)
    assert deltas[0.8][:2] == pytest.approx([5e-4 * (1 - pi) * -1 * (0.5 + bonus),
                                             5e-4 * (1 - pi) * (0.5 + bonus)], rel=1e-12)


def test_behaviour_probabilities_mix_epsilon_over_the_permitted_moves():
    theta0 = [0.0, 1.0, 0.0, -1.0] + [0.0] * 14
    policy = get_policy("reinforce-rlcsp", theta=theta0)
    policy.begin([-3.0, -1.0])
    allowed = [1, 2, 6]
    probs = policy.probabilities(state(-3.0), allowed)
    ex = {1: math.e, 2: math.exp(-1), 6: 1.0}
    assert probs == pytest.approx({a: 0.9 * ex[a] / sum(ex.values()) + 0.1 / 3 for a in allowed}, rel=1e-12)
    assert policy.probabilities(state(0.5), allowed) == {a: 1 / 3 for a in allowed}  # above max_energy: uniform


def test_z_zero_drops_the_bias_from_the_policy_but_not_from_the_update():
    policy = get_policy("reinforce-rlcsp", theta=[0.0, 3.0] + [0.0] * 16, warmup=0, scale_reward=False)
    policy.begin([-2.0, -2.0])  # sd0 = 0: z = 0, so the policy is uniform and the reward uses raw energies
    assert policy.probabilities(state(-2.0), list(ACTIONS)) == pytest.approx({a: 1 / 9 for a in ACTIONS})
    policy.observe(Transition(state(-2.0), 2, state(-2.25), -2.25, "accepted", True, 1))
    policy.update()
    assert policy.state_dict()["theta"][2:4] == pytest.approx([0.0, 5e-4 * 8 / 9 * 0.25], rel=1e-12)


def test_steps_from_an_energy_above_max_energy_are_not_learned_from():
    policy = get_policy("reinforce-rlcsp")
    policy.begin(INITIAL)
    policy.observe(Transition(state(0.3), 1, state(-1.0), -1.0, "accepted", True, 1))
    policy.update()
    assert policy.state_dict()["rewards"] == {"history": [0.0], "step": 0}
