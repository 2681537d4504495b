"""``npg``: natural policy gradient with a KL trust region (spec: policies.md "The learning rules").

Per episode of H = 5 steps (policy, rewards, baselines as in :mod:`rlcsp.policies.reinforce`):
    g = mean_t A_t grad log mu(a_t|s_t)
    F = mean_t E_{a ~ mu(.|s_t)}[grad log mu(a|s_t) grad log mu(a|s_t)^T] + damping I
    theta += sqrt(2 delta / g^T F^-1 g) F^-1 g
The Fisher matrix takes the expectation over the moves exactly (a sum over at most nine) instead of the one
sampled move's outer product: the same quantity in expectation, but exact.

The step length above comes from the quadratic model KL ~ 1/2 d^T F d. On five-state batches it misses the true
KL(mu_old || mu_new), averaged over the batch's states, by up to 30 % (weakly determined directions take long
steps), so by default (``line_search=True``) the length is then solved for, along the same direction, to make
that mean KL equal delta: TRPO's line search, solved rather than backtracked. ``line_search=False`` keeps the
quadratic length as written above.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import brentq
from scipy.special import rel_entr

from rlcsp.policies.reinforce import Reinforce


class NPG(Reinforce):
    name = "npg"

    def __init__(self, delta: float = 0.01, damping: float = 1e-3, line_search: bool = True,
                 episode_length: int = 5, **options):
        super().__init__(alpha=0.0, episode_length=episode_length, **options)  # delta sets the step size
        self.delta, self.damping, self.line_search = delta, damping, line_search

    def fisher(self, xs: list[np.ndarray], masks: list[np.ndarray]) -> np.ndarray:
        """mean over the states of E_a[score score^T] under the behaviour policy, plus damping I."""
        f = self.damping * np.eye(self.theta.size)
        for x, m in zip(xs, masks):
            mu = self.mu(self.theta, x, m)[1]
            for k in np.flatnonzero(m):
                s = self.score(self.theta, x, m, k).ravel()
                f += mu[k] * np.outer(s, s) / len(xs)
        return f

    def kl(self, theta: np.ndarray, xs: list[np.ndarray], masks: list[np.ndarray]) -> float:
        """mean over the states of KL(mu at the current theta || mu at ``theta``); q is floored at the smallest
        float so that a far probe of the line search gets a large finite KL, not inf."""
        total = 0.0
        for x, m in zip(xs, masks):
            p, q = self.mu(self.theta, x, m)[1][m], self.mu(theta, x, m)[1][m]
            total += float(rel_entr(p, np.maximum(q, np.finfo(float).tiny)).sum())
        return total / len(xs)

    def _ascend(self, xs: list[np.ndarray], masks: list[np.ndarray], actions: list[int], advantages: np.ndarray,
                p_old: np.ndarray) -> None:
        g = sum(a * self.score(self.theta, x, m, k).ravel()
                for x, m, k, a in zip(xs, masks, actions, advantages)) / len(xs)
        direction = np.linalg.solve(self.fisher(xs, masks), g).reshape(self.theta.shape)
        quadratic = float(g @ direction.ravel())
        if not (quadratic > 0 and np.isfinite(quadratic)):  # g = 0 (e.g. all advantages 0): nowhere to step
            return
        length = np.sqrt(2 * self.delta / quadratic)
        if self.line_search:
            length = self._kl_length(direction, length, xs, masks)
        self.theta += length * direction

    def _kl_length(self, direction: np.ndarray, length: float, xs: list[np.ndarray],
                   masks: list[np.ndarray]) -> float:
        """The length along ``direction`` where the mean KL reaches delta; the quadratic ``length`` if it never
        does (with epsilon > 0 the KL is bounded)."""
        def excess(s: float) -> float:
            return self.kl(self.theta + s * direction, xs, masks) - self.delta

        high = length
        for _ in range(30):
            if excess(high) >= 0:
                return brentq(excess, high / 2 if high > length else 0.0, high, rtol=1e-6)
            high *= 2
        return length
