"""A synthetic one-state bandit over the nine moves, played through the full select/observe/update loop."""
from __future__ import annotations

import numpy as np

from rlcsp.policies.base import ACTIONS, Policy, State, Transition

INITIAL = [float(e) for e in np.linspace(-2.0, -1.0, 21)]  # mu0 = -1.5, so z(STATE) = -1 / sd0 * 0.3
STATE = State(energy=-1.8, n_atoms=10, max_atoms=40, steps_since_downhill=0, temperature=0.02)
BEST = 6
GAINS = {a: (0.15 if a == BEST else -0.05 * (i % 3)) for i, a in enumerate(ACTIONS)}  # eV/atom per move
NOISE = 0.05


def pull(action: int, rng: np.random.Generator) -> Transition:
    """The move's transition: the energy drops by its gain, plus noise."""
    e_new = STATE.energy - GAINS[action] + rng.normal(0.0, NOISE)
    return Transition(STATE, action, STATE, e_new, "accepted", True, 1)


def play(policy: Policy, steps: int, seed: int, allowed: list[int] = list(ACTIONS)) -> Policy:
    """Run ``steps`` bandit steps as the search loop would, updating at episode ends."""
    rng = np.random.default_rng(seed)
    for i in range(steps):
        policy.observe(pull(policy.select(STATE, allowed, rng), rng))
        if (i + 1) % policy.episode_length == 0:
            policy.update()
    return policy
