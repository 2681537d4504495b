"""Chemistry rules for generated compositions: SMACT charge neutrality and Pauling electronegativity.

Three questions about one composition (composition.md §3, §6):

- ``charge_neutral``: some assignment of SMACT oxidation states makes the formula neutral (paper d's first oracle);
- ``electronegativity_balanced``: some *charge-neutral* assignment also puts every cation below every anion in
  Pauling electronegativity (paper d's second oracle, which SMACT evaluates only on neutral assignments);
- ``smact_valid``: the CDVAE-era validity recipe that papers a-c report: one element, or only metals (an alloy),
  counts as valid; otherwise the electronegativity test above decides.

All three use SMACT's original ``smact14`` oxidation-state table (the one smact 2.x called ``oxidation_states``),
not smact 4's ICSD-24 default, so numbers compare with the CDVAE-era papers. As there, a missing Pauling
electronegativity passes the Pauling test (old SMACT raised a TypeError that the recipe counted as a pass), and
counts are reduced by their gcd before the neutrality check.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from functools import lru_cache

import smact
from pymatgen.core import Composition, Element
from smact.screening import pauling_test

from rlcsp.exceptions import CompositionError, UnknownElement

CompositionLike = Composition | str | Mapping[str, float]


def integer_counts(composition: CompositionLike) -> dict[str, int]:
    """``{symbol: positive integer count}`` of a pymatgen Composition, a formula string or a dict.

    Zero counts are dropped (a count of 0 means the element is absent); fractional, negative or unknown entries
    raise, because SMACT's neutrality test is defined on integer formulas only.
    """
    if isinstance(composition, Composition):
        amounts = composition.get_el_amt_dict()
    elif isinstance(composition, str):
        try:
            amounts = Composition(composition).get_el_amt_dict()
        except (ValueError, KeyError) as exc:
            raise CompositionError(f"cannot read formula {composition!r}: {exc}") from exc
    elif isinstance(composition, Mapping):
        amounts = dict(composition)
    else:
        raise CompositionError(f"expected a Composition, formula string or dict, got {type(composition).__name__}")
    counts: dict[str, int] = {}
    for symbol, amount in amounts.items():
        if not isinstance(symbol, str) or not Element.is_valid_symbol(symbol):
            raise UnknownElement(f"unknown element {symbol!r} in {composition!r}")
        if amount < 0 or abs(amount - round(amount)) > 1e-6:
            raise CompositionError(f"{symbol}: count must be a non-negative integer, got {amount!r}")
        if round(amount) > 0:
            counts[symbol] = counts.get(symbol, 0) + int(round(amount))
    if not counts:
        raise CompositionError(f"empty composition {composition!r}")
    return counts


@lru_cache(maxsize=None)
def _smact_element(symbol: str) -> smact.Element:
    try:
        return smact.Element(symbol)
    except KeyError as exc:
        raise UnknownElement(f"SMACT has no data for element {symbol!r}") from exc


def reduced_counts(composition: CompositionLike) -> tuple[tuple[str, int], ...]:
    """Sorted, gcd-reduced (symbol, count) pairs: one key per chemical composition, and what SMACT is given."""
    counts = integer_counts(composition)
    gcd = math.gcd(*counts.values())
    return tuple(sorted((symbol, count // gcd) for symbol, count in counts.items()))


@lru_cache(maxsize=200_000)
def _oracles(key: tuple[tuple[str, int], ...]) -> tuple[bool, bool]:
    """(charge neutral, electronegativity balanced) of a reduced formula, by enumerating smact14 assignments."""
    if len(key) == 1:
        return True, True  # an element: every atom at oxidation state 0
    elements = [_smact_element(symbol) for symbol, _ in key]
    states = [element.oxidation_states_smact14 for element in elements]
    if any(not s for s in states):
        return False, False  # a noble gas (no oxidation states) cannot be part of an ionic formula
    stoichs = [(count,) for _, count in key]
    threshold = max(count for _, count in key)
    enegs = [element.pauling_eneg for element in elements]
    missing_eneg = any(e is None for e in enegs)
    neutral = False
    for ox_states in itertools.product(*states):
        if smact.neutral_ratios(ox_states, stoichs=stoichs, threshold=threshold):
            neutral = True
            if missing_eneg or pauling_test(ox_states, enegs):
                return True, True
    return neutral, False


def charge_neutral(composition: CompositionLike) -> bool:
    """True when some combination of smact14 oxidation states balances the formula (an element counts as neutral)."""
    return _oracles(reduced_counts(composition))[0]


def electronegativity_balanced(composition: CompositionLike) -> bool:
    """True when a charge-neutral assignment exists whose cations are all less electronegative than its anions."""
    return _oracles(reduced_counts(composition))[1]


def smact_valid(composition: CompositionLike) -> bool:
    """CDVAE's ``smact_validity`` (Pauling test on, alloys included) on the smact14 oxidation states."""
    key = reduced_counts(composition)
    if len(key) == 1 or all(symbol in smact.metals for symbol, _ in key):
        return True
    return _oracles(key)[1]


