"""Move-selection policies by name (entry-point group ``rlcsp.policies``).

A learning policy takes a baseline either as an option or after a colon: ``get_policy('ppo', baseline='value')``
and ``get_policy('ppo:value')`` are the same policy.
"""
from __future__ import annotations

import inspect
from importlib.metadata import entry_points
from typing import Callable

from rlcsp.policies.base import ACTIONS, Policy, State, Transition
from rlcsp.policies.fixed import original, random, uniform
from rlcsp.policies.npg import NPG
from rlcsp.policies.ppo import PPO
from rlcsp.policies.reinforce import Reinforce
from rlcsp.policies.reinforce_rlcsp import ReinforceRLCSP
from rlcsp.exceptions import ConfigError, UnknownName

__all__ = ["ACTIONS", "Policy", "State", "Transition", "get_policy", "available_policies"]

BUILTIN: dict[str, Callable[..., Policy]] = {"original": original, "uniform": uniform, "random": random,
                                             "reinforce-rlcsp": ReinforceRLCSP, "reinforce": Reinforce,
                                             "npg": NPG, "ppo": PPO}


def _factories() -> dict[str, Callable[..., Policy]]:
    factories = {ep.name: ep.load() for ep in entry_points(group="rlcsp.policies")}
    for name, factory in BUILTIN.items():
        factories.setdefault(name, factory)
    return factories


def available_policies() -> list[str]:
    return sorted(_factories())


def _takes_baseline(factory: Callable[..., Policy]) -> bool:
    """Reinforce and its subclasses (npg, ppo) take a baseline; so does any factory with a baseline argument."""
    if isinstance(factory, type) and issubclass(factory, Reinforce):
        return True
    return "baseline" in inspect.signature(factory).parameters


def melt_option(name: str) -> bool:
    """Whether a registered policy takes the search's ``melt_threshold`` (FUSE's fixed policies switch weights)."""
    factory = _factories().get(name.partition(":")[0])
    return factory is not None and "melt_threshold" in inspect.signature(factory).parameters


def get_policy(name: str | Policy, **options) -> Policy:
    """A policy by registered name (or an instance, returned as is), e.g. ``get_policy('uniform')`` or
    ``get_policy('ppo:value')``."""
    if isinstance(name, Policy):
        return name
    name, _, baseline = name.partition(":")
    factories = _factories()
    if name not in factories:
        raise UnknownName("policy", name, list(factories))
    if baseline:
        if "baseline" in options and options["baseline"] != baseline:
            raise ConfigError(f"policy {name!r}: baseline {baseline!r} in the name but {options['baseline']!r} "
                              "in the options")
        if not _takes_baseline(factories[name]):
            raise ConfigError(f"policy {name!r} takes no baseline")
        options = {**options, "baseline": baseline}
    return factories[name](**options)
