"""The engine's ASE face: :class:`EspressoCalculator` for single points, :class:`EspressoRelaxer` for vc-relax.

Both take the options of ``get_calculator('espresso', ...)`` and ``get_relaxer('espresso', ...)``, split
into settings (what is hashed), a runner (how pw.x runs) and a cache, and both go through
:func:`~rlcsp.calculators.espresso.runner.run_dft`, so they share its retries, deadline and cache records.
"""
from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import fields, replace
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes

from rlcsp.calculators.espresso.cache import DftCache
from rlcsp.calculators.espresso.inputs import DftSettings, MissingPseudopotential
from rlcsp.calculators.espresso.results import DftFailed, DftOutcome, DftResult, PwNotFound
from rlcsp.calculators.espresso.runner import PwRunner, run_dft
from rlcsp.calculators.relax import AseRelaxer, FailureReason, Relaxer, RelaxResult, Stage, failed, min_distance
from rlcsp.exceptions import ConfigError, UnknownName


# ------------------------------------------------------------------------------------- ASE calculator


_SETTINGS = {f.name for f in fields(DftSettings)}
_RUNNER = {f.name for f in fields(PwRunner)} - {"launches"}


def split_options(options: Mapping[str, Any]) -> tuple[DftSettings, PwRunner, DftCache | None]:
    """Engine options (as ``get_calculator('espresso', **options)`` takes them) into settings, runner, cache.

    ``settings=`` gives a whole :class:`DftSettings` (or ``'seed_papers'``); its fields can also be passed
    one by one, as can :class:`PwRunner`'s, and ``cache=``.
    """
    options = dict(options)
    base = options.pop("settings", None)
    cache = options.pop("cache", None)
    unknown = set(options) - _SETTINGS - _RUNNER
    if unknown:
        raise UnknownName("espresso option", sorted(unknown)[0], sorted(_SETTINGS | _RUNNER | {"settings", "cache"}))
    if isinstance(base, str):
        if base != "seed_papers":
            raise UnknownName("espresso settings preset", base, ["seed_papers"])
        base = DftSettings.seed_papers()
    settings = replace(base or DftSettings(), **{k: v for k, v in options.items() if k in _SETTINGS})
    runner = PwRunner(**{k: v for k, v in options.items() if k in _RUNNER})
    return settings, runner, cache


class EspressoCalculator(Calculator):
    """ASE calculator over :func:`run_dft`: energy, forces, stress, and ``results['band_gap']`` (eV).

    A failed request raises :class:`DftFailed` (``PwNotFound`` when pw.x is missing), whose ``result``
    carries the classification; ``last_result`` keeps the latest :class:`DftResult` either way.
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress", "band_gap"]

    def __init__(self, settings: DftSettings | None = None, runner: PwRunner | None = None,
                 cache: DftCache | None = None, **kwargs):
        super().__init__(**kwargs)
        self.settings = settings or DftSettings()
        self.runner = runner or PwRunner()
        self.cache = cache
        self.last_result: DftResult | None = None

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        result = run_dft(self.atoms, self.settings, runner=self.runner, cache=self.cache)
        self.last_result = result
        if result.outcome is DftOutcome.PW_NOT_FOUND:
            raise PwNotFound(result)
        if not result.ok:
            raise DftFailed(result)
        self.results = result.ase_results()


def espresso_calculator(**options) -> EspressoCalculator:
    """The engine's calculator; checks up front that pw.x can run."""
    settings, runner, cache = split_options(options)
    runner.pw_command()
    return EspressoCalculator(settings, runner, cache)


# ------------------------------------------------------------------------------------------ relaxation


_RELAX_FAILURES = {DftOutcome.TIMEOUT: FailureReason.TIMEOUT, DftOutcome.INVALID_STRUCTURE:
                   FailureReason.INVALID_STRUCTURE, DftOutcome.RELAX_NOT_CONVERGED: FailureReason.NOT_CONVERGED}


