"""Metrics of a list of generated compositions, in the layout of paper d's Table 1 (Pan, Karpovich, Olivetti).

Per agent: % charge neutral and % electronegativity balanced (the SMACT oracles of ``rlcsp.design.chem_rules``),
% unique (distinct reduced compositions, so Fe2O3 and Fe4O6 are one), the mean pairwise Element Mover's Distance (ElMD,
modified-Pettifor scale, as paper d's ElM2D) as a diversity measure, and the distribution of a predicted property
(mean, standard deviation, % within target +- window).
"""
from __future__ import annotations

import importlib.util
import itertools
import math
import sys
import types
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from rlcsp.design.chem_rules import charge_neutral, electronegativity_balanced, reduced_counts
from rlcsp.exceptions import CompositionError
from rlcsp.design.fill_metrics import in_window

TABLE1_COLUMNS = ("N", "% charge neutral", "% electronegativity balanced", "% unique", "mean pairwise ElMD",
                  "gap mean (eV)", "gap std (eV)", "% within target")


def _percent(flags: Sequence[bool]) -> float:
    if not flags:
        raise CompositionError("no compositions to score")
    return 100.0 * sum(flags) / len(flags)


def percent_charge_neutral(formulas: Sequence[Any]) -> float:
    return _percent([charge_neutral(f) for f in formulas])


def percent_electronegativity_balanced(formulas: Sequence[Any]) -> float:
    return _percent([electronegativity_balanced(f) for f in formulas])


def percent_unique(formulas: Sequence[Any]) -> float:
    """Distinct reduced compositions as a % of the list."""
    if not formulas:
        raise CompositionError("no compositions to score")
    return 100.0 * len({reduced_counts(f) for f in formulas}) / len(formulas)


def _elmd_class():
    # ElMD 0.5.x imports pkg_resources without using it, and setuptools >= 81 no longer ships that module.
    if "pkg_resources" not in sys.modules and importlib.util.find_spec("pkg_resources") is None:
        sys.modules.setdefault("pkg_resources", types.ModuleType("pkg_resources"))
    from ElMD import ElMD

    return ElMD


def _formula(composition: Any) -> str:
    return "".join(f"{symbol}{count}" for symbol, count in reduced_counts(composition))


def mean_pairwise_elmd(formulas: Sequence[Any]) -> float:
    """Mean ElMD over all unordered pairs of the list (identical formulas contribute 0); NaN below two formulas."""
    if len(formulas) < 2:
        return math.nan
    elmd = _elmd_class()
    keys = [_formula(f) for f in formulas]
    parsed = {k: elmd(k, metric="mod_petti") for k in set(keys)}
    pair_distance: dict[tuple[str, str], float] = {}
    total = 0.0
    for a, b in itertools.combinations(keys, 2):
        if a == b:
            continue
        pair = (a, b) if a < b else (b, a)
        if pair not in pair_distance:
            pair_distance[pair] = float(parsed[pair[0]].elmd(parsed[pair[1]]))
        total += pair_distance[pair]
    return total / (len(keys) * (len(keys) - 1) / 2)


def property_distribution(values: Sequence[float], target: float, window: float = 0.5) -> dict[str, float]:
    """Mean, standard deviation and % of values within ``target`` +- ``window``."""
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        raise CompositionError("no property values to score")
    return {"mean": float(values.mean()), "std": float(values.std()),
            "percent_within": float(100.0 * in_window(values, target, window).mean())}


def composition_metrics(formulas: Sequence[Any], gaps: Sequence[float], target: float,
                        window: float = 0.5) -> dict[str, float]:
    """Every Table 1 number of one agent's compositions and their predicted gaps."""
    gap = property_distribution(gaps, target, window)
    return {"N": len(formulas), "% charge neutral": percent_charge_neutral(formulas),
            "% electronegativity balanced": percent_electronegativity_balanced(formulas),
            "% unique": percent_unique(formulas), "mean pairwise ElMD": mean_pairwise_elmd(formulas),
            "gap mean (eV)": gap["mean"], "gap std (eV)": gap["std"], "% within target": gap["percent_within"]}


def table1_markdown(rows: Mapping[str, Mapping[str, float]], target: float, window: float = 0.5) -> str:
    """A markdown table, one row per agent, columns as paper d's Table 1 plus the gap distribution."""
    header = [c if c != "% within target" else f"% gap in {target:g} +- {window:g} eV" for c in TABLE1_COLUMNS]
    lines = ["| agent | " + " | ".join(header) + " |", "|---" * (len(header) + 1) + "|"]
    for agent, metrics in rows.items():
        cells = [str(int(metrics["N"]))] + [f"{metrics[c]:.1f}" for c in TABLE1_COLUMNS[1:4]] + \
                [f"{metrics[c]:.2f}" for c in TABLE1_COLUMNS[4:7]] + [f"{metrics[TABLE1_COLUMNS[7]]:.1f}"]
        lines.append(f"| {agent} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
