"""rlcsp: crystal structure prediction in the style of FUSE and ASE, with reinforcement-learning move selection.

Start here::

    import rlcsp
    result = rlcsp.search("inputs/y2o3.py", policy="uniform", seed=3, budget=300)
    result.best_energy, result.gm_relaxation, result.best_atoms   # eV/atom, relaxation (or None), ase.Atoms

    config = rlcsp.load_script("inputs/y2ti2o7.py")               # an input script's CONFIG dict
    calc = rlcsp.get_calculator("lammps-buckingham", library="lib2.lib")   # any registered ASE calculator
    relaxer = rlcsp.get_relaxer("lammps-buckingham")              # Relaxer.relax(list[Atoms])

Subpackages:
    rlcsp.csp           the structure search: genomes, checks, moves' context, the basin-hopping loop, runs, compare
    rlcsp.design        composition design: skeleton filling, its environment, rewards, gap models, offline agents
    rlcsp.calculators   energy engines and relaxers (LAMMPS Buckingham, GULP, CHGNet, Quantum ESPRESSO)
    rlcsp.actions       FUSE's nine moves
    rlcsp.policies      move-selection policies (FUSE's Original and Uniform, REINFORCE, NPG, PPO) and agents
    rlcsp.db            storage (SQLite, MySQL/MariaDB)
    rlcsp.inputs        input scripts, potential libraries and reference structures

The command line (``rlcsp --help``) runs the same things from input scripts.
"""
from __future__ import annotations

from importlib import import_module

__version__ = "0.1.0"

_EXPORTS = {
    "search": "rlcsp.csp.run",
    "RunResult": "rlcsp.csp.run",
    "Search": "rlcsp.csp.search",
    "SearchConfig": "rlcsp.csp.config",
    "load_script": "rlcsp.csp.config",
    "make_config": "rlcsp.csp.config",
    "get_calculator": "rlcsp.calculators",
    "get_relaxer": "rlcsp.calculators",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    """The front-door names load on first use, so ``import rlcsp`` (and ``rlcsp --help``) stays light."""
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'rlcsp' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
