"""Lockstep walkers: many searches advance together, their candidates relaxing side by side in one batch.

Every walker is a normal run (rlcsp.csp.run.WalkerRun): its own config, seed stream, policy, folder and run in
the store, resumed from its last stored step after a crash. The driver asks every walker without a candidate in
flight whether a relaxation is due (``Search.advance``), submits their proposals to the relaxer's stream
(``Relaxer.stream``), and settles each walker as soon as its own result comes back, storing its record. A plain
relaxer's stream relaxes each such group with one ``relax`` call (rounds); a batched one (TorchRelaxer) keeps its
batch full: a walker whose relaxation finished proposes again and its candidate joins the batch at the next
refill, so no walker waits for the slowest relaxation of a round. Nothing a walker draws depends on the others,
so its trajectory is exactly the one it has alone with the same relaxer; walkers in different phases (initial
population, search) mix freely and finished ones drop out.

Proposals can be built in a pool of processes (``build_workers``), since random genomes pass the checks only 1
time in 25-677: a proposal is a function of the walker and its build state alone (``Search.build_state``: RNG,
policy, tallies), which travels to a worker and comes back with the proposal, so the result is the same. The
driver does not wait for a round of proposals: each joins the relaxer's stream as soon as it is built, while the
batch keeps relaxing (it waits only when nothing is relaxing).
"""
from __future__ import annotations

import contextlib
import json
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable

from ase import Atoms

from rlcsp.calculators import get_relaxer
from rlcsp.calculators.relax import Relaxer, RelaxResult, RelaxStream
from rlcsp.csp.config import SearchConfig, make_config
from rlcsp.csp.propose import Proposal
from rlcsp.csp.run import WalkerRun, walker_log
from rlcsp.csp.search import Search, relaxer_options
from rlcsp.csp.stop import StopRequest
from rlcsp.csp.walker import Walker
from rlcsp.exceptions import CalculatorFailed, ConfigError, RlcspError


def shared_relaxer(configs: list[SearchConfig], device: str | None = None) -> Relaxer:
    """The one relaxer of all walkers, which must therefore name the same engine and options.

    ``device`` other than cpu reaches the engine as its ``device`` option (an engine without one is refused);
    the LAMMPS Buckingham engine becomes its torch twin there. cpu, or None, is the engine as the configs make it.
    """
    engines = {json.dumps([c.calculator, relaxer_options(c)], sort_keys=True) for c in configs}
    if len(engines) > 1:
        raise ConfigError(f"lockstep walkers share one relaxer, but their engines differ: {sorted(engines)}")
    options = relaxer_options(configs[0])
    engine = configs[0].calculator
    if device not in (None, "cpu"):
        options["device"] = device
        if engine == "lammps-buckingham":  # the same model; LAMMPS has no GPU build here, the torch engine has
            engine = "torch-buckingham"
            options.pop("relaxer", None)
    try:
        return get_relaxer(engine, **options)
    except (TypeError, CalculatorFailed) as err:
        raise ConfigError(f"engine {engine} cannot run on {device} ({err}); leave out --device, "
                          "or choose an engine with a device option") from err


class _NoRelaxer(Relaxer):
    """A proposal worker's searches only build candidates; relaxing belongs to the driver."""

    def relax_one(self, atoms: Atoms) -> RelaxResult:
        raise RuntimeError("a proposal worker never relaxes")


_WORKER_SEARCHES: dict[str, Search] = {}


def _propose_remote(config: dict[str, Any], walker: Walker | None,
                    state: dict[str, Any]) -> tuple[Proposal, dict[str, Any]]:
    """In a pool worker: one walker's proposal, from its config, walker and build state; the new build state."""
    key = json.dumps(config, sort_keys=True)
    if key not in _WORKER_SEARCHES:
        _WORKER_SEARCHES[key] = Search(make_config(config), relaxer=_NoRelaxer())
    search = _WORKER_SEARCHES[key]
    search.walker = walker
    search.load_build_state(state)
    proposal = search.propose()
    return proposal, search.build_state()


def _propose(due: dict[int, WalkerRun]) -> dict[int, Proposal | RlcspError]:
    """Every due walker's proposal, built in this process; a walker that cannot build gets its error."""
    out: dict[int, Proposal | RlcspError] = {}
    for i, run in due.items():
        try:
            out[i] = run.search.propose()
        except RlcspError as err:
            out[i] = err
    return out


def _built(building: dict[int, Future], runs: dict[int, WalkerRun], wait_one: bool) -> dict[int, Proposal | RlcspError]:
    """The proposals the pool has finished (waiting for one when ``wait_one``), each walker's build state updated.

    Collected as they come, not all of a round: the batch keeps relaxing while the pool builds, and a random
    start that needs hundreds of attempts holds up only its own walker.
    """
    if wait_one and building:
        wait(building.values(), return_when=FIRST_COMPLETED)
    out: dict[int, Proposal | RlcspError] = {}
    for i in [i for i, future in building.items() if future.done()]:
        try:
            out[i], state = building.pop(i).result()
        except RlcspError as err:
            out[i] = err
            continue
        runs[i].search.load_build_state(state)
    return out


