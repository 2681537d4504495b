"""``reinforce-rlcsp``: RLCSP's REINFORCE variant, reproduced for paper-compatible runs (fuse.md 4.2-4.6, 4.9).

Policy: for move k, h_k = theta[2k] * phi(z) + theta[2k+1] * free_term * [z != 0], softmax over the permitted
moves, mixed with epsilon = 0.1 uniform (fully uniform while the current energy is above max_energy = 0).
Update, per step, with the scaled reward r_s of :mod:`rlcsp.policies.rewards` (warm-up included) and pi, H computed
over ALL nine moves without exclusions or epsilon, as RLCSP does:

    theta[2a:2a+2] += alpha * (1 - pi_a) * [phi(z), free_term] * (r_s - beta * (ln pi_a + 1) * [H < e_threshold])

Only the chosen move's two parameters move (RLCSP drops the softmax cross terms; ``reinforce`` is the exact
gradient). The bias gradient is free_term even when z == 0, as in RLCSP. Steps taken from a current energy above
max_energy are not learned from (RLCSP keeps them out of the episode).

Left out on purpose: RLCSP refits mu/sd with each new energy during its first 100 updates and divides by a pi
computed before that refit; here mu0/sd0 stay those of the initial population (spec 4.2).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from rlcsp.policies.base import ACTION_INDEX, ACTIONS, Policy, State, Transition, entropy, softmax
from rlcsp.policies.features import EnergyScale, Features
from rlcsp.policies.rewards import Rewards


class ReinforceRLCSP(Policy):
    name = "reinforce-rlcsp"
    episode_length = 1

    def __init__(self, alpha: float = 5e-4, epsilon: float = 0.1, e_threshold: float = 0.8, beta: float = 1.0,
                 free_term: float = 1.0, h_type: str = "linear", max_energy: float = 0.0,
                 theta: list[float] | None = None, **reward_options):
        self.alpha, self.epsilon, self.e_threshold, self.beta = alpha, epsilon, e_threshold, beta
        self.free_term, self.max_energy = free_term, max_energy
        self.scale = EnergyScale(max_energy=max_energy)
        self.features = Features(self.scale, "energy", h_type)
        self.rewards = Rewards(self.scale, max_energy=max_energy, **reward_options)
        self.theta = np.zeros(2 * len(ACTIONS)) if theta is None else np.array(theta, dtype=float)
        self.episode: list[tuple[float, int, float, bool]] = []  # (phi(z) at the old state, action, r_s, learn)

    def begin(self, initial_energies: list[float]) -> None:
        self.scale.fit(initial_energies)

    def _preferences(self, x: float) -> np.ndarray:
        bias = self.free_term if x != 0 else 0.0
        return self.theta[0::2] * x + self.theta[1::2] * bias

    def probabilities(self, state: State, allowed: list[int]) -> dict[int, float]:
        """The behaviour policy: softmax over ``allowed`` mixed with epsilon uniform (or uniform above max_energy)."""
        if state.energy > self.max_energy:
            return {a: 1.0 / len(allowed) for a in allowed}
        mask = np.array([a in allowed for a in ACTIONS])
        pi = softmax(self._preferences(self.features(state)[0]), mask)
        return {a: float((1 - self.epsilon) * pi[ACTION_INDEX[a]] + self.epsilon / len(allowed)) for a in allowed}

    def observe(self, transition: Transition) -> None:
        if transition.state.energy > self.max_energy:
            return
        scored = self.rewards(transition)
        if scored is not None:
            x = float(self.features(transition.state)[0])
            self.episode.append((x, ACTION_INDEX[transition.action], *scored))

    def update(self) -> None:
        for x, k, r_s, learn in self.episode:
            pi = softmax(self._preferences(x))
            if not learn or pi[k] == 0:  # RLCSP skips a step whose pi underflowed to 0
                continue
            bonus = self.beta * (math.log(pi[k]) + 1) if entropy(pi) < self.e_threshold else 0.0
            self.theta[2 * k:2 * k + 2] += self.alpha * (1 - pi[k]) * np.array([x, self.free_term]) * (r_s - bonus)
        self.episode = []

    def state_dict(self) -> dict[str, Any]:
        return {"theta": self.theta.tolist(), "scale": self.scale.state_dict(),
                "rewards": self.rewards.state_dict(), "episode": [list(s) for s in self.episode]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.theta = np.array(state["theta"], dtype=float)
        self.scale.load_state_dict(state["scale"])
        self.rewards.load_state_dict(state["rewards"])
        self.episode = [(float(x), int(k), float(r), bool(learn)) for x, k, r, learn in state["episode"]]
