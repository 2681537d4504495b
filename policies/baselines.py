"""Baselines b(s) for the advantage A = G - b(s) of ``reinforce``, ``npg`` and ``ppo`` (spec: policies.md).

A baseline that does not depend on the action leaves the policy gradient unbiased and, when close to E[G | s],
lowers its variance. Each one is evaluated before it sees the episode's returns, then fitted on them.

- ``none``: b = 0.
- ``mean``: the running mean of all returns seen.
- ``entropy`` (the seed report's B1, made precise): b(s) = m + s * (1 - H(s) / ln n), with m, s the running
  mean and std of the returns, H(s) the behaviour policy's entropy over the n permitted moves. At maximal
  entropy it is the running mean; as the policy concentrates, returns come from its preferred moves and outrun
  the mean of the past, so b rises by up to one std to follow them.
- ``value`` (B2): a linear V(s) = w . [x(s), 1], fitted by ridge least squares (ridge 1e-3) on the returns,
  weighted by decay^age (0.99) so it tracks the improving policy.
- ``mixed``: 0.7 * value + 0.3 * entropy (the seed report's combination).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from rlcsp.policies.base import entropy
from rlcsp.exceptions import UnknownName


class Baseline:
    """b = 0; the interface: ``b(x, probs)``, then ``fit(xs, returns)`` once the episode's advantages are taken."""

    def __call__(self, x: np.ndarray, probs: np.ndarray) -> float:
        """Baseline at features ``x`` where the behaviour policy gives ``probs`` to the permitted moves."""
        return 0.0

    def fit(self, xs: list[np.ndarray], returns: list[float]) -> None:
        """Learn from the episode's returns."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""


class MeanBaseline(Baseline):
    def __init__(self):
        self.count, self.mean, self.m2 = 0, 0.0, 0.0

    def __call__(self, x: np.ndarray, probs: np.ndarray) -> float:
        return self.mean

    def fit(self, xs: list[np.ndarray], returns: list[float]) -> None:
        for g in returns:  # Welford's update: the std is needed by the entropy baseline
            self.count += 1
            delta = g - self.mean
            self.mean += delta / self.count
            self.m2 += delta * (g - self.mean)

    def state_dict(self) -> dict[str, Any]:
        return {"count": self.count, "mean": self.mean, "m2": self.m2}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.count, self.mean, self.m2 = int(state["count"]), float(state["mean"]), float(state["m2"])


class EntropyBaseline(MeanBaseline):
    def __call__(self, x: np.ndarray, probs: np.ndarray) -> float:
        std = math.sqrt(self.m2 / self.count) if self.count else 0.0
        spread = entropy(probs) / math.log(len(probs)) if len(probs) > 1 else 1.0
        return self.mean + std * (1.0 - spread)


class ValueBaseline(Baseline):
    def __init__(self, dim: int, ridge: float = 1e-3, decay: float = 0.99):
        self.ridge, self.decay = ridge, decay
        self.xtx = np.zeros((dim + 1, dim + 1))
        self.xtg = np.zeros(dim + 1)
        self.w = np.zeros(dim + 1)

    def __call__(self, x: np.ndarray, probs: np.ndarray) -> float:
        return float(self.w @ np.append(x, 1.0))

    def fit(self, xs: list[np.ndarray], returns: list[float]) -> None:
        for x, g in zip(xs, returns):
            xb = np.append(x, 1.0)
            self.xtx = self.decay * self.xtx + np.outer(xb, xb)
            self.xtg = self.decay * self.xtg + g * xb
        self.w = np.linalg.solve(self.xtx + self.ridge * np.eye(len(self.w)), self.xtg)

    def state_dict(self) -> dict[str, Any]:
        return {"xtx": self.xtx.tolist(), "xtg": self.xtg.tolist(), "w": self.w.tolist()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.xtx, self.xtg, self.w = (np.array(state[k], dtype=float) for k in ("xtx", "xtg", "w"))


class MixedBaseline(Baseline):
    def __init__(self, dim: int, value_weight: float = 0.7):
        self.value, self.entropy, self.value_weight = ValueBaseline(dim), EntropyBaseline(), value_weight

    def __call__(self, x: np.ndarray, probs: np.ndarray) -> float:
        return self.value_weight * self.value(x, probs) + (1 - self.value_weight) * self.entropy(x, probs)

    def fit(self, xs: list[np.ndarray], returns: list[float]) -> None:
        self.value.fit(xs, returns)
        self.entropy.fit(xs, returns)

    def state_dict(self) -> dict[str, Any]:
        return {"value": self.value.state_dict(), "entropy": self.entropy.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.value.load_state_dict(state["value"])
        self.entropy.load_state_dict(state["entropy"])


BASELINES = ("none", "mean", "entropy", "value", "mixed")


def make_baseline(name: str, dim: int) -> Baseline:
    """The baseline called ``name`` for ``dim`` features (the value fit adds its own bias)."""
    if name == "none":
        return Baseline()
    if name == "mean":
        return MeanBaseline()
    if name == "entropy":
        return EntropyBaseline()
    if name == "value":
        return ValueBaseline(dim)
    if name == "mixed":
        return MixedBaseline(dim)
    raise UnknownName("baseline", name, list(BASELINES))
