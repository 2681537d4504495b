"""Batched variable-cell relaxation of many structures at once on the torch Buckingham engine (CPU or CUDA).

Structures wait in a queue; a batch holds as many as ``batch_atoms`` allows, concatenated without padding. Every
``swap_every`` steps the finished ones (converged, failed or at the step cap) leave and queued ones take their
places, so the batch stays full while stragglers finish (TorchSim's in-flight batching). A structure's pair list
is rebuilt only when its atoms or cell have moved by more than the skin allows. The contract is
:class:`~rlcsp.calculators.relax.Relaxer`'s: same thresholds and failure classes as ``LammpsRelaxer``, energies of
the exact GULP model.

``inner`` chooses what the minimiser sees below GULP's 1.2 Å inner cut of the exponential: ``'keep'`` (the
exponential continues inward, as in LAMMPS' minimiser) or ``'gulp'`` (cut, as the model is defined; cations and
anions that get that close then collapse). Reported energies always use the exact model.
"""
from __future__ import annotations

import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from ase import Atoms
from ase.units import GPa

from rlcsp.calculators.library import Library
from rlcsp.calculators.relax import FailureReason, RelaxResult, Relaxer, failed
from rlcsp.calculators.torch_buckingham import Batch, Evaluation, Neighbours, TorchBuckingham, pair_distances
from rlcsp.calculators.torch_flight import Flight
from rlcsp.calculators.torch_graph import FlightGraph
from rlcsp.calculators.torch_linalg import det3, inv3, matmul3, segment_ranges, singular_extremes, vecmat
from rlcsp.calculators.torch_slots import write_in_place
from rlcsp.calculators.torch_optim import (CgState, Dofs, FireState, LbfgsState, cg_step, fire_step, lbfgs_step,
                                          segment_max, select)
from rlcsp.exceptions import UnknownName

if TYPE_CHECKING:
    from rlcsp.calculators.torch_stream import TorchStream

OPTIMIZERS = ("fire", "lbfgs", "cg")
HOLD = ("wells", "always", "never")  # whose atoms keep their fractional coordinates while the cell opens
RELEASE_EVERY = 5  # steps between checks that a held structure's pairs have all left their wells


