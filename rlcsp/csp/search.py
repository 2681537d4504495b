"""FUSE-style basin hopping: an initial population, then one move, one relaxation and one decision per step.

Moves act on the genome (never on relaxed coordinates); the relaxed structure only provides the energy and the
output files. All randomness comes from one seeded ``numpy.random.Generator``, so the same seed, inputs and
calculator give the same trajectory.

The loop is rlcsp's own by default; ``config.fuse`` ("1.04", "1.06", "rl") and ``config.quirks`` switch on FUSE's
behaviours one by one (rlcsp.csp.quirks). Each is read here into an attribute that the loop itself uses, and
``effective_settings`` reports those attributes together with how often each quirk acted, so an ablation can show
that its switch reached the code.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
from ase import Atoms

from rlcsp.actions.base import MoveContext
from rlcsp.calculators import get_relaxer
from rlcsp.calculators.relax import Relaxer, RelaxResult
from rlcsp.policies import Policy, State, Transition, get_policy, melt_option
from rlcsp.csp.checks import CheckSettings
from rlcsp.csp.config import SearchConfig
from rlcsp.csp.genome import Genome
from rlcsp.csp.inner_cut import InnerCut
from rlcsp.csp.propose import Proposal, Proposer, SearchError, relax_proposals
from rlcsp.csp.stop import StopRequest
from rlcsp.csp.uniqueness import EnergyIndex, UniquenessIndex
from rlcsp.csp.walker import OUTCOMES, SearchResult, StepRecord, Walker

__all__ = ["Search", "SearchError", "relaxer_options"]

RELAXER_SETTINGS = ("optimizer", "graphs", "spare")  # a batched relaxer's choices that summary.json records


def relaxer_settings(relaxer) -> dict:
    """Those of ``RELAXER_SETTINGS`` the relaxer has, with its values: what summary.json records of it."""
    return {k: getattr(relaxer, k) for k in RELAXER_SETTINGS if hasattr(relaxer, k)}


def relaxer_options(config: SearchConfig) -> dict:
    """The engine options a config's relaxer is made with: its own, plus the Buckingham library it names."""
    options = dict(config.calculator_options)
    if config.library_path and config.calculator in ("lammps-buckingham", "torch-buckingham", "gulp"):
        options.setdefault("library", config.library_path)
    return options


