"""State features for the learning policies (spec: policies.md "State features"; fuse.md 4.2).

RLCSP's only feature is the current energy standardised by the initial population, z = (E - mu0) / sd0, with
z = 0 while sd0 is unavailable or 0 (so the policy starts uniform). ``h_type='non-linear'`` uses RLCSP's
sign(z)|z|^(1/3). Richer sets are named by joining parts with '+', e.g. 'energy+stagnation':

- ``energy``: phi(z);
- ``stagnation``: steps since the last downhill move / melt_threshold (1 when the melt starts);
- ``size``: n_atoms / max_atoms;
- ``temperature``: T / t0 (t0 = FUSE's starting T, 0.02 eV/atom);
- ``last_move``: one-hot over the nine moves (all zero before the first move).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from rlcsp.policies.base import ACTION_INDEX, ACTIONS, State
from rlcsp.exceptions import UnknownName

PARTS = ("energy", "stagnation", "size", "temperature", "last_move")
H_TYPES = ("linear", "non-linear")


class EnergyScale:
    """mu0, sd0 and E_high of the initial population, shared by the features and the reward.

    As RLCSP, the fit uses the first ``limit`` (100) energies below ``max_energy`` (0; RLCSP stores no others),
    the population std (``np.std``), needs at least two energies for mu0/sd0, and E_high is the mean of the
    max(1, floor(n/10)) largest ones.
    """

    def __init__(self, limit: int = 100, max_energy: float = 0.0):
        self.limit, self.max_energy = limit, max_energy
        self.mu: float | None = None
        self.sd: float | None = None
        self.high: float | None = None

    def fit(self, energies: list[float]) -> None:
        e = np.array([x for x in energies if math.isfinite(x) and x < self.max_energy][:self.limit], dtype=float)
        self.mu = float(e.mean()) if len(e) > 1 else None
        self.sd = float(e.std()) if len(e) > 1 else None
        self.high = float(np.sort(e)[-max(1, len(e) // 10):].mean()) if len(e) else None

    @property
    def ready(self) -> bool:
        return self.mu is not None and bool(self.sd)

    def z(self, energy: float) -> float:
        """The policy's standardised energy: 0 without statistics (and for a non-finite energy)."""
        if not self.ready or not math.isfinite(energy):
            return 0.0
        return (energy - self.mu) / self.sd

    def state_dict(self) -> dict[str, Any]:
        return {"mu": self.mu, "sd": self.sd, "high": self.high}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.mu, self.sd, self.high = state["mu"], state["sd"], state["high"]


def phi(z: float, h_type: str = "linear") -> float:
    """RLCSP's transform of z: identity ('linear', the paper inputs) or sign(z)|z|^(1/3) ('non-linear')."""
    return z if h_type == "linear" else math.copysign(abs(z) ** (1 / 3), z)


class Features:
    """Maps a :class:`State` to the feature vector x(s) of a named set (no bias; the policies add it)."""

    def __init__(self, scale: EnergyScale, names: str = "energy", h_type: str = "linear",
                 melt_threshold: int = 500, t0: float = 0.02):
        self.parts = names.split("+")
        for part in self.parts:
            if part not in PARTS:
                raise UnknownName("feature", part, list(PARTS))
        if h_type not in H_TYPES:
            raise UnknownName("h_type", h_type, list(H_TYPES))
        self.scale, self.h_type, self.melt_threshold, self.t0 = scale, h_type, melt_threshold, t0
        self.size = sum(len(ACTIONS) if p == "last_move" else 1 for p in self.parts)

    def __call__(self, state: State) -> np.ndarray:
        x: list[float] = []
        for part in self.parts:
            if part == "energy":
                x.append(phi(self.scale.z(state.energy), self.h_type))
            elif part == "stagnation":
                x.append(state.steps_since_downhill / self.melt_threshold)
            elif part == "size":
                x.append(state.n_atoms / state.max_atoms)
            elif part == "temperature":
                x.append(state.temperature / self.t0)
            else:
                x.extend(float(state.last_move is not None and ACTION_INDEX[state.last_move] == i)
                         for i in range(len(ACTIONS)))
        return np.array(x, dtype=float)
