"""One policy shared by many walkers through the store (RLCSP's MC-EMMA mode), with no update lost.

RLCSP let every agent read theta, apply its own gradient and write the result: the last writer won and the other
updates were lost. Here each update is a read-modify-write in one database transaction (``Store.update_params``):
the walker loads the newest shared state, adds the rewards it observed since, applies its episode's update on
top, and writes the next version. The energy standardisation and the reward statistics travel in the same state,
so they are shared too. Only the unfinished episode (``buffer``) stays local to each walker.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from rlcsp.policies.base import Policy, State, Transition

LOCAL_KEYS = ("buffer",)


class SharedPolicy(Policy):
    def __init__(self, policy: Policy, store, policy_id: str, run_id: int | None = None):
        self.policy = policy
        self.store = store
        self.policy_id = policy_id
        self.run_id = run_id
        self.name = policy.name
        self.episode_length = policy.episode_length
        self.version = 0
        self._new_rewards: list[float] = []
        self._new_steps = 0

    def _load(self, shared: dict[str, Any]) -> None:
        """Adopt the shared state, keeping this walker's unfinished episode and its not-yet-shared rewards."""
        local = self.policy.state_dict()
        merged = {**shared, **{k: local[k] for k in LOCAL_KEYS if k in local}}
        if "rewards" in merged and self._new_rewards:
            merged["rewards"] = {"history": list(shared["rewards"]["history"]) + self._new_rewards,
                                 "step": shared["rewards"]["step"] + self._new_steps}
        self.policy.load_state_dict(merged)

    def _pull(self) -> None:
        latest = self.store.latest_params(self.policy_id)
        if latest is not None and latest[0] != self.version:
            self._load(latest[1])
            self.version = latest[0]

    def begin(self, initial_energies: list[float]) -> None:
        """The first walker's population fixes the shared standardisation; later walkers adopt it."""
        if self.store.latest_params(self.policy_id) is None:
            self.policy.begin(initial_energies)
        else:
            self._pull()

    def probabilities(self, state: State, allowed: list[int]) -> dict[int, float]:
        self._pull()
        return self.policy.probabilities(state, allowed)

    def select(self, state: State, allowed: list[int], rng: np.random.Generator) -> int:
        self._pull()
        return self.policy.select(state, allowed, rng)

    def observe(self, transition: Transition) -> None:
        before = self.policy.state_dict().get("rewards")
        self.policy.observe(transition)
        after = self.policy.state_dict().get("rewards")
        if before is not None and after is not None:
            new = after["step"] - before["step"]  # each counted step appended one reward
            self._new_rewards += after["history"][len(after["history"]) - new:] if new else []
            self._new_steps += new

    def update(self) -> None:
        def apply(latest: dict[str, Any] | None) -> dict[str, Any]:
            if latest is not None:
                self._load(latest)
            self.policy.update()
            return {k: v for k, v in self.policy.state_dict().items() if k not in LOCAL_KEYS}

        self.version = self.store.update_params(self.policy_id, apply, self.run_id)
        self._new_rewards, self._new_steps = [], 0

    def state_dict(self) -> dict[str, Any]:
        return {"policy": self.policy.state_dict(), "version": self.version, "new_rewards": self._new_rewards,
                "new_steps": self._new_steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.policy.load_state_dict(state["policy"])
        self.version = state["version"]
        self._new_rewards, self._new_steps = list(state["new_rewards"]), state["new_steps"]