# Electron counts of closed-shell ions: noble-gas cores, with a filled d shell (d10) or an inert s pair (s2).
CLOSED_SHELLS = frozenset({0, 2, 10, 18, 36, 54, 86, 28, 46, 78, 4, 12, 30, 48, 80})


@lru_cache(maxsize=None)
def common_states(symbol: str, sign: int) -> tuple[int, ...]:
    """pymatgen's common oxidation states of an element with the sign of a site's role (+1 cation, -1 anion).

    A main-group (s- or p-block) element keeps only the states of closed-shell ions, the ions its salts hold
    (C⁴⁻, S²⁻, Cl⁵⁺, Sn²⁺, not C⁻ or Cl⁺), so a filling of them has an even electron count and a DFT run with fixed
    occupations can answer; d- and f-block ions keep every common state.
    """
    element = Element(symbol)
    states = [s for s in element.common_oxidation_states if s * sign > 0]
    if element.block in ("s", "p"):
        states = [s for s in states if element.Z - s in CLOSED_SHELLS]
    return tuple(states)


def takes_role(symbol: str, sign: int) -> bool:
    """Whether an element belongs on a cation site (+1: a metal or metalloid with a positive common state) or an
    anion site (-1: a non-metal or metalloid with a negative one), as a chemist fills a known structure type."""
    element = Element(symbol)
    kind = element.is_metal or element.is_metalloid if sign > 0 else not element.is_metal
    return kind and bool(common_states(symbol, sign))


def neutral_under_common_states(counts: Mapping[str, int], signs: Mapping[str, int]) -> bool:
    """Whether one common oxidation state per element, of the sign its sites require, balances ``counts``."""
    choices = [common_states(el, signs[el]) for el in counts]
    if any(not c for c in choices):
        return False
    return any(sum(n * s for n, s in zip(counts.values(), states)) == 0 for states in itertools.product(*choices))


def site_roles(species: list[str] | tuple[str, ...]) -> list[int]:
    """+1 (cation) or -1 (anion) for each site of a known crystal, from the likeliest oxidation states of its
    formula (pymatgen's guess, which uses ICSD statistics); a formula without a guess raises CompositionError."""
    counts: dict[str, int] = {}
    for symbol in species:
        counts[symbol] = counts.get(symbol, 0) + 1
    guesses = Composition(counts).oxi_state_guesses(max_sites=-50)
    if not guesses:
        raise CompositionError(f"no oxidation states balance {Composition(counts).formula}, so its sites get no "
                               "cation and anion roles; fill it with chemistry=False (rlcsp fill --no-chemistry)")
    best = guesses[0]
    if any(best[s] == 0 for s in counts):
        raise CompositionError(f"{Composition(counts).formula}: a site of oxidation state 0 has no role; fill it "
                               "with chemistry=False (rlcsp fill --no-chemistry)")
    return [1 if best[s] > 0 else -1 for s in species]
