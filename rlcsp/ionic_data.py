"""Ionic radii and coordination ranges (FUSE's bond table), derived in memory from Shannon's radii.

FUSE's ``bond_table_ionic`` stores, per ion, ``[CN_min, CN_max, mean radius]``: the smallest and largest
coordination number Shannon (Acta Cryst. A32, 751, 1976) lists for the ion and the mean of its ionic radii over
all listed coordinations and spin states, rounded to 1e-4 Å. pymatgen ships the same Shannon data, so the table is
rebuilt from it (nothing is written to disk, unlike FUSE's ``bondtable.npz``); the one ion where FUSE's table
differs from that derivation is overridden below, citing FUSE's value (fuse.md §6.3).
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache

from ase.data import atomic_numbers, chemical_symbols, covalent_radii

from rlcsp.exceptions import CompositionError

_ROMAN = {"I": 1, "II": 2, "III": 3, "IV": 4, "V": 5, "VI": 6, "VII": 7, "VIII": 8, "IX": 9, "X": 10,
          "XI": 11, "XII": 12, "XIV": 14}

# FUSE's bond table lists Ca2+ with CN_min 5 although Shannon gives no five-fold radius (fuse.md §6.3).
_FUSE_OVERRIDES: dict[tuple[str, int], tuple[int, int, float]] = {("Ca", 2): (5, 12, 1.1550)}


@dataclass(frozen=True)
class IonData:
    """One bond-table entry: the coordination range Shannon lists and the mean ionic radius (Å)."""

    cn_min: int
    cn_max: int
    radius: float


def ion_label(symbol: str, charge: int) -> str:
    """'Y3+' / 'O2-' style label used in messages."""
    return f"{symbol}{abs(charge)}{'+' if charge > 0 else '-'}"


@lru_cache(maxsize=1)
def _shannon_table() -> dict[tuple[str, int], IonData]:
    """All ions pymatgen has Shannon radii for, reduced to FUSE's [CN_min, CN_max, mean radius] form."""
    from pymatgen.core.periodic_table import Element

    table: dict[tuple[str, int], IonData] = {}
    for element in Element:
        for charge, by_cn in element.data.get("Shannon radii", {}).items():
            if not charge.lstrip("-").isdigit():  # pymatgen has one Eu entry without a charge
                continue
            radii = [entry["ionic_radius"] for spins in by_cn.values() for entry in spins.values()]
            # 'IVSQ' (square planar) and 'IIIPY'/'IVPY' (pyramidal) are four- and three-fold coordination
            cns = [_ROMAN[cn.removesuffix("SQ").removesuffix("PY")] for cn in by_cn]
            if radii:
                table[(element.symbol, int(charge))] = IonData(min(cns), max(cns), _mean_4dp(radii))
    for key, (cn_min, cn_max, radius) in _FUSE_OVERRIDES.items():
        table[key] = IonData(cn_min, cn_max, radius)
    return table


def _mean_4dp(values: list[float]) -> float:
    """Mean rounded half-up to 1e-4 in decimal, as FUSE's table has it (Ti4+: 0.56875 -> 0.5688)."""
    mean = sum(Decimal(str(v)) for v in values) / len(values)
    return float(mean.quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP))


def known_ions() -> list[str]:
    """Labels of every ion the table covers, sorted."""
    return sorted(ion_label(symbol, charge) for symbol, charge in _shannon_table())


def ion_data(symbol: str, charge: int) -> IonData:
    """Bond-table entry for one ion; CompositionError (listing the known ions) if there is none."""
    if symbol not in atomic_numbers:
        raise CompositionError(f"unknown element {symbol!r}")
    try:
        return _shannon_table()[(symbol, int(charge))]
    except KeyError:
        raise CompositionError(
            f"unknown ion {ion_label(symbol, charge)}: no Shannon radius; known ions: {', '.join(known_ions())}"
        ) from None


def atomic_radius(symbol: str) -> float:
    """Radius used for neutral systems.

    FUSE reads VESTA's atomic radii (e.g. O 0.74 Å), which are not shipped with any installed package; the
    covalent radii of Cordero et al. (Dalton Trans. 2008, 2832, via ASE; O 0.66 Å) stand in for them.
    """
    if symbol not in atomic_numbers or symbol == chemical_symbols[0]:
        raise CompositionError(f"unknown element {symbol!r}")
    return float(covalent_radii[atomic_numbers[symbol]])
