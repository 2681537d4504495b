"""z(E), the named feature sets and RLCSP's reward shaping (fuse.md 4.2, 4.4, 4.6)."""
from __future__ import annotations

import math
import statistics

import numpy as np
import pytest

from rlcsp.policies.base import State, Transition
from rlcsp.policies.features import EnergyScale, Features
from rlcsp.policies.rewards import Rewards
from rlcsp.exceptions import UnknownName


def test_scale_uses_the_first_100_negative_energies_and_the_worst_tenth():
    first = [-1.0 - 0.01 * i for i in range(25)] + [-2.0 + 0.003 * i for i in range(75)]
    scale = EnergyScale()
    scale.fit(first[:10] + [0.4, float("nan")] + first[10:] + [-0.5])  # positive, NaN and the 101st left out
    assert scale.mu == pytest.approx(statistics.mean(first))
    assert scale.sd == pytest.approx(statistics.pstdev(first))
    assert scale.high == pytest.approx(statistics.mean(sorted(first)[-10:]))
    assert scale.z(-1.5) == pytest.approx((-1.5 - scale.mu) / scale.sd)


def test_z_is_zero_without_statistics():
    scale = EnergyScale()
    assert scale.z(-3.0) == 0.0  # before begin()
    scale.fit([-3.0])
    assert (scale.mu, scale.sd, scale.high, scale.z(-1.0)) == (None, None, -3.0, 0.0)  # one energy: no sd
    scale.fit([-2.0, -2.0, -2.0])
    assert scale.sd == 0.0 and scale.z(-1.0) == 0.0 and scale.high == -2.0


def test_feature_sets():
    scale = EnergyScale()
    scale.fit([-2.0, -1.0])  # mu -1.5, sd 0.5
    s = State(energy=-2.5, n_atoms=10, max_atoms=40, steps_since_downhill=250, temperature=0.03, last_move=9)
    assert Features(scale)(s).tolist() == [-2.0]
    assert Features(scale, h_type="non-linear")(s)[0] == pytest.approx(-(2.0 ** (1 / 3)))
    full = Features(scale, "energy+stagnation+size+temperature+last_move")
    assert full.size == 13
    assert full(s) == pytest.approx([-2.0, 0.5, 0.25, 1.5] + [0, 0, 0, 0, 0, 0, 0, 1, 0])
    assert not Features(scale, "last_move")(State(-1.0, 4, 8, 0, 0.02)).any()
    with pytest.raises(UnknownName, match="valid names: energy, last_move, size, stagnation, temperature"):
        Features(scale, "energy+volume")


def step(e_old: float, e_new: float | None, unique: bool = True) -> Transition:
    s = State(e_old, 10, 40, 0, 0.02)
    return Transition(s, 1, s, e_new, "accepted", unique, 1)


def rewards(**options) -> Rewards:
    scale = EnergyScale()
    scale.fit([-2.0, -1.0, -1.5, -1.5])  # mu -1.5, sd sqrt(0.125), E_high = -1
    return Rewards(scale, **options)


def test_smart_penalty_and_fixed_penalties():
    sd = math.sqrt(0.125)
    r = rewards()
    assert r.raw(-1.8, -1.9, True) == pytest.approx(0.1 / sd)
    for e_new, unique in [(-1.8, True), (None, True), (0.3, True), (float("nan"), True), (-1.9, False)]:
        assert r.raw(-1.8, e_new, unique) == pytest.approx((-1.8 - -1.0) / sd)
    fixed = rewards(smart_penalty=False, zero_reward_penalty=-1.0, non_converge_penalty=-2.0, non_unique_penalty=-4.0)
    assert fixed.raw(-1.8, -1.8, True) == -1.0
    assert fixed.raw(-1.8, None, True) == -2.0
    assert fixed.raw(-1.8, -1.9, False) == -4.0
    added = rewards(smart_penalty=False, non_unique_penalty=-4.0, non_unique_reward=True)
    assert added.raw(-1.8, -1.9, False) == pytest.approx(0.1 / sd - 4.0)


def test_scaling_uses_previous_rewards_only_and_the_last_5000():
    r = rewards(scale_reward=True, reward_limit=3, smart_penalty=False)
    got = [r(step(-1.5, -1.5 - d))[0] for d in (0.1, 0.2, 0.3, 0.4)]
    raw = [d / math.sqrt(0.125) for d in (0.1, 0.2, 0.3, 0.4)]
    assert got[0] == pytest.approx(raw[0])  # only the initial 0: unscaled, then clipped by the warm-up
    assert got[1] == pytest.approx(max(-1, min(1, (raw[1] - np.mean([0, raw[0]])) / np.std([0, raw[0]]))))
    window = [raw[0], raw[1], raw[2]]  # the initial 0 has left the 3-reward window
    assert got[3] == pytest.approx(max(-1, min(1, (raw[3] - np.mean(window)) / np.std(window))))
    assert r.history == pytest.approx(raw[1:])


def test_warm_up_counts_first_then_clips_below_and_learns_above():
    r = rewards(warmup=3, scale_reward=False)
    out = [r(step(-1.5, -2.5)) for _ in range(5)]  # raw reward 2.83, above the clip
    assert [learn for _, learn in out] == [False, False, False, True, True]
    assert [round(v, 3) for v, _ in out] == [1.0, 1.0, 2.828, 2.828, 2.828]


def test_non_finite_rewards_are_dropped_uncounted():
    r = rewards()
    assert r(step(float("nan"), -1.0)) is None
    assert (r.history, r.step) == ([0.0], 0)
