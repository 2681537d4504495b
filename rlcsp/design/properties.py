"""Properties of generated crystals for ``rlcsp fill-eval``: gaps and formation energies from the gap model and
CHGNet or from Quantum ESPRESSO, and the metrics that compare them with held-out crystals (paper a's columns)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from rlcsp.design.fill_metrics import dft_success_rate, emd, ood_design_rate, window_rate


@dataclass
class Properties:
    """Band gaps (eV) and formation energies (eV/atom) of crystals; NaN where a calculation failed."""

    gap: np.ndarray
    e_form: np.ndarray | None = None
    outcomes: list[str] | None = None  # DFT outcome of each crystal


class ModelProperties:
    """The gap model's gap, and CHGNet's formation energy from the energy of the same forward pass."""

    def __init__(self, model, formation: bool = True):
        from rlcsp.design.formation import ChgnetFormation

        self.model = model
        self.formation = ChgnetFormation() if formation else None

    def __call__(self, structures: list) -> Properties:
        gap = np.asarray(self.model.predict(structures), dtype=float)
        if self.formation is None:
            return Properties(gap)
        energies = self.model.features.energies(structures)
        e_form = np.array([self.formation.from_energy(a.get_chemical_symbols(), e)
                           for a, e in zip(structures, energies)])
        return Properties(gap, e_form)


class DftProperties:
    """Quantum ESPRESSO gaps through a :class:`rlcsp.design.rewards.DftGapEvaluator` (store-cached, logged)."""

    def __init__(self, evaluator):
        self.evaluator = evaluator

    def __call__(self, structures: list) -> Properties:
        results = [self.evaluator.dft(atoms, episode=0) for atoms in structures]
        gap = [r.band_gap if r.ok and r.band_gap is not None and not r.gap_approximate else math.nan
               for r in results]
        return Properties(np.array(gap, dtype=float), outcomes=[r.outcome.value for r in results])


def property_metrics(generated: Properties, reference: Properties, is_novel: np.ndarray, target: float,
                     prefix: str = "") -> dict[str, float]:
    """% in window, OOD design rate and EMDs of one agent's crystals against the held-out crystals."""
    out = {f"{prefix}in_window": window_rate(generated.gap, target),
           f"{prefix}ood_design": ood_design_rate(generated.gap, is_novel[:len(generated.gap)], target),
           f"{prefix}emd_gap": emd(generated.gap, reference.gap),
           f"{prefix}mean_gap": float(np.nanmean(generated.gap)) if np.isfinite(generated.gap).any() else math.nan}
    if generated.e_form is not None and reference.e_form is not None:
        out[f"{prefix}emd_e_form"] = emd(generated.e_form, reference.e_form)
    if generated.outcomes is not None:
        out[f"{prefix}success"] = dft_success_rate(generated.outcomes)
    return out