class EspressoRelaxer(Relaxer):
    """QE's own BFGS ``vc-relax`` at ``press_kbar``; the final structure and energy are read with ase.io.

    The structure and energy returned are those of pw.x's final SCF at the relaxed cell (fresh G-vectors).
    Thresholds are QE's: ``forc_conv_thr`` in Ry/bohr, ``etot_conv_thr`` in Ry, ``press_conv_thr`` in kbar.
    """

    name = "espresso"

    def __init__(self, settings: DftSettings | None = None, runner: PwRunner | None = None,
                 cache: DftCache | None = None, *, nstep: int = 50, press_kbar: float = 0.0,
                 forc_conv_thr: float = 1e-3, etot_conv_thr: float = 1e-5, press_conv_thr: float = 0.5,
                 min_distance: float = 0.5):
        self.settings = settings or DftSettings()
        self.runner = runner or PwRunner()
        self.runner.pw_command()
        self.cache = cache
        self.relax_data = {"nstep": nstep, "press": press_kbar, "forc_conv_thr": forc_conv_thr,
                           "etot_conv_thr": etot_conv_thr, "press_conv_thr": press_conv_thr,
                           "ion_dynamics": "bfgs", "cell_dynamics": "bfgs"}
        self.min_distance = min_distance

    def relax_one(self, atoms: Atoms) -> RelaxResult:
        started = time.perf_counter()
        if len(atoms) and min_distance(atoms) < self.min_distance:
            return failed(atoms, FailureReason.TOO_CLOSE, f"atoms closer than {self.min_distance} A; "
                                                          "refusing to relax", started)
        settings = replace(self.settings, input_data={**self.relax_data, **self.settings.input_data})
        result = run_dft(atoms, settings, runner=self.runner, cache=self.cache, calculation="vc-relax")
        if result.outcome is DftOutcome.MISSING_PSEUDOPOTENTIAL:
            raise MissingPseudopotential(result.message)
        if result.atoms is None or result.energy is None:
            reason = _RELAX_FAILURES.get(result.outcome, FailureReason.ENGINE_ERROR)
            return failed(atoms, reason, f"{result.outcome.value}: {result.message}", started)
        final = atoms.copy()
        final.calc = None
        final.set_cell(result.atoms.cell, scale_atoms=False)
        final.set_scaled_positions(result.atoms.get_scaled_positions(wrap=False))
        extra = {"band_gap": result.band_gap, "key": result.key, "retries": result.retries}
        return RelaxResult(
            atoms=final, energy_per_atom=result.energy / len(atoms), converged=result.ok, steps=result.steps,
            wall_s=time.perf_counter() - started,
            failure=None if result.ok else FailureReason.NOT_CONVERGED, message=result.message,
            fmax=float(np.abs(result.forces).max()) if result.forces is not None else None,
            max_stress=float(np.abs(result.stress).max()) if result.stress is not None else None, extra=extra)


def espresso_relaxer(relaxer: str = "espresso", stages: Iterable[Stage] | None = None, timeout_s: float = 3600.0,
                     **options) -> Relaxer:
    """QE's vc-relax by default; ``relaxer='ase'`` runs ASE's optimisers on :class:`EspressoCalculator`.

    vc-relax thresholds (``nstep``, ``press_kbar``, ...) are taken out of ``options`` before the engine
    options; ``timeout_s`` bounds each vc-relax (or, with ASE, the whole relaxation and each SCF).
    """
    relax_keys = ("nstep", "press_kbar", "forc_conv_thr", "etot_conv_thr", "press_conv_thr", "min_distance")
    relax_kwargs = {k: options.pop(k) for k in relax_keys if k in options}
    if relaxer == "espresso":
        settings, runner, cache = split_options({**options, "timeout_s": timeout_s})
        return EspressoRelaxer(settings, runner, cache, **relax_kwargs)
    if relaxer == "ase":
        if set(relax_kwargs) - {"min_distance"}:
            raise ConfigError(f"{', '.join(sorted(set(relax_kwargs) - {'min_distance'}))} only apply to vc-relax "
                              "(relaxer='espresso'); ASE's optimisers take stages=")
        kwargs = {"stages": tuple(stages)} if stages else {}
        return AseRelaxer(espresso_calculator(**options, timeout_s=timeout_s), timeout_s=timeout_s,
                          **kwargs, **relax_kwargs)
    raise UnknownName("Quantum ESPRESSO relaxer", relaxer, ["espresso", "ase"])
