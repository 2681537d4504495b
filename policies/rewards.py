"""RLCSP's reward shaping and warm-up, shared by every learning policy (fuse.md 4.4 and 4.6).

The reward of a step from E_o to E_n is the standardised energy drop (E_o - E_n)/sd0. With the smart penalty
(the paper inputs) an unchanged, failed (None, non-finite or > max_energy) or non-unique result instead gets
(E_o - E_high)/sd0, E_high being the mean of the worst ~10 % initial energies; without it, the fixed penalties
apply. Rewards are then z-scored by the mean and population std of the previous ``reward_limit`` (5000) rewards,
seeded with RLCSP's initial 0 row and only once at least 2 exist. While sd0 is unknown the raw energy
difference is used, as RLCSP does.

Deviations, so that NaN never reaches a policy's parameters: a reward z-score with std 0 is only centred (RLCSP
divides by 0), and a reward that is still not finite is dropped (not recorded, not counted).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from rlcsp.policies.base import Transition
from rlcsp.policies.features import EnergyScale


class Rewards:
    """Turns transitions into scaled rewards; counts steps for the warm-up.

    Warm-up (as RLCSP): the step counter is incremented first; while ``step < warmup`` the scaled reward is
    clipped to [-1, 1], and a policy may learn from the step only when ``step > warmup``.
    """

    def __init__(self, scale: EnergyScale, smart_penalty: bool = True, zero_reward_penalty: float = -3.0,
                 non_converge_penalty: float = -3.0, non_unique_penalty: float = -3.0,
                 non_unique_reward: bool = False, scale_reward: bool = True, reward_limit: int = 5000,
                 warmup: int = 10, max_energy: float = 0.0):
        self.scale = scale
        self.smart_penalty = smart_penalty
        self.zero_reward_penalty = zero_reward_penalty
        self.non_converge_penalty = non_converge_penalty
        self.non_unique_penalty = non_unique_penalty
        self.non_unique_reward = non_unique_reward
        self.scale_reward = scale_reward
        self.reward_limit = reward_limit
        self.warmup = warmup
        self.max_energy = max_energy
        self.history: list[float] = [0.0]
        self.step = 0

    def _drop(self, e_old: float, e_new: float) -> float:
        """z(E_o) - z(E_n): in units of sd0, or raw while sd0 is unknown."""
        return (e_old - e_new) / self.scale.sd if self.scale.ready else e_old - e_new

    def raw(self, e_old: float, e_new: float | None, unique: bool) -> float:
        """The unscaled reward of one step (fuse.md 4.4)."""
        failed = e_new is None or not math.isfinite(e_new) or e_new > self.max_energy
        if self.smart_penalty and self.scale.high is not None and (failed or e_new == e_old or not unique):
            return self._drop(e_old, self.scale.high)
        if e_new == e_old:
            return self.zero_reward_penalty
        if failed:
            return self.non_converge_penalty
        r = self._drop(e_old, e_new)
        if self.non_unique_penalty != 0 and not unique:
            r = r + self.non_unique_penalty if self.non_unique_reward else self.non_unique_penalty
        return r

    def standardise(self, r: float) -> float:
        """z-score against the previous rewards (the current one is not yet in ``history``)."""
        if not self.scale_reward or len(self.history) < 2:
            return r
        mean, std = float(np.mean(self.history)), float(np.std(self.history))
        return (r - mean) / std if std > 0 else r - mean

    def __call__(self, transition: Transition) -> tuple[float, bool] | None:
        """(scaled reward, whether the policy may learn from it), or None for a dropped non-finite reward."""
        r = self.raw(transition.state.energy, transition.new_energy, transition.unique)
        if not math.isfinite(r):
            return None
        r_s = self.standardise(r)
        self.history.append(r)
        del self.history[:-self.reward_limit]
        self.step += 1
        if self.step < self.warmup:
            r_s = min(1.0, max(-1.0, r_s))
        return r_s, self.step > self.warmup

    def state_dict(self) -> dict[str, Any]:
        return {"history": list(self.history), "step": self.step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history = [float(r) for r in state["history"]][-self.reward_limit:]
        self.step = int(state["step"])