class Search(Proposer):
    """One basin-hopping walker over a composition, with a relaxer and a move policy.

    Every relaxation is ``propose`` (rlcsp.csp.propose), a relaxation, then ``settle``; ``run`` does them one
    at a time, rlcsp.csp.lockstep drives many walkers' relaxations as one batch. ``lockstep`` says which.
    """

    def __init__(self, config: SearchConfig, relaxer: Relaxer | None = None, policy: Policy | None = None,
                 on_record: Callable[[StepRecord, Walker | None, dict | None], None] | None = None):
        self.config = config
        self.composition = config.comp
        if config.library_path and config.calculator == "lammps-buckingham":
            from rlcsp.calculators.library import load_library

            load_library(config.library_path).check_elements(self.composition.symbols)
        self._owns_relaxer = relaxer is None
        self.relaxer = relaxer or get_relaxer(config.calculator, **relaxer_options(config))
        self.lockstep = False  # set by rlcsp.csp.lockstep, which relaxes this walker's candidates with others'
        melt = {"melt_threshold": config.melt_threshold} if melt_option(config.policy) else {}
        self.policy = policy or get_policy(config.policy, **melt, **config.policy_options)
        self.rng = np.random.default_rng(config.seed)
        self.quirks = quirks = config.quirk_set
        self.ctx = MoveContext(config.comp, config.max_atoms, fuse_compatible=quirks, vac_ratio=config.vac_ratio,
                               exact_fu_count="sub_capped_moves" not in quirks, passes=self._passes,
                               offset_styles=tuple(config.offset_styles))
        self.checks = CheckSettings(density_cutoff=config.density_cutoff, dist_cutoff=config.dist_cutoff,
                                    btol=config.btol, fuse_compatible=quirks)
        # The loop's own switches, read once from the quirks (see effective_settings).
        self.metropolis_global = "metropolis_global" in quirks
        self.fuse_melt = "melt_bookkeeping" in quirks
        self.fixed_rattle = "rattle_seed_42" in quirks
        self.uniform_sizes = "string_sizes" not in quirks
        self.redraw_after = (1 if "redraw_each_attempt" in quirks else 100 if "redraw_after_100" in quirks
                             else config.max_failed_attempts)
        self.excludes_moves = not ({"redraw_each_attempt", "redraw_after_100"} & quirks)  # FUSE_RL's rule, §4.5
        self.inner_cut = (InnerCut.from_library(config.library_path, set(config.comp.symbols))
                          if "gulp_inner_cut" in quirks else None)
        self.quirk_uses: dict[str, int] = {}
        self.fuse_unique = "energy_uniqueness" in quirks
        self.unique = EnergyIndex() if self.fuse_unique else UniquenessIndex(config.energy_tolerance)
        self.keep_best = config.keep_structures == "best"
        self.on_record = on_record
        self.records: list[StepRecord] = []
        # Initial-population progress, kept on the object so an interrupted population resumes mid-way.
        self.init_count = 0
        self.init_best: tuple[float, Genome, Atoms] | None = None
        self.init_energies: list[float] = []
        self.walker: Walker | None = None
        self.elapsed = 0.0  # wall seconds of earlier segments of this run (a resumed run counts them all)
        self._segment_start: float | None = None
        # Candidates built and those passing the checks, for random structures and for moves separately.
        self.tally = {"random": {"candidates": 0, "passed": 0}, "moves": {"candidates": 0, "passed": 0}}

    def effective_settings(self) -> dict:
        """What this search actually runs with, read from the objects the loop uses, and how often each quirk
        acted so far (summary.json's ``settings``)."""
        return {
            "mode": self.config.label,
            "fuse": self.config.fuse,
            "quirks": sorted(self.quirks),
            "exact_fu_count": self.ctx.exact_fu_count,
            "offset_styles": list(self.ctx.offset_styles),
            "metropolis": "global" if self.metropolis_global else "current",
            "melt_bookkeeping": "fuse" if self.fuse_melt else "rlcsp",
            "rattle": "ase seed 42" if self.fixed_rattle else "run rng",
            "initial_sizes": "uniform formula units" if self.uniform_sizes else "create_random_string",
            "move_redraw_after": self.redraw_after,
            "move_exclusion": self.excludes_moves,
            "inner_cut": None if self.inner_cut is None else self.inner_cut.describe(),
            "structures_kept": self.config.keep_structures,
            "uniqueness": ("energy rounded to 1e-6" if self.fuse_unique else
                           f"StructureMatcher within {self.config.energy_tolerance} eV/atom"),
            "quirk_uses": dict(sorted(self.quirk_uses.items())),
            "lockstep": self.lockstep,
            "device": str(getattr(self.relaxer, "device", "cpu")),
            "relaxer": getattr(self.relaxer, "name", type(self.relaxer).__name__),
            "relaxer_options": relaxer_settings(self.relaxer),
        }

    # -- one relaxation: propose (rlcsp.csp.propose), relax, settle ---------------------------------------

    def _record(self, record: StepRecord, walker: Walker | None, new: dict | None) -> None:
        self.records.append(record)
        if self.on_record is not None:
            self.on_record(record, walker, new)

    def _target_reached(self, energy: float) -> bool:
        target = self.config.target_energy
        return target is not None and energy <= target + self.config.target_tolerance

    def advance(self, stop: Callable[[], str | None]) -> str | None:
        """None when this walker's next relaxation is due, else why its run ends (checked before every one).

        The initial population ends early only once it holds a usable structure (a stop before that would leave
        nothing to continue from); the walker then starts from its best structure.
        """
        cfg = self.config
        if self.walker is None:
            if self.init_count < cfg.initial_population and not (
                    self.init_best and (stop() or self._target_reached(self.init_best[0]))):
                return None
            self.walker = self._start_walker()
        walker = self.walker
        reason = stop()
        if reason is not None:
            return reason
        if self._target_reached(walker.best_energy):
            return "target energy reached"
        if walker.relaxations >= cfg.budget:
            return "budget exhausted"
        if cfg.rmax is not None and walker.steps_since_best >= cfg.rmax:
            return f"rmax: {cfg.rmax} steps without a new best"
        return None

    def _start_walker(self) -> Walker:
        if self.init_best is None:
            raise SearchError(f"all {self.init_count} initial structures failed to relax; check the calculator")
        energy, genome, atoms = self.init_best
        walker = Walker(genome, atoms, energy, genome, atoms, energy, self.config.temperature,
                        relaxations=self.init_count)
        walker.gm_relaxation = self.initial_gm()
        if self.fuse_unique:  # FUSE's search starts its energy list from the best initial structure alone
            self.unique = EnergyIndex([energy])
        self.policy.begin(self.init_energies)
        return walker

    def initial_gm(self) -> int | None:
        """The first initial structure that reached the target energy, if one did."""
        return next((r.relaxation for r in self.records
                     if r.kind == "I" and r.e_new is not None and self._target_reached(r.e_new)), None)

    def step(self) -> StepRecord:
        """One relaxation of this walker alone, as a batch of one (rlcsp.csp.lockstep batches many walkers)."""
        proposal = self.propose()
        [(result, relax_s)] = relax_proposals(self.relaxer, [proposal])
        return self.settle(proposal, result, relax_s)

    def settle(self, proposal: Proposal, result: RelaxResult, relax_s: float) -> StepRecord:
        """Everything after the relaxation: accept or reject, melt, the policy's turn and the record.

        ``relax_s`` is the relaxation's wall time; in a batch, the batch's wall time divided by its size.
        """
        if proposal.kind == "I":
            return self._settle_initial(proposal, result, relax_s)
        cfg, walker = self.config, self.walker
        genome, state, action = proposal.genome, proposal.state, proposal.action
        walker.relaxations += 1
        walker.last_move = action
        e_old = walker.energy
        new = None
        if not result.ok:
            outcome, unique, e_new = "failed", False, None
        else:
            e_new = result.energy_per_atom
            unique = self.unique.add(result.atoms, e_new)
            if unique and (not self.keep_best or e_new < walker.best_energy):
                new = {"atoms": result.atoms, "energy": e_new, "genome": genome.to_dict()}
            e_cur, e_glob, e_cmp = walker.energy, walker.best_energy, e_new
            if self.fuse_melt:  # FUSE compares its energies rounded to 1e-6
                e_cur, e_glob, e_cmp = round(e_cur, 6), round(e_glob, 6), round(e_new, 6)
            reference = e_glob if self.metropolis_global else e_cur
            if e_cmp < e_cur:
                outcome = "accepted"
            elif self.rng.random() <= math.exp(-(e_cmp - reference) / walker.temperature):
                outcome = "metropolis"
                if self.metropolis_global:
                    self._used("metropolis_global")
            else:
                outcome = "rejected"
        if outcome == "accepted":
            walker.temperature = cfg.temperature
        walker.steps_since_downhill = self._melt_count(walker.steps_since_downhill, outcome, e_new, walker)
        if outcome in ("accepted", "metropolis"):
            walker.genome, walker.atoms, walker.energy = genome, result.atoms, e_new
        if e_new is not None and e_new < walker.best_energy:
            walker.best_genome, walker.best_atoms, walker.best_energy = genome, result.atoms, e_new
            walker.steps_since_best = 0
            if walker.gm_relaxation is None and self._target_reached(e_new):
                walker.gm_relaxation = walker.relaxations
        else:
            walker.steps_since_best += 1
        if walker.steps_since_downhill >= cfg.melt_threshold:
            walker.temperature = round(walker.temperature + self.rng.uniform(0, cfg.melt_step), 6)
        started = time.perf_counter()
        self.policy.observe(Transition(state, action, self.state(walker), e_new, outcome, unique, proposal.attempts,
                                       {"e_old": e_old, "failure": result.failure.value if result.failure else ""}))
        if (walker.relaxations - self.init_count) % self.policy.episode_length == 0:  # search steps only
            self.policy.update()
        policy_s = proposal.policy_s + time.perf_counter() - started
        record = StepRecord(walker.relaxations, "S", action, proposal.attempts, outcome, e_new, walker.energy,
                            walker.best_energy, walker.temperature, unique, len(proposal.atoms), proposal.build_s,
                            relax_s, policy_s, result.failure.value if result.failure else "")
        self._record(record, walker, new)
        return record

    def _settle_initial(self, proposal: Proposal, result: RelaxResult, relax_s: float) -> StepRecord:
        self.init_count += 1
        new, unique = None, False
        if result.ok:
            self.init_energies.append(result.energy_per_atom)
            best = self.init_best is None or result.energy_per_atom < self.init_best[0]
            unique = self.unique.add(result.atoms, result.energy_per_atom)
            if unique and (best or not self.keep_best):
                new = {"atoms": result.atoms, "energy": result.energy_per_atom, "genome": proposal.genome.to_dict()}
            if best:
                self.init_best = (result.energy_per_atom, proposal.genome, result.atoms)
        e_best = self.init_best[0] if self.init_best else math.nan
        record = StepRecord(self.init_count, "I", None, proposal.attempts, "initial" if result.ok else "failed",
                            result.energy_per_atom, e_best, e_best, self.config.temperature, unique,
                            len(proposal.atoms), proposal.build_s, relax_s, 0.0,
                            result.failure.value if result.failure else "")
        self._record(record, None, new)
        return record

    def _melt_count(self, ca: int, outcome: str, e_new: float | None, walker: Walker) -> int:
        """Steps since the last downhill acceptance (FUSE's ``ca``), which drives the melt.

        rlcsp resets it on every downhill acceptance. FUSE (``melt_bookkeeping``) resets it only when the new
        energy differs from the global minimum, then adds one whenever the new energy is not below the global
        minimum, so a downhill step that is no new global minimum leaves 1 and one that equals it keeps counting.
        """
        if not self.fuse_melt:
            return 0 if outcome == "accepted" else ca + 1
        e_glob = round(walker.best_energy, 6)
        e = None if e_new is None else round(e_new, 6)
        if outcome == "accepted" and e != e_glob:
            ca = 0
        if e is None or e >= e_glob:
            if outcome == "accepted":
                self._used("melt_bookkeeping")
            ca += 1
        return ca

    def state(self, walker: Walker) -> State:
        return State(walker.energy, len(walker.atoms), self.config.max_atoms, walker.steps_since_downhill,
                     walker.temperature, walker.last_move)

    def wall_s(self) -> float:
        """Wall seconds of the whole run so far, across resumed segments."""
        running = time.perf_counter() - self._segment_start if self._segment_start is not None else 0.0
        return self.elapsed + running

    def start_segment(self) -> None:
        """Start the wall clock of this segment of the run (a resumed run adds its earlier segments)."""
        self._segment_start = time.perf_counter()

    def end_segment(self, reason: str) -> SearchResult:
        outcomes = {o: sum(r.outcome == o for r in self.records if r.kind == "S") for o in OUTCOMES}
        self.elapsed, self._segment_start = self.wall_s(), None
        return SearchResult(self.walker, self.records, reason, self.elapsed, outcomes)

    def run(self, stop_file: Path | None = None, extra_stop: Callable[[], str | None] | None = None) -> SearchResult:
        self.start_segment()
        try:
            with StopRequest(stop_file, extra_stop) as stop:
                while (reason := self.advance(stop)) is None:
                    self.step()
        finally:
            if self._owns_relaxer:
                self.relaxer.close()
        return self.end_segment(reason)

    # -- checkpoints ----------------------------------------------------------------------------------

    def checkpoint(self) -> dict:
        """Everything needed to continue exactly from here (JSON-serialisable)."""
        from rlcsp.db.store import atoms_to_text

        def structure(genome: Genome, atoms: Atoms) -> dict:
            return {"genome": genome.to_dict(), "atoms": atoms_to_text(atoms)}

        state = {"rng": self.rng.bit_generator.state, "policy": self.policy.state_dict(), "tally": self.tally,
                 "quirk_uses": self.quirk_uses, "wall_s": self.wall_s(),
                 "init_count": self.init_count, "init_energies": self.init_energies, "init_best": None,
                 "walker": None}
        if self.init_best is not None:
            state["init_best"] = {"energy": self.init_best[0], **structure(*self.init_best[1:])}
        w = self.walker
        if w is not None:
            state["walker"] = {
                "current": structure(w.genome, w.atoms), "energy": w.energy,
                "best": structure(w.best_genome, w.best_atoms), "best_energy": w.best_energy,
                "temperature": w.temperature, "relaxations": w.relaxations,
                "steps_since_downhill": w.steps_since_downhill, "steps_since_best": w.steps_since_best,
                "gm_relaxation": w.gm_relaxation, "last_move": w.last_move,
            }
        return state

    def restore(self, state: dict, records: list[StepRecord],
                structures: Callable[[], Iterable[tuple[float, Atoms]]]) -> None:
        """Continue from a checkpoint: the same RNG stream, policy, counters and uniqueness memory.

        ``structures`` gives the run's stored (energy, structure) pairs; FUSE's energy rule needs only the records
        and does not read them.
        """
        from rlcsp.db.store import atoms_from_text

        def structure(data: dict) -> tuple[Genome, Atoms]:
            return Genome.from_dict(data["genome"]), atoms_from_text(data["atoms"])

        self.rng.bit_generator.state = state["rng"]
        self.policy.load_state_dict(state["policy"])
        self.tally = state["tally"]
        self.quirk_uses = dict(state.get("quirk_uses", {}))
        self.elapsed = state.get("wall_s", 0.0)
        self.init_count = state["init_count"]
        self.init_energies = list(state["init_energies"])
        if state["init_best"] is not None:
            self.init_best = (state["init_best"]["energy"], *structure(state["init_best"]))
        if not self.fuse_unique:
            for energy, atoms in structures():
                self.unique.insert(atoms, energy)
        elif state["walker"] is None:
            self.unique = EnergyIndex(self.init_energies)
        else:
            self.unique = EnergyIndex([self.init_best[0], *(r.e_new for r in records
                                                              if r.kind == "S" and r.e_new is not None)])
        self.records = list(records)
        w = state["walker"]
        if w is not None:
            genome, atoms = structure(w["current"])
            best_genome, best_atoms = structure(w["best"])
            self.walker = Walker(genome, atoms, w["energy"], best_genome, best_atoms, w["best_energy"],
                                 w["temperature"], w["relaxations"], w["steps_since_downhill"],
                                 w["steps_since_best"], w["gm_relaxation"], w["last_move"])
