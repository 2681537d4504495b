"""The first half of every relaxation: build a candidate, rattle it and screen it, before any relaxer sees it.

Everything that draws from a walker's RNG before its relaxation happens here (move choice, builds, checks,
rattle, GULP's inner cut), so a step is ``settle(propose(), relax([atoms]))`` and many walkers can relax their
proposals as one batch (rlcsp.csp.lockstep) without changing what any walker draws. ``build_state`` is all that
proposing reads and writes besides the walker, so a proposal can also be made in another process.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from ase import Atoms

from rlcsp.actions import MOVES
from rlcsp.calculators.relax import FailureReason, Relaxer, RelaxResult, failed
from rlcsp.csp.checks import check_cell, check_geometry
from rlcsp.csp.genome import Genome, assemble, grid_cell, grid_numbers, random_genome
from rlcsp.exceptions import InvalidMove, NotApplicable, RlcspError
from rlcsp.policies import ACTIONS, State
from rlcsp.csp.walker import Walker


class SearchError(RlcspError):
    """The search cannot continue (e.g. no valid random structure can be built at all)."""


@dataclass
class Proposal:
    """A candidate ready to relax: an initial structure (kind 'I') or a move's result ('S').

    ``atoms`` is the rattled start the relaxer gets; ``screened`` is set instead when the start fails before any
    relaxation (GULP's inner cut). ``build_s`` covers building, checks and the rattle, without the policy's time.
    """

    kind: str
    genome: Genome
    atoms: Atoms
    attempts: int
    build_s: float
    policy_s: float = 0.0
    action: int | None = None
    state: State | None = None
    screened: RelaxResult | None = None


def relax_proposals(relaxer: Relaxer, proposals: list[Proposal]) -> list[tuple[RelaxResult, float]]:
    """Relax every unscreened proposal in one ``relaxer.relax`` call: (result, relax_s) per proposal, where
    relax_s is the batch's wall time divided by its size (a batch of one: that relaxation's own time) and 0 for a
    screened start."""
    batch = [p.atoms for p in proposals if p.screened is None]
    started = time.perf_counter()
    results = iter(relaxer.relax(batch) if batch else [])
    share = (time.perf_counter() - started) / max(len(batch), 1)
    return [(p.screened, 0.0) if p.screened is not None else (next(results), share) for p in proposals]


class Proposer:
    """Search's candidate side; uses the Search's config, composition, ctx, checks, rng, policy, tally and
    quirk switches (uniform_sizes, fixed_rattle, inner_cut, redraw_after, excludes_moves)."""

    def _used(self, quirk: str) -> None:
        self.quirk_uses[quirk] = self.quirk_uses.get(quirk, 0) + 1

    def build_state(self) -> dict[str, Any]:
        """What proposing reads and changes besides the walker: the RNG, the policy (its select may keep state),
        the candidate tallies and the quirk counts; picklable, for a proposal made in another process."""
        return {"rng": self.rng.bit_generator.state, "policy": self.policy, "tally": self.tally,
                "quirk_uses": self.quirk_uses}

    def load_build_state(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.policy, self.tally, self.quirk_uses = state["policy"], state["tally"], state["quirk_uses"]

    def propose(self) -> Proposal:
        """The next candidate: a random structure while the initial population lasts, then a move's."""
        started = time.perf_counter()
        if self.walker is None:
            genome, atoms, attempts = self.random_structure()
            action = state = None
            policy_s = 0.0
        else:
            state = self.state(self.walker)
            action, genome, atoms, attempts, policy_s = self.build(self.walker, state)
        atoms, screened = self.screen(atoms)
        return Proposal("I" if state is None else "S", genome, atoms, attempts,
                        time.perf_counter() - started - policy_s, policy_s, action, state, screened)

    def screen(self, atoms: Atoms) -> tuple[Atoms, RelaxResult | None]:
        """The rattled start, and its failure when it would collapse under GULP's inner cut (None: relax it)."""
        atoms = self._rattle(atoms)
        if self.inner_cut is None:
            return atoms, None
        checked = time.perf_counter()
        pair = self.inner_cut.pair_inside(atoms)
        if not pair:
            return atoms, None
        self._used("gulp_inner_cut")
        return atoms, failed(atoms, FailureReason.EXPLODED, f"collapses under GULP's inner cut: {pair}", checked)

    def _checked(self, genome: Genome, max_atoms: int) -> Atoms | None:
        """The assembled genome if it passes the checks: the cell's first, so that most failures place no atom."""
        if check_cell(grid_numbers(genome), grid_cell(genome.instructions), self.composition, max_atoms,
                      self.checks) is not None:
            return None
        atoms = assemble(genome, fuse_compatible=self.ctx.fuse_compatible)
        return atoms if check_geometry(atoms, self.composition, self.checks) is None else None

    def _check(self, genome: Genome, max_atoms: int, kind: str) -> Atoms | None:
        atoms = self._checked(genome, max_atoms)
        self.tally[kind]["candidates"] += 1
        if atoms is not None:
            self.tally[kind]["passed"] += 1
        return atoms

    def _passes(self, genome: Genome) -> bool:
        """The checks, for moves that build until a candidate passes; the one that passes is tallied by _check."""
        if self._checked(genome, self.config.max_atoms) is not None:
            return True
        self.tally["moves"]["candidates"] += 1
        return False

    def random_structure(self) -> tuple[Genome, Atoms, int]:
        """A random genome that passes the checks, with the number of candidates it took.

        By default (and in FUSE 1.06) the formula-unit count is drawn uniformly from 1..imax_fus and kept for up to
        ``ctx.size_attempts`` builds, so that every size is as likely as in 1.06: create_random_string's own sizes
        (``string_sizes``, FUSE 1.04) make 47 % of passing Y2Ti2O7 structures one formula unit, a cell that cannot
        hold the 22-atom GM.
        """
        cfg = self.config
        imax_fus = self.composition.max_fus(cfg.imax_atoms)
        target = None
        for attempt in range(1, cfg.max_build_attempts + 1):
            if self.uniform_sizes and (attempt - 1) % self.ctx.size_attempts == 0:
                target = int(self.rng.integers(1, imax_fus + 1))
            genome = random_genome(self.composition, cfg.imax_atoms, self.rng, vac_ratio=cfg.vac_ratio,
                                   fuse_compatible=self.ctx.fuse_compatible, styles=self.ctx.offset_styles,
                                   max_fus=imax_fus, target_fus=target)
            atoms = self._check(genome, cfg.imax_atoms, "random")
            if atoms is not None:
                if not self.uniform_sizes:
                    self._used("string_sizes")
                return genome, atoms, attempt
        raise SearchError(f"no random {self.composition.label} structure passed the checks in "
                          f"{cfg.max_build_attempts} attempts; check max_atoms and the composition")

    def _rattle(self, atoms: Atoms) -> Atoms:
        atoms = atoms.copy()
        if self.config.rattle > 0 and self.fixed_rattle:
            atoms.rattle(stdev=self.config.rattle, seed=42)
            self._used("rattle_seed_42")
        elif self.config.rattle > 0:
            atoms.positions += self.rng.normal(scale=self.config.rattle, size=atoms.positions.shape)
        return atoms

    def allowed_moves(self, genome: Genome) -> list[int]:
        allowed = list(ACTIONS)
        if genome.instructions.nc <= 2:
            allowed.remove(4)
        if 2 * genome.n_atoms > self.config.max_atoms:
            allowed.remove(5)
        return allowed

    def build(self, walker: Walker, state: State) -> tuple[int, Genome, Atoms, int, float]:
        """Choose a move and apply it until a candidate passes the checks.

        By default a move is kept for ``max_failed_attempts`` failed builds and then excluded (FUSE_RL, fuse.md
        §4.5); FUSE 1.04 draws a new move after every failure and 1.06 after 100, without exclusions, so there the
        moves that get relaxed are weighted by their pass rates.
        """
        cfg = self.config
        allowed = self.allowed_moves(walker.genome)
        excluded: set[int] = set()
        total = 0
        policy_s = 0.0
        while True:
            choices = [a for a in allowed if a not in excluded]
            if not choices:
                excluded.clear()
                choices = allowed
            t0 = time.perf_counter()
            action = self.policy.select(state, choices, self.rng)
            policy_s += time.perf_counter() - t0
            move = MOVES[action]
            for attempt in range(1, self.redraw_after + 1):
                total += 1
                if total > cfg.max_build_attempts:
                    raise SearchError(f"no valid candidate after {total} attempts from the current structure")
                try:
                    genome = move.apply(walker.genome, self.ctx, self.rng)
                except NotApplicable:
                    break
                except InvalidMove:
                    continue
                atoms = self._check(genome, cfg.max_atoms, "moves")
                if atoms is not None:
                    return action, genome, atoms, total, policy_s
            if self.excludes_moves:
                excluded.add(action)
            else:
                self._used("redraw_each_attempt" if self.redraw_after == 1 else "redraw_after_100")
