"""The move interface: a move maps a genome to a new genome (fuse.md §2); the search loop assembles and checks it."""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from rlcsp.composition import Composition
from rlcsp.exceptions import InvalidMove
from rlcsp.csp.genome import Genome
from rlcsp.csp.quirks import quirk_set


@dataclass(frozen=True)
class MoveContext:
    """What a move needs besides the genome.

    ``fuse_compatible`` reproduces FUSE's documented move quirks (§7): True for all, or a set of names from
    rlcsp.csp.quirks. ``exact_fu_count`` makes moves 6 and 7 draw a formula-unit count and build exactly that many, as
    FUSE 1.06 (the Uniform policy) does. ``passes`` is the search's pre-relaxation check: with it, those moves keep
    their drawn count until a candidate passes (up to ``size_attempts`` builds), as 1.06's generate_random_structure
    does, so that sizes that rarely pass are built as often as the others. ``offset_styles`` are the γ = 120
    offset genes that new instructions draw (rlcsp.csp.genome.offset_styles).
    """

    composition: Composition
    max_atoms: int
    fuse_compatible: bool | Iterable[str] = False  # held as the frozenset of quirk names
    vac_ratio: float = 4
    exact_fu_count: bool = False
    passes: Callable[[Genome], bool] | None = None
    size_attempts: int = 1000
    offset_styles: tuple[str, ...] = ("cartesian",)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fuse_compatible", quirk_set(self.fuse_compatible))  # once, not per move

    def quirk(self, name: str) -> bool:
        """Whether FUSE's quirk ``name`` (see rlcsp.csp.quirks) is reproduced."""
        return name in self.fuse_compatible


class Move(ABC):
    """One FUSE move. ``apply`` raises NotApplicable when it can never apply to this genome, InvalidMove when this
    attempt failed (another draw may succeed).

    In the default mode a proposal identical to the input is an InvalidMove: FUSE would relax the same structure
    again and penalise it as a duplicate. FUSE's ``noop_moves`` quirk lets such no-ops through.
    """

    name: ClassVar[str]
    number: ClassVar[int]

    def apply(self, genome: Genome, ctx: MoveContext, rng: np.random.Generator) -> Genome:
        candidate = self.propose(genome, ctx, rng)
        if not ctx.quirk("noop_moves") and candidate == genome:
            raise InvalidMove(f"{self.name}: the proposal equals the current genome")
        return candidate

    @abstractmethod
    def propose(self, genome: Genome, ctx: MoveContext, rng: np.random.Generator) -> Genome:
        """The new genome, or NotApplicable / InvalidMove."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(number={self.number}, name={self.name!r})"
