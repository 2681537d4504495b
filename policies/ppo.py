"""``ppo``: proximal policy optimisation with the clipped surrogate (spec: policies.md "The learning rules").

Per episode of H = 5 steps (policy, rewards, baselines as in :mod:`rlcsp.policies.reinforce`), K = 4 epochs of Adam
(lr 0.01, PyTorch's defaults otherwise) ascend
    L(theta) = mean_t min(rho_t A_t, clip(rho_t, 1 - eps, 1 + eps) A_t) + c_ent mean_t H(mu(.|s_t)),
    rho_t = mu_theta(a_t|s_t) / mu_old(a_t|s_t),
with mu_old the probability the move was drawn with. The gradient is analytic (d rho = rho grad log mu), so
numpy is enough; the Adam moments persist across episodes, like one optimiser over a run, and are saved.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from rlcsp.policies.reinforce import Reinforce


def clipped_surrogate(ratio: np.ndarray, advantage: np.ndarray, clip: float) -> tuple[np.ndarray, np.ndarray]:
    """Per step, min(rho A, clip(rho) A) and its derivative in rho: A, except 0 where the clip bites
    (rho beyond 1 + eps with A > 0, or beyond 1 - eps with A < 0)."""
    value = np.minimum(ratio * advantage, np.clip(ratio, 1 - clip, 1 + clip) * advantage)
    flat = ((advantage > 0) & (ratio > 1 + clip)) | ((advantage < 0) & (ratio < 1 - clip))
    return value, np.where(flat, 0.0, advantage)


class PPO(Reinforce):
    name = "ppo"

    def __init__(self, lr: float = 0.01, clip: float = 0.2, epochs: int = 4, c_ent: float = 0.01,
                 episode_length: int = 5, betas: tuple[float, float] = (0.9, 0.999), **options):
        super().__init__(alpha=lr, c_ent=c_ent, episode_length=episode_length, **options)
        self.clip, self.epochs, self.betas = clip, epochs, betas
        self.adam_m, self.adam_v, self.adam_t = np.zeros_like(self.theta), np.zeros_like(self.theta), 0

    def objective(self, theta: np.ndarray, xs: list[np.ndarray], masks: list[np.ndarray], actions: list[int],
                  advantages: np.ndarray, p_old: np.ndarray) -> tuple[float, np.ndarray]:
        """L(theta) and its gradient."""
        value, grad = 0.0, np.zeros_like(theta)
        for x, m, k, a, p in zip(xs, masks, actions, advantages, p_old):
            rho = self.mu(theta, x, m)[1][k] / p
            v, slope = clipped_surrogate(np.array(rho), np.array(a), self.clip)
            value += float(v)
            grad += float(slope) * rho * self.score(theta, x, m, k)
            if self.c_ent:
                h, dh = self.entropy_grad(theta, x, m)
                value += self.c_ent * h
                grad += self.c_ent * dh
        return value / len(xs), grad / len(xs)

    def _ascend(self, xs: list[np.ndarray], masks: list[np.ndarray], actions: list[int], advantages: np.ndarray,
                p_old: np.ndarray) -> None:
        b1, b2 = self.betas
        for _ in range(self.epochs):
            grad = self.objective(self.theta, xs, masks, actions, advantages, p_old)[1]
            self.adam_t += 1
            self.adam_m = b1 * self.adam_m + (1 - b1) * grad
            self.adam_v = b2 * self.adam_v + (1 - b2) * grad ** 2
            m_hat, v_hat = self.adam_m / (1 - b1 ** self.adam_t), self.adam_v / (1 - b2 ** self.adam_t)
            self.theta += self.alpha * m_hat / (np.sqrt(v_hat) + 1e-8)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "adam": {"m": self.adam_m.tolist(), "v": self.adam_v.tolist(),
                                                 "t": self.adam_t}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        adam = state["adam"]
        self.adam_m, self.adam_v = np.array(adam["m"], dtype=float), np.array(adam["v"], dtype=float)
        self.adam_t = int(adam["t"])