class Timings:
    """Seconds per phase of the driver loop, added into a caller's dict (nothing kept when it gives none)."""

    def __init__(self, into: dict[str, float] | None):
        self.into = into
        self.since = 0.0

    def start(self) -> None:
        self.since = time.perf_counter()

    def lap(self, phase: str) -> None:
        if self.into is not None:
            now = time.perf_counter()
            self.into[phase] = self.into.get(phase, 0.0) + now - self.since
            self.since = now


def run_lockstep(walkers: list[tuple[SearchConfig, str | Path]], db_url: str, device: str | None = None,
                 build_workers: int | None = None, progress: bool = False,
                 on_done: Callable[[int, dict], None] | None = None, rounds: bool = False,
                 timings: dict[str, float] | None = None) -> list[dict]:
    """Run (or continue) every (config, folder) walker in lockstep, all recording into the store ``db_url``.

    Returns each walker's summary in order, or ``{"error": ...}`` for one that could not go on (the others do).
    SIGINT/SIGTERM stop all walkers cleanly after the current round, a ``stop`` file in a walker's folder only
    that walker; rerunning continues every unfinished one (a killed one from its last stored step). ``on_done(index,
    summary)`` hears of each walker as it finishes. Build workers are spawned processes, so a script that calls
    this with ``build_workers`` needs the usual ``if __name__ == "__main__":`` guard.
    """
    from tqdm import tqdm

    from rlcsp.db import Store
    from rlcsp.threads import limit_blas_threads

    limit_blas_threads()
    if not walkers:
        return []
    store = Store(db_url)
    relaxer = shared_relaxer([config for config, _ in walkers], device)
    summaries: list[dict] = [{} for _ in walkers]
    runs: dict[int, WalkerRun] = {}

    def done(i: int, summary: dict) -> None:
        summaries[i] = summary
        runs.pop(i, None)
        if on_done is not None:
            with tqdm.external_write_mode():
                on_done(i, summary)

    def failed(i: int, err: RlcspError) -> None:
        runs[i].abort()
        done(i, {"error": f"{type(err).__name__}: {err}"})

    try:
        for i, (config, folder) in enumerate(walkers):
            with walker_log(Path(folder)):
                run = WalkerRun(config, folder, progress=False, store=store, relaxer=relaxer, batched=True)
            if run.done is not None:
                done(i, run.done)
                continue
            runs[i] = run
            run.search.lockstep = True
            run.search.start_segment()
        with contextlib.ExitStack() as stack:
            signals = stack.enter_context(StopRequest())
            pool = stack.enter_context(ProcessPoolExecutor(build_workers, mp_context=get_context("spawn"),
                                                           initializer=limit_blas_threads)) if build_workers else None
            bar = stack.enter_context(tqdm(total=sum(run.config.budget for run in runs.values()),
                                           initial=sum(len(run.search.records) for run in runs.values()),
                                           unit="relax", disable=not progress, dynamic_ncols=True, desc="lockstep"))
            stops = {i: StopRequest(run.stop_file, lambda run=run: signals() or run.extra_stop())
                     for i, run in runs.items()}
            stream = RelaxStream(relaxer) if rounds else relaxer.stream()
            clock = Timings(timings)
            flying: dict[int, Proposal] = {}  # walkers whose candidate is with the relaxer
            building: dict[int, Future] = {}  # walkers whose proposal is with the pool
            while runs:
                due = {}
                clock.start()
                for i, run in list(runs.items()):
                    if i in flying or i in building:
                        continue
                    try:
                        reason = run.search.advance(stops[i])
                    except RlcspError as err:
                        failed(i, err)
                        continue
                    if reason is None:
                        due[i] = run
                    else:
                        with walker_log(run.out):
                            summary = run.finish(run.search.end_segment(reason))
                        done(i, summary)
                clock.lap("advance_s")
                if pool is None:
                    proposals = _propose(due)
                else:
                    building.update({i: pool.submit(_propose_remote, run.search.config.to_dict(), run.search.walker,
                                                    run.search.build_state()) for i, run in due.items()})
                    proposals = _built(building, runs, wait_one=not stream.pending)
                clock.lap("propose_s")
                settled = []
                for i, proposal in proposals.items():
                    if isinstance(proposal, RlcspError):
                        failed(i, proposal)
                    elif proposal.screened is not None:  # failed before any relaxation (GULP's inner cut)
                        settled.append((i, proposal, proposal.screened, 0.0))
                    else:
                        stream.submit(i, proposal.atoms)
                        flying[i] = proposal
                if stream.pending:
                    settled += [(i, flying.pop(i), result, relax_s) for i, result, relax_s in stream.poll()]
                clock.lap("relax_s")
                for i, proposal, result, relax_s in settled:
                    runs[i].search.settle(proposal, result, relax_s)
                clock.lap("settle_s")
                for i, *_ in settled:
                    runs[i].flush()
                clock.lap("store_s")
                bar.update(len(settled))
                bar.set_postfix(walkers=len(runs))
    except BaseException:
        for run in runs.values():
            run.abort()
        raise
    finally:
        relaxer.close()
        store.close()
    return summaries