class TorchRelaxer(Relaxer):
    """Relax at zero pressure with batched L-BFGS, FIRE or CG then L-BFGS on a cell filter; LammpsRelaxer thresholds.

    Like ``LammpsRelaxer``, the minimiser works on a cheaper copy of the model (``min_cutoff`` real-space cutoff,
    ``min_accuracy`` Ewald accuracy; about half the pairs and k-vectors) to ``tighten`` times the thresholds;
    each finished structure is then evaluated once with the exact model, which gives the reported energy, fmax
    and stress, and decides ``converged`` against the thresholds themselves.

    Opening: while a structure's stress exceeds ``open_gpa``, its cell variables are scaled by ``open_factor``
    times the atom count instead of ``cell_factor`` times it, so an overlapping start first expands its cell, as
    LAMMPS' box/relax does (its volume limit per iteration holds the atoms nearly still while the box opens).
    ``hold_atoms`` says whose atoms keep their fractional coordinates meanwhile: ``'wells'`` (the default) those of
    a structure that starts with a pair closer than the top of that pair's barrier (:meth:`Library.barrier`; lib2's
    O–O at 1.363 Å, Sr–O at 0.837 Å), which moving atoms would draw into the well; ``'always'``; ``'never'``.
    A held structure moves its atoms again once the cell has pulled its last such pair out (checked every 5 steps).
    Collapses on the same candidates on one core (bench/results/gpu_throughput.md): Y2O3, 64 candidates, 5 held in
    wells, 18 with the atoms moving, 4 under LAMMPS; SrY2O4, 256 candidates, 22 against LAMMPS' 30; Y2Ti2O7, 256
    candidates, 13 against 11. No Y2Ti2O7 candidate starts inside a well, so there ``'wells'`` is the moving atoms'
    path. Holding every structure's atoms until the stress is low costs steps (Y2O3 p90 1130 against 567).
    ``open_gpa=inf`` leaves the opening out.

    L-BFGS keeps ``memory`` (s, y) pairs, 120 by default: for search candidates (3N + 9 ≤ 141 variables on Y2Ti2O7
    and SrY2O4) nearly BFGS. It keeps them through uphill steps (the step cap bounds those, and a pair that fails
    the curvature condition is left out) and forgets only when the opening ends and the cell variables change
    scale. Against 20 pairs forgotten after every uphill step, on 128 Y2Ti2O7 and 64 SrY2O4 candidates (one core,
    eager): mean steps 320 → 203 and 347 → 201 (median 271 → 185 and 291 → 163), the same collapses and convergence.

    ``compile=True`` compiles the minimiser's model (:class:`TorchBuckingham`) and the step's tensor work around it
    (staleness of the pair lists, convergence, cell filter, optimiser step; shapes dynamic, so one graph serves
    every batch); the exact model that scores each finished structure stays eager. By default it is on for a GPU
    only, where ``batch_atoms`` (atoms in flight) also defaults to about a million instead of 4096: lockstep walkers
    then relax as many candidates at once as there are walkers. A refill (retire, score, admit) costs a GPU more
    than a step of the whole batch (45 ms against 30 ms at batch 8192), so there ``swap_every`` defaults to 20
    steps instead of 5: Y2Ti2O7 candidates at batch 8192 on the H200, 482 → 544 relaxations/s steady (10: 498),
    for finished structures that wait 7.5 steps longer on average. Held atoms are released on their own schedule,
    every 5 steps, so the refill schedule does not decide where a structure ends.

    ``graphs=True`` replays the steps between refills as CUDA graphs (:mod:`torch_graph`): at walker batch sizes a
    step is launch-bound (64 Y2Ti2O7 candidates: 1.1 ms as a graph against 8.8 ms as the relaxer steps now). It
    needs pair lists that rebuilds rewrite in place, so each structure's lists get ``spare`` room (their own length
    again by default then); a structure that outgrows it is laid out anew, and the graphs are captured again: 192
    Y2Ti2O7 candidates through 32 slots were laid out anew 75 times in 1780 steps with room 0.5, 16 times with 1.0.
    Off by default until it has been measured on a GPU; on a CPU the graphs are emulated, for the tests.
    """

    name = "torch"

    def __init__(self, library: str | Path | Library | None = None, device: str = "cpu", dtype: str = "float64",
                 optimizer: str = "lbfgs", fmax: float = 5e-3, smax_gpa: float = 0.05, max_steps: int = 3000,
                 maxstep: float = 0.2, inner: str = "keep", skin: float = 1.5, batch_atoms: int | None = None,
                 batch_size: int | None = None, swap_every: int | None = None, min_distance: float = 0.5,
                 collapse_distance: float = 0.5, max_energy_drop: float = 50.0, accuracy: float = 1e-10,
                 min_cutoff: float = 8.0, min_accuracy: float = 1e-6, tighten: float = 0.5, cell_factor: float = 1.0,
                 open_factor: float = 0.05, open_gpa: float = 1.0, hold_atoms: str = "wells",
                 max_volume: float = 200.0, cg_cycles: int = 50,
                 cg_maxstep: float = 0.1, memory: int = 120, compile: bool | None = None, graphs: bool = False,
                 spare: float | None = None, timed: bool = False):
        if optimizer not in OPTIMIZERS:
            raise UnknownName("torch optimizer", optimizer, list(OPTIMIZERS))
        dt = getattr(torch, dtype)
        gpu = torch.device(device).type == "cuda"
        compile = gpu if compile is None else compile  # a GPU's step is launch-bound, a CPU's is not
        spare = (1.0 if graphs else 0.0) if spare is None else spare
        if graphs and spare <= 0:
            raise ValueError("graphs=True needs spare > 0: a captured step reads pair lists rewritten in place")
        batch_atoms = batch_atoms or (1 << 20 if gpu else 4096)  # on a GPU a fuller batch pays in steps per second
        swap_every = swap_every or (20 if gpu else 5)  # a GPU's refill costs more than a step (the class docstring)
        self.exact = TorchBuckingham(library, accuracy=accuracy, device=device, dtype=dt, inner="gulp")
        self.model = TorchBuckingham(self.exact.library, accuracy=max(accuracy, min_accuracy), device=device,
                                     dtype=dt, inner=inner, skin=skin, cutoff=min(min_cutoff, self.exact.cutoff),
                                     compile=compile)
        self.optimizer = optimizer
        self.fmax, self.smax, self.tighten = fmax, smax_gpa * GPa, tighten
        self.max_steps, self.maxstep = max_steps, maxstep
        self.cg_cycles, self.cg_maxstep = cg_cycles, cg_maxstep  # optimizer "cg": GULP's stage 1 in FUSE, then L-BFGS
        self.batch_atoms, self.batch_size, self.swap_every = batch_atoms, batch_size, swap_every
        self.min_distance, self.collapse_distance = min_distance, collapse_distance
        self.max_energy_drop = max_energy_drop
        self.cell_factor = cell_factor  # times the atom count (ASE's scaling); smaller lets the cell move sooner
        self.open_factor, self.open_stress = open_factor, open_gpa * GPa  # the cell factor while stress > open_gpa
        if hold_atoms not in HOLD:
            raise UnknownName("hold_atoms", hold_atoms, list(HOLD))
        self.hold_atoms = hold_atoms
        lib, els = self.exact.library, self.model.elements  # the top of each species pair's barrier, in Å
        self.barriers = torch.tensor([[lib.barrier(a, b) for b in els] for a in els], dtype=dt, device=device)
        self.max_volume = max_volume  # Å³ per atom: a cell past it has blown up
        self.timed = timed
        self.memory = memory  # L-BFGS pairs: at 3N + 9 or more, BFGS itself
        self.graphs, self.spare = graphs, spare
        self.device = self.model.device
        # the tensor work around the model's evaluation too: eagerly, hundreds of small kernel launches a step. On a
        # CPU the captured graphs run eagerly (aot_eager): inductor's C++ code for the optimiser step crashes
        # (torch 2.13), and a CPU has no launches to save
        self._check, self._advance = self._stale, self._move
        if compile:
            backend = "inductor" if self.device.type == "cuda" else "aot_eager"
            self._check, self._advance = (torch.compile(f, dynamic=True, backend=backend)
                                          for f in (self._stale, self._move))
        self.stats: dict = {}

    def _tick(self, phase: str, since: float) -> float:
        """Add the time since ``since`` to a phase (synchronising the GPU first when ``timed``)."""
        if self.timed and self.model.device.type == "cuda":
            torch.cuda.synchronize()
        now = time.perf_counter()
        self.stats[phase] = self.stats.get(phase, 0.0) + now - since
        return now

    def relax_one(self, atoms: Atoms) -> RelaxResult:
        return self.relax([atoms])[0]

    # -- the in-flight loop --------------------------------------------------------------------------

    def relax(self, structures: list[Atoms]) -> list[RelaxResult]:
        started = time.perf_counter()
        stream = self.stream()
        for k, atoms in enumerate(structures):
            stream.submit(k, atoms)
        results: list[RelaxResult | None] = [None] * len(structures)
        while stream.pending:
            for k, result, _ in stream.poll():
                results[k] = result
        self.stats["wall_s"] = wall = time.perf_counter() - started
        for result in results:  # one batch's time, shared
            result.wall_s = wall / len(results)
        return results

    def stream(self) -> TorchStream:
        from rlcsp.calculators.torch_stream import TorchStream  # it steps this relaxer

        self.stats = {"steps": 0, "rebuilds": 0, "evaluations": 0, "relayouts": 0, "captures": 0}
        return TorchStream(self)

    def _step(self, fl: Flight, swap: bool, release: bool) -> None:
        if self.graphs and not swap and fl.graphs is not None:
            self._replay(fl, release)
            return
        # an eager step gives the flight new tensors, which captured graphs do not read; one between refills also
        # compiles what a capture then replays (a compilation cannot run inside a capture)
        fl.graphs = None if swap else ()
        t = time.perf_counter()
        r, H, stale = self._check(fl, 0.5 if swap else 1.0)
        self._rebuild(fl, r, H, stale)
        self._release(fl, r, H, release)
        t = self._tick("neighbours_s", t)
        ev = self.model.evaluate(fl.at(r, H), fl.nbrs)
        t = self._tick("evaluate_s", t)
        self.stats["evaluations"] += 1
        self._advance(fl, ev, H)
        self._tick("optimizer_s", t)

    def _replay(self, fl: Flight, release: bool) -> None:
        """A step between refills as two CUDA graphs (check; evaluation and optimiser step) around the rebuild,
        which needs the host. The graphs are captured at the flight's second such step (the first, eager, has
        compiled their functions for its shapes) and replayed until the next refill or a relayout of the pair
        lists; evaluate_s then holds the optimiser's time too."""
        t = time.perf_counter()
        if not fl.graphs:
            fl.graphs = (FlightGraph(lambda f: self._check(f, 1.0), fl), FlightGraph(self._evaluate_and_move, fl))
            self.stats["captures"] += 1
        r, H, stale = fl.graphs[0].replay()
        in_place = self._rebuild(fl, r, H, stale)
        self._release(fl, r, H, release)
        t = self._tick("neighbours_s", t)
        if in_place:
            fl.graphs[1].replay()
        else:  # the lists were laid out anew, and the captured evaluation reads the old ones
            fl.graphs = ()
            self._evaluate_and_move(fl)
        self.stats["evaluations"] += 1
        self._tick("evaluate_s", t)

    def _evaluate_and_move(self, fl: Flight) -> None:
        r, H = fl.positions()
        self._advance(fl, self.model.evaluate(fl.at(r, H), fl.nbrs), H)

    def _release(self, fl: Flight, r: torch.Tensor, H: torch.Tensor, release: bool) -> None:
        """Let held structures move their atoms once out of every well (in place: graphs read ``fl.hold``)."""
        if release and self.hold_atoms == "wells" and fl.held:
            fl.hold.copy_(fl.hold & self._hold(fl.at(r, H), fl.nbrs))
            fl.held = bool(fl.hold.any())  # a host synchronisation only while some structure is held

    def _stale(self, fl: Flight, share: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Current positions and cells, and the structures whose pair lists used up ``share`` of the skin.

        A list is exact until its structure has used the whole skin; rebuilding the ones past half of it at swap
        steps (share 0.5) gathers most rebuilds into a few large calls, since each call costs more in launches
        than in arithmetic; between swaps only the lists about to break are rebuilt (share 1). A structure whose
        cell blew up or went flat is failed here as exploded: its list would need a vast image range.
        """
        r, H = fl.positions()
        S, rc, skin = fl.batch.n_systems, self.model.cutoff, self.model.skin
        # Since the build, the cell deformed by M (H = H_ref·M) and atoms moved by u beyond that affine motion: a
        # pair vector is d_ref·M + (u_j − u_i), so only contraction (M's smallest singular value) and u can bring
        # a pair from beyond rc + skin inside rc, and only expansion (the largest) can bring a k-vector from
        # beyond the list's kmax·(1 + skin/rc) inside kmax. An opening cell expands a lot and contracts nowhere.
        M = matmul3(inv3(fl.H_ref), H)
        top, bottom = singular_extremes(M)
        affine = vecmat(fl.r_ref, M[fl.batch.system])
        disp = segment_max(torch.linalg.norm(r - affine, dim=1), fl.batch.system, S)
        stale = ((2.0 * disp + (1.0 - bottom).clamp(min=0.0) * (rc + skin) > share * skin)
                 | ((top - 1.0) * rc > share * skin))
        images = (2 * self.model.image_ranges(H) + 1).prod(1)
        broken = ~fl.done & ((images > 20000) | (det3(H).abs() > self.max_volume * fl.batch.counts))
        fl.reason = torch.where(broken, 1, fl.reason)
        fl.done = fl.done | broken
        return r, H, stale & ~fl.done

    def _rebuild(self, fl: Flight, r: torch.Tensor, H: torch.Tensor, stale: torch.Tensor) -> bool:
        """New pair lists for the ``stale`` structures [S] (bool), the others' kept: written into their ranges when
        the lists have room (``spare``), else laid out anew (False then)."""
        sys_idx = torch.nonzero(stale).squeeze(1)  # one host synchronisation tells whether and which
        if len(sys_idx) == 0:
            return True
        self.stats["rebuilds"] += len(sys_idx)
        atom_mask = stale[fl.batch.system]
        atom_idx = torch.nonzero(atom_mask).squeeze(1)
        sub = Batch(r[atom_idx], H[sys_idx], fl.batch.species[atom_idx],
                    torch.cumsum(stale.long(), 0)[fl.batch.system[atom_idx]] - 1, fl.batch.counts[sys_idx])
        fl.r_ref[atom_idx] = r[atom_idx]  # in place, as the lists: a captured check reads them
        fl.H_ref[sys_idx] = H[sys_idx]
        exact = self.model.neighbours(sub, products=False)
        if self.spare > 0:
            fresh = Neighbours(atom_idx[exact.i], atom_idx[exact.j], exact.shift, sys_idx[exact.pair_system],
                               exact.m, sys_idx[exact.k_system], exact.ak_atom, exact.ak_k)
            if write_in_place(fl.nbrs, fresh, stale, segment_ranges(fl.batch.counts)[:-1]):
                return True
            self.stats["relayouts"] += 1
        fresh = self.model.completed(sub, exact, self.spare).remap(atom_idx, sys_idx)
        keep_sys = torch.where(stale, -1, torch.arange(len(stale), device=r.device))
        fl.nbrs = fl.nbrs.remap(torch.arange(len(r), device=r.device), keep_sys).join(fresh)
        return False

    def _move(self, fl: Flight, ev: Evaluation, H: torch.Tensor) -> None:
        """From one evaluation: retire the structures that finished, and move the others one optimiser step."""
        S, system, counts = fl.batch.n_systems, fl.batch.system, fl.batch.counts
        fmax = segment_max(ev.forces.abs().amax(1), system, S)
        smax = (ev.virial / det3(H).abs()[:, None, None]).abs().amax((1, 2))
        e = ev.energy
        live = ~fl.done
        first = fl.steps == 0
        fl.e0 = torch.where(first, e + fl.e0, fl.e0)  # the model's first energy as GULP defines it (_admit)
        converged = (fmax <= self.tighten * self.fmax) & (smax <= self.tighten * self.smax)
        exploded = (~torch.isfinite(e) | (e / counts < fl.e0 / counts - self.max_energy_drop)
                    | (ev.min_distance < self.collapse_distance))
        capped = fl.steps >= self.max_steps
        finish = live & (converged | exploded | capped)
        fl.reason = torch.where(finish, torch.where(converged, 0, torch.where(exploded, 1, 2)), fl.reason)
        fl.energy = torch.where(live, e, fl.energy)
        fl.dmin = torch.where(live, ev.min_distance, fl.dmin)
        fl.done = fl.done | finish
        moving = ~fl.done
        # unit-cell-filter gradient: dE/du = −f·F, dE/d(cF) = W·F⁻ᵀ / c
        opening = ~fl.opened & (smax > self.open_stress)
        switched = ~fl.opened & ~opening  # the opening stage ends now
        fl.opened = fl.opened | switched
        factor = (counts.to(e.dtype) * torch.where(opening, self.open_factor, self.cell_factor))[:, None, None]
        grad = Dofs(-vecmat(ev.forces, fl.F[system]), matmul3(ev.virial, inv3(fl.F).transpose(1, 2)) / factor)
        held = opening & fl.hold  # these atoms keep their fractional coordinates while the cell opens
        grad = Dofs(torch.where(held[system, None], 0.0, grad.atoms), grad.cell)
        x = Dofs(fl.u, fl.F * factor)
        uphill = ~first & (e > fl.e_prev + 1e-9 * e.abs())
        if self.optimizer == "fire":
            delta = fire_step(fl.state, Dofs(-grad.atoms, -grad.cell), system, S, maxstep=self.maxstep)
        elif self.optimizer == "cg":
            st = fl.state
            late = (st.cycles >= self.cg_cycles) & ~st.trial  # past the CG stage: L-BFGS from here on
            st.lbfgs.forget(uphill & late)
            st.lbfgs.restart(switched)
            st.restart(switched | (~st.trial & st.has_prev & (e > st.e_base + 1e-9 * e.abs())))
            early = cg_step(st, grad, e, system, S, maxstep=self.cg_maxstep)
            st.trial &= ~late
            delta = select(late, lbfgs_step(st.lbfgs, x, grad, system, S, maxstep=self.maxstep), early, system)
        else:
            fl.state.restart(switched)  # the cell variables change scale at the switch
            delta = lbfgs_step(fl.state, x, grad, system, S, maxstep=self.maxstep)
        fl.e_prev = e
        go = moving.to(e.dtype)
        fl.u = fl.u + go[system, None] * delta.atoms
        fl.F = fl.F + go[:, None, None] * delta.cell / factor
        fl.steps = fl.steps + moving.long()

    # -- retire and admit ----------------------------------------------------------------------------

    def _swap(self, fl: Flight | None, queue: deque[int], structures: dict[int, Atoms], results: dict,
              started: float) -> Flight | None:
        budget = self.batch_atoms
        if fl is not None and bool(fl.done.any()):
            self._retire(fl, structures, results, started)
            keep = ~fl.done
            fl = fl.take(keep) if bool(keep.any()) else None
        budget -= 0 if fl is None else len(fl.u)
        new: list[int] = []
        room = (self.batch_size or len(structures)) - (0 if fl is None else fl.batch.n_systems)
        while queue and (not new and fl is None or (len(structures[queue[0]]) <= budget and len(new) < room)):
            k = queue.popleft()
            new.append(k)
            budget -= len(structures[k])
        if not new:
            return fl
        admitted = self._admit([structures[k] for k in new], new, results, started)
        if admitted is None:
            return fl
        return admitted if fl is None else fl.merge(admitted)

    def _retire(self, fl: Flight, structures: dict[int, Atoms], results: dict, started: float) -> None:
        finished = torch.nonzero(fl.done).squeeze(1).tolist()
        if not finished:
            return
        r, H = fl.positions()
        ptr = segment_ranges(fl.batch.counts).tolist()
        r, H = r.detach().cpu().numpy(), H.detach().cpu().numpy()
        host = {name: getattr(fl, name).cpu().tolist() for name in ("steps", "energy", "reason", "dmin")}
        done = []
        for s in finished:
            k = fl.index[s]
            atoms = structures[k].copy()
            atoms.set_cell(H[s], scale_atoms=False)
            atoms.positions = r[ptr[s]:ptr[s + 1]]
            atoms.wrap()
            if host["reason"][s] == 1:
                results[k] = failed(atoms, FailureReason.EXPLODED,
                                    f"collapsed: {host['energy'][s] / len(atoms):.3f} eV/atom, closest pair "
                                    f"{host['dmin'][s]:.2f} A", started, host["steps"][s])
            else:
                done.append((k, atoms, host["steps"][s]))
        if not done:
            return
        # the exact model decides: energy, fmax, stress
        batch = self.exact.batch([atoms for _, atoms, _ in done])
        ev = self.exact.evaluate(batch, self.exact.neighbours(batch))
        counts = batch.counts.cpu().tolist()
        fmax = segment_max(ev.forces.abs().amax(1), batch.system, len(done)).cpu().tolist()
        smax = ev.stress(batch.cells).abs().amax((1, 2)).cpu().tolist()
        energy = ev.energy.cpu().tolist()
        for (k, atoms, steps), e, n, f, sm in zip(done, energy, counts, fmax, smax):
            converged = f <= self.fmax and sm <= self.smax
            results[k] = RelaxResult(
                atoms=atoms, energy_per_atom=e / n, converged=converged, steps=steps, wall_s=0.0,
                failure=None if converged else FailureReason.NOT_CONVERGED,
                message="" if converged else f"after {steps} steps fmax {f:.3g} eV/A, max stress {sm / GPa:.3g} GPa",
                fmax=f, max_stress=sm)

    def _admit(self, atoms_list: list[Atoms], index: list[int], results: dict, started: float) -> Flight | None:
        batch = self.model.batch(atoms_list)
        nbrs = self.model.neighbours(batch, spare=self.spare)
        self.stats["rebuilds"] += len(atoms_list)
        close = (self.model.closest(batch, nbrs) < self.min_distance).tolist()
        if any(close):  # refused up front, as LammpsRelaxer does
            for k, c in zip(index, close):
                if c:
                    results[k] = failed(atoms_list[index.index(k)], FailureReason.TOO_CLOSE,
                                        f"atoms closer than {self.min_distance} A; refusing to relax", started)
            kept = [a for a, c in zip(atoms_list, close) if not c]
            return self._admit(kept, [k for k, c in zip(index, close) if not c], results, started) if kept else None
        S = batch.n_systems
        like = Dofs(batch.positions, batch.cells)
        state = (LbfgsState.new(like, S, self.memory) if self.optimizer == "lbfgs"
                 else {"fire": FireState, "cg": CgState}[self.optimizer].new(like, S))
        # A collapse is an energy max_energy_drop below the first one, which LammpsRelaxer takes from the exact
        # model: with the exponential kept inside the inner cut, a start's overlaps would raise it by up to tens of
        # eV/atom, and ordinary relaxations of such starts would count as collapses (5 of 64 SrY2O4 candidates)
        return Flight.new(batch, nbrs, state, index, self.model.inner_exponential(batch, nbrs),
                          self._hold(batch, nbrs))

    def _hold(self, batch: Batch, nbrs: Neighbours) -> torch.Tensor:
        """Which structures open their cell with the atoms held [S]: under ``'wells'`` those with a pair closer
        than the top of its barrier (:meth:`Library.barrier`), which would fall into the well if it moved. Checked
        every ``RELEASE_EVERY`` steps (a pass over all pairs costs a fifth of an evaluation): the atoms move
        again once the cell has pulled the last such pair out."""
        S = batch.n_systems
        if self.hold_atoms != "wells":
            return torch.full((S,), self.hold_atoms == "always", dtype=torch.bool, device=self.device)
        dist = pair_distances(batch.positions, batch.cells, nbrs.i, nbrs.j, nbrs.shift, nbrs.pair_system)
        inside = (dist < self.barriers[batch.species[nbrs.i], batch.species[nbrs.j]]).long()
        return torch.zeros(S, dtype=torch.long, device=self.device).index_add(0, nbrs.pair_system, inside) > 0
