"""Metrics of generated fillings (paper a's Table 1 and its property columns), as plain functions.

A filling is the element symbol of every site of one skeleton. Paper a compares a policy's fillings of held-out
skeletons with the crystals they came from (per-site accuracy, and "similarity": the same element class, so a
policy that puts Sr where Ba was is half right), checks their compositions chemically (SMACT validity, through
:func:`rlcsp.design.chem_rules.smact_valid`) and against the training set (novelty), and, once a property predictor or
DFT has evaluated them, compares property distributions (EMD) and counts hits of the target window. Every
function returns a fraction in [0, 1] (NaN for no input) except :func:`emd` (eV or eV/atom).

Out-of-distribution design rate (paper a's term; its exact definition is not in the public code): the share of
generated crystals that are both novel (their composition is not in the training set) and inside the target
window, i.e. designs the data did not contain that still hit the target.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

# Paper a's nine element classes (crystal-design's variables.py), which cover its 88 elements.
CATEGORIES: dict[str, tuple[str, ...]] = {
    "transition metal": tuple("Sc Ti V Cr Mn Fe Co Ni Cu Zn Y Zr Nb Mo Tc Ru Rh Pd Ag Cd Hf Ta W Re Os Ir Pt Au "
                              "Hg".split()),
    "lanthanide": tuple("La Ce Pr Nd Pm Sm Eu Gd Tb Dy Ho Er Tm Yb Lu".split()),
    "actinide": tuple("Ac Th Pa U Np Pu".split()),
    "noble gas": ("He", "Ne", "Kr", "Xe"),
    "halogen": ("F", "Cl", "Br", "I"),
    "alkali metal": ("Li", "Na", "K", "Rb", "Cs"),
    "alkaline earth metal": ("Be", "Mg", "Ca", "Sr", "Ba"),
    "nonmetal": tuple("H B C N O Si P S As Se Te".split()),
    "post-transition metal": tuple("Al Ga Ge In Sn Sb Tl Pb Bi".split()),
}
_CATEGORY_OF = {el: name for name, elements in CATEGORIES.items() for el in elements}
Filling = Sequence[str]


def element_category(symbol: str) -> str:
    """Paper a's class of an element; elements outside its 88 (Ar, Po, ...) form the class "other"."""
    return _CATEGORY_OF.get(symbol, "other")


def _paired(generated: Sequence[Filling], true: Sequence[Filling]) -> list[tuple[str, str]]:
    if len(generated) != len(true) or any(len(g) != len(t) for g, t in zip(generated, true)):
        raise ValueError("generated and true fillings must cover the same skeletons and sites")
    return [(g, t) for gen, tru in zip(generated, true) for g, t in zip(gen, tru)]


def site_accuracy(generated: Sequence[Filling], true: Sequence[Filling]) -> float:
    """Share of all sites whose generated element is the true one."""
    pairs = _paired(generated, true)
    return sum(g == t for g, t in pairs) / len(pairs) if pairs else math.nan


def category_similarity(generated: Sequence[Filling], true: Sequence[Filling]) -> float:
    """Share of all sites whose generated element is in the true element's class."""
    pairs = _paired(generated, true)
    return sum(element_category(g) == element_category(t) for g, t in pairs) / len(pairs) if pairs else math.nan


def reduced_formula(filling: Filling) -> str:
    """The reduced formula of a filling (Fe2O4 and FeO2 are one composition), for novelty."""
    from pymatgen.core import Composition

    return Composition(" ".join(filling)).reduced_formula


def validity(generated: Sequence[Filling]) -> float:
    """Share of fillings whose composition is SMACT-valid (CDVAE's recipe, smact14 oxidation states)."""
    from rlcsp.design.chem_rules import smact_valid

    return float(np.mean([smact_valid(" ".join(f)) for f in generated])) if len(generated) else math.nan


def novel(generated: Sequence[Filling], training: set[str]) -> np.ndarray:
    """Whether each filling's reduced formula is absent from ``training`` (reduced formulas)."""
    return np.array([reduced_formula(f) not in training for f in generated], dtype=bool)


def novelty(generated: Sequence[Filling], training: set[str]) -> float:
    """Share of fillings whose composition is not among the training crystals'."""
    return float(novel(generated, training).mean()) if len(generated) else math.nan


def emd(generated: Sequence[float], reference: Sequence[float]) -> float:
    """Earth mover's (1-D Wasserstein) distance between two samples of a property, NaNs dropped."""
    from scipy.stats import wasserstein_distance

    a = np.asarray(generated, dtype=float)
    b = np.asarray(reference, dtype=float)
    a, b = a[~np.isnan(a)], b[~np.isnan(b)]
    return float(wasserstein_distance(a, b)) if len(a) and len(b) else math.nan


def in_window(values: Sequence[float], target: float, half_width: float = 0.25) -> np.ndarray:
    """Whether each value lies in target +- half_width (a NaN, e.g. a failed DFT call, does not)."""
    v = np.asarray(values, dtype=float)
    return np.abs(v - target) <= half_width  # NaN compares False


def window_rate(values: Sequence[float], target: float, half_width: float = 0.25) -> float:
    """Share of values in target +- half_width (paper a: p_hat +- 0.25 eV)."""
    hits = in_window(values, target, half_width)
    return float(hits.mean()) if len(hits) else math.nan


def ood_design_rate(values: Sequence[float], is_novel: Sequence[bool], target: float,
                    half_width: float = 0.25) -> float:
    """Share of generated crystals that are novel and inside the target window (see the module docstring)."""
    hits = in_window(values, target, half_width) & np.asarray(is_novel, dtype=bool)
    return float(hits.mean()) if len(hits) else math.nan


def dft_success_rate(outcomes: Sequence[str]) -> float:
    """Share of DFT calls whose outcome is ``ok`` (a gap was obtained)."""
    return sum(o == "ok" for o in outcomes) / len(outcomes) if len(outcomes) else math.nan
