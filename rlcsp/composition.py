"""The composition being searched and everything FUSE derives from it (fuse.md §1.5, §1.7)."""
from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

from ase.data import atomic_masses, atomic_numbers

from rlcsp.exceptions import CompositionError
from rlcsp.ionic_data import atomic_radius, ion_data, ion_label

_FORMULA_TOKEN = re.compile(r"([A-Z][a-z]?)(\d*)")


@dataclass(frozen=True)
class BondRule:
    """Bond-check rule for one cation: anions within ``cutoff`` count, and a count outside [cn_min, cn_max] is wrong."""

    cutoff: float
    cn_min: int
    cn_max: int


@dataclass(frozen=True, init=False)
class Composition:
    """One formula unit, ionic (each element with a formal charge) or neutral.

    Built from FUSE's input format, ``Composition({'Y': [2, 3], 'O': [3, -2]})`` or ``{'Y': [2]}``.
    Element order is kept: it fixes the order of ``fu`` and hence of generated strings.
    """

    symbols: tuple[str, ...]
    counts: tuple[int, ...]
    oxidation: tuple[int, ...] | None

    def __init__(self, spec: Mapping[str, Sequence[int]]):
        if not spec:
            raise CompositionError("empty composition")
        symbols, counts, charges = [], [], []
        for symbol, values in spec.items():
            values = list(values)
            if len(values) not in (1, 2):
                raise CompositionError(f"{symbol}: expected [count] or [count, charge], got {values!r}")
            count = values[0]
            if int(count) != count or count < 1:
                raise CompositionError(f"{symbol}: count must be a positive integer, got {count!r}")
            symbols.append(symbol)
            counts.append(int(count))
            charges.append(values[1] if len(values) == 2 else None)
        if any(c is None for c in charges) and any(c is not None for c in charges):
            raise CompositionError("give a charge for every element (ionic) or for none (neutral)")
        ionic = charges[0] is not None
        object.__setattr__(self, "symbols", tuple(symbols))
        object.__setattr__(self, "counts", tuple(counts))
        object.__setattr__(self, "oxidation", tuple(int(c) for c in charges) if ionic else None)
        self._validate()

    @classmethod
    def from_formula(cls, formula: str, oxidation: Mapping[str, int] | None = None) -> Composition:
        """Parse 'Y2O3' (element order kept); ``oxidation`` maps every element to its formal charge."""
        tokens = _FORMULA_TOKEN.findall(formula)
        if not tokens or "".join(s + n for s, n in tokens) != formula:
            raise CompositionError(f"cannot parse formula {formula!r}")
        counts: dict[str, int] = {}
        for symbol, n in tokens:
            counts[symbol] = counts.get(symbol, 0) + (int(n) if n else 1)
        if oxidation is None:
            return cls({s: [n] for s, n in counts.items()})
        missing = sorted(set(counts) - set(oxidation))
        if missing:
            raise CompositionError(f"no oxidation state given for {', '.join(missing)}")
        return cls({s: [n, oxidation[s]] for s, n in counts.items()})

    def _validate(self) -> None:
        for symbol in self.symbols:
            if symbol not in atomic_numbers or atomic_numbers[symbol] == 0:
                raise CompositionError(f"unknown element {symbol!r}")
        if len(set(self.symbols)) != len(self.symbols):
            raise CompositionError("an element appears twice")
        if self.oxidation is None:
            for symbol in self.symbols:
                atomic_radius(symbol)
            return
        if any(c == 0 for c in self.oxidation):
            raise CompositionError("a charge of 0 is not an ion; use the neutral format for neutral systems")
        total = sum(n * c for n, c in zip(self.counts, self.oxidation))
        if total != 0:
            raise CompositionError(f"{self.label} is not charge-neutral: total charge {total:+d} per formula unit")
        for symbol, charge in zip(self.symbols, self.oxidation):
            ion_data(symbol, charge)

    def to_dict(self) -> dict[str, list[int]]:
        """The input format again (JSON-safe), for storage and resume."""
        if self.oxidation is None:
            return {s: [n] for s, n in zip(self.symbols, self.counts)}
        return {s: [n, c] for s, n, c in zip(self.symbols, self.counts, self.oxidation)}

    @property
    def system_type(self) -> str:
        return "neutral" if self.oxidation is None else "ionic"

    @property
    def label(self) -> str:
        return "".join(s + (str(n) if n > 1 else "") for s, n in zip(self.symbols, self.counts))

    @property
    def fu(self) -> list[int]:
        """Atomic numbers of one formula unit in key order, with repeats (FUSE's ``fu``)."""
        return [atomic_numbers[s] for s, n in zip(self.symbols, self.counts) for _ in range(n)]

    @property
    def atoms_per_fu(self) -> int:
        return sum(self.counts)

    @property
    def charges(self) -> dict[int, int]:
        """Formal charge per atomic number (empty for neutral systems)."""
        if self.oxidation is None:
            return {}
        return {atomic_numbers[s]: c for s, c in zip(self.symbols, self.oxidation)}

    @property
    def cations(self) -> list[int]:
        return [z for z, c in self.charges.items() if c > 0]

    @property
    def anions(self) -> list[int]:
        return [z for z, c in self.charges.items() if c < 0]

    def radius(self, z: int) -> float:
        """Mean radius (Å) of the species with atomic number ``z`` in this composition."""
        symbol = self.symbols[[atomic_numbers[s] for s in self.symbols].index(z)]
        if self.oxidation is None:
            return atomic_radius(symbol)
        return ion_data(symbol, self.charges[z]).radius

    def ap(self, ap_scale: float = 1.0) -> float:
        """Sub-module edge (Å): twice the mean cation plus twice the mean anion radius, over fu sites."""
        return round(self._edge * ap_scale, 4)

    @cached_property
    def _edge(self) -> float:
        """``ap`` unrounded, once per composition: every random structure reads it."""
        fu = self.fu
        if self.oxidation is None:
            return 4 * sum(self.radius(z) for z in fu) / len(fu)
        cat = [self.radius(z) for z in fu if self.charges[z] > 0]
        an = [self.radius(z) for z in fu if self.charges[z] < 0]
        return 2 * sum(cat) / len(cat) + 2 * sum(an) / len(an)

    @cached_property
    def ideal_density(self) -> float:
        """Formula mass over the summed ionic sphere volumes (amu/Å³): the check's upper density bound."""
        fu = self.fu
        mass = sum(atomic_masses[z] for z in fu)
        volume = sum(4.0 / 3.0 * math.pi * self.radius(z) ** 3 for z in fu)
        return float(mass / volume)

    @cached_property
    def bond_rules(self) -> dict[int, BondRule]:
        """Per cation: cutoff 1.25·(r_cation + largest anion radius), allowed CN [CN_min − 1, CN_max + 1]."""
        if self.oxidation is None:
            return {}
        r_anion = max(self.radius(z) for z in self.anions)
        rules = {}
        for symbol, charge in zip(self.symbols, self.oxidation):
            if charge > 0:
                entry = ion_data(symbol, charge)
                rules[atomic_numbers[symbol]] = BondRule(1.25 * (entry.radius + r_anion), entry.cn_min - 1,
                                                         entry.cn_max + 1)
        return rules

    def max_fus(self, max_atoms: int) -> int:
        """Largest number of formula units within ``max_atoms``; CompositionError if not even one fits."""
        fus = int(max_atoms) // self.atoms_per_fu
        if fus < 1:
            raise CompositionError(
                f"max_atoms={max_atoms} is smaller than one formula unit of {self.label} ({self.atoms_per_fu} atoms)"
            )
        return fus

    def max_sub(self, max_atoms: int, vac_ratio: float = 4) -> int:
        """Largest number of sub-modules a random structure may have: floor(max_fus·apf·(1 + vac_ratio)/4)."""
        return math.floor(self.max_fus(max_atoms) * self.atoms_per_fu * (1 + vac_ratio) / 4)

    def __str__(self) -> str:
        if self.oxidation is None:
            return self.label
        ions = ", ".join(ion_label(s, c) for s, c in zip(self.symbols, self.oxidation))
        return f"{self.label} ({ions})"
