"""``reinforce``: exact REINFORCE on a linear softmax policy (spec: policies.md "The learning rules").

Policy: h_k(s) = theta_k . x(s), x(s) = [features of :mod:`rlcsp.policies.features`, 1]; pi = softmax of h over the
permitted moves. With ``epsilon`` > 0 the behaviour policy is the mixture mu = (1 - eps) pi + eps / n, and
everything below (likelihood, gradient, entropy) is taken of mu, the policy that actually acted, so the
gradient stays exact: grad log mu(a) = (1 - eps) pi_a / mu_a * (phi_a - sum_b pi_b phi_b), with phi_b the
features placed in move b's block. The default ``epsilon = 0`` gives the textbook on-policy gradient.

Update at each episode end (``episode_length`` H steps), at the theta that acted:
    theta += alpha * sum_t [(G_t - b(s_t)) grad log mu(a_t|s_t) + c_ent grad H(mu(.|s_t))]
with the reward-to-go G_t = sum_{k>=t} gamma^(k-t) r_k inside the episode (no gamma^t weight: episodes are
chunks of one continuing walk) and b a baseline of :mod:`rlcsp.policies.baselines`. Rewards, the warm-up and mu0/sd0
are RLCSP's (:mod:`rlcsp.policies.rewards`); steps inside the warm-up only feed the reward statistics.

``alpha`` defaults to RLCSP's 5e-4, so that ``reinforce`` against ``reinforce-rlcsp`` isolates the gradient.
``npg`` and ``ppo`` subclass this and replace only ``_ascend``, the step taken from an episode.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from rlcsp.policies.base import ACTION_INDEX, ACTIONS, Policy, State, Transition, softmax
from rlcsp.policies.baselines import make_baseline
from rlcsp.policies.features import EnergyScale, Features
from rlcsp.policies.rewards import Rewards


class Reinforce(Policy):
    name = "reinforce"

    def __init__(self, alpha: float = 5e-4, episode_length: int = 1, gamma: float = 1.0, epsilon: float = 0.0,
                 c_ent: float = 0.0, baseline: str = "none", features: str = "energy", h_type: str = "linear",
                 melt_threshold: int = 500, **reward_options):
        self.alpha, self.episode_length, self.gamma, self.epsilon, self.c_ent = (
            alpha, episode_length, gamma, epsilon, c_ent)
        self.scale = EnergyScale()
        self.features = Features(self.scale, features, h_type, melt_threshold)
        self.rewards = Rewards(self.scale, **reward_options)
        self.baseline = make_baseline(baseline, self.features.size)
        self.theta = np.zeros((len(ACTIONS), self.features.size + 1))
        self.buffer: list[dict[str, Any]] = []  # the episode so far: x, allowed, action, reward, p_old
        self._selected: tuple[State, list[int]] | None = None  # what the last select() drew from

    def begin(self, initial_energies: list[float]) -> None:
        self.scale.fit(initial_energies)

    # ----- the policy and its derivatives (theta is an argument so PPO and the tests can probe others)
    def x(self, state: State) -> np.ndarray:
        return np.append(self.features(state), 1.0)

    def mu(self, theta: np.ndarray, x: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(pi, mu): the softmax over the permitted moves and the epsilon-mixed behaviour policy."""
        pi = softmax(theta @ x, mask)
        return pi, (1 - self.epsilon) * pi + self.epsilon * mask / mask.sum()

    def score(self, theta: np.ndarray, x: np.ndarray, mask: np.ndarray, k: int) -> np.ndarray:
        """grad_theta log mu(k | s), shaped like theta."""
        pi, mu = self.mu(theta, x, mask)
        weight = 1.0 if self.epsilon == 0 else (1 - self.epsilon) * pi[k] / mu[k]  # 1 even where pi underflows
        return weight * np.outer(np.eye(len(ACTIONS))[k] - pi, x)

    def entropy_grad(self, theta: np.ndarray, x: np.ndarray, mask: np.ndarray) -> tuple[float, np.ndarray]:
        """(H(mu), grad_theta H(mu)); dH/dh_b = -(1 - eps) pi_b (log mu_b - sum_c pi_c log mu_c)."""
        pi, mu = self.mu(theta, x, mask)
        log_mu = np.log(mu, where=mu > 0, out=np.zeros_like(mu))  # 0 log 0 = 0
        dh = -(1 - self.epsilon) * pi * (log_mu - pi @ log_mu)
        return float(-(mu * log_mu).sum()), np.outer(dh, x)

    @staticmethod
    def mask(allowed: list[int]) -> np.ndarray:
        return np.array([a in allowed for a in ACTIONS])

    # ----- the Policy interface
    def probabilities(self, state: State, allowed: list[int]) -> dict[int, float]:
        _, mu = self.mu(self.theta, self.x(state), self.mask(allowed))
        return {a: float(mu[ACTION_INDEX[a]]) for a in allowed}

    def select(self, state: State, allowed: list[int], rng: np.random.Generator) -> int:
        self._selected = (state, list(allowed))
        return super().select(state, allowed, rng)

    def observe(self, transition: Transition) -> None:
        scored = self.rewards(transition)
        if scored is None or not scored[1]:
            return
        # A transition this policy did not select (not from its last select) counts as drawn from all moves.
        same = self._selected is not None and self._selected[0] == transition.state
        allowed = self._selected[1] if same else list(ACTIONS)
        x, k = self.x(transition.state), ACTION_INDEX[transition.action]
        _, mu = self.mu(self.theta, x, self.mask(allowed))
        self.buffer.append({"x": x.tolist(), "allowed": allowed, "action": k, "reward": scored[0],
                            "p_old": float(mu[k])})

    def update(self) -> None:
        if not self.buffer:
            return
        returns, g = [], 0.0
        for step in reversed(self.buffer):
            g = step["reward"] + self.gamma * g
            returns.append(g)
        returns.reverse()
        xs = [np.array(s["x"]) for s in self.buffer]
        masks = [self.mask(s["allowed"]) for s in self.buffer]
        advantages = [g - self.baseline(x[:-1], self.mu(self.theta, x, m)[1][m])
                      for g, x, m in zip(returns, xs, masks)]
        self._ascend(xs, masks, [s["action"] for s in self.buffer], np.array(advantages),
                     np.array([s["p_old"] for s in self.buffer]))
        self.baseline.fit([x[:-1] for x in xs], returns)
        self.buffer = []

    def _ascend(self, xs: list[np.ndarray], masks: list[np.ndarray], actions: list[int], advantages: np.ndarray,
                p_old: np.ndarray) -> None:
        step = np.zeros_like(self.theta)
        for x, m, k, a in zip(xs, masks, actions, advantages):
            step += a * self.score(self.theta, x, m, k)
            if self.c_ent:
                step += self.c_ent * self.entropy_grad(self.theta, x, m)[1]
        self.theta += self.alpha * step

    # ----- exact resume / sharing
    def state_dict(self) -> dict[str, Any]:
        return {"theta": self.theta.tolist(), "scale": self.scale.state_dict(), "rewards": self.rewards.state_dict(),
                "baseline": self.baseline.state_dict(), "buffer": [dict(s) for s in self.buffer]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.theta = np.array(state["theta"], dtype=float)
        self.scale.load_state_dict(state["scale"])
        self.rewards.load_state_dict(state["rewards"])
        self.baseline.load_state_dict(state["baseline"])
        self.buffer = [dict(s) for s in state["buffer"]]
