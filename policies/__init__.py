"""Move-selection policies by name (entry-point group ``rlcsp.policies``)."""
from __future__ import annotations

from importlib.metadata import entry_points
from typing import Callable

from policies.base import ACTIONS, Policy, State, Transition
from policies.fixed import original, random, uniform
from rlcsp.exceptions import UnknownName

__all__ = ["ACTIONS", "Policy", "State", "Transition", "get_policy", "available_policies"]

BUILTIN: dict[str, Callable[..., Policy]] = {"original": original, "uniform": uniform, "random": random}


def _factories() -> dict[str, Callable[..., Policy]]:
    factories = {ep.name: ep.load() for ep in entry_points(group="rlcsp.policies")}
    for name, factory in BUILTIN.items():
        factories.setdefault(name, factory)
    return factories


def available_policies() -> list[str]:
    return sorted(_factories())


def get_policy(name: str | Policy, **options) -> Policy:
    """A policy by registered name (or an instance, returned as is), e.g. ``get_policy('uniform')``."""
    if isinstance(name, Policy):
        return name
    factories = _factories()
    if name not in factories:
        raise UnknownName("policy", name, list(factories))
    return factories[name](**options)
