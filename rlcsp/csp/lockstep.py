"""Lockstep walkers: many searches advance together, their candidates relaxing side by side in one batch.

Every walker is a normal run (rlcsp.csp.run.WalkerRun): its own config, seed stream, policy, folder and run in
the store, resumed from its last stored step after a crash. The driver (``drive``) asks every walker without a
candidate in flight whether a relaxation is due (``Search.advance``), submits its proposal to the relaxer's
stream (``Relaxer.stream``), and settles each walker as soon as its own result comes back, storing its record. A
plain relaxer's stream relaxes each such group with one ``relax`` call (rounds); a batched one (TorchRelaxer)
keeps its batch full: a walker whose relaxation finished proposes again and its candidate joins the batch at the
next refill, so no walker waits for the slowest relaxation of a round. Nothing a walker draws depends on the
others, so its trajectory is exactly the one it has alone with the same relaxer; walkers in different phases
(initial population, search) mix freely and finished ones drop out.

With ``processes`` the walkers are split into that many walker processes around the relaxer's own
(rlcsp.csp.shards): a GPU relaxes a thousand candidates faster than one core can build, settle and store them.
"""
from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Callable, Iterator

from rlcsp.calculators import get_relaxer
from rlcsp.calculators.relax import Relaxer, RelaxStream
from rlcsp.csp.config import SearchConfig
from rlcsp.csp.propose import Proposal
from rlcsp.csp.run import WalkerRun, walker_log
from rlcsp.csp.search import relaxer_options
from rlcsp.csp.stop import StopRequest
from rlcsp.exceptions import CalculatorFailed, ConfigError, RlcspError

Done = Callable[[int, dict], None]

# After SIGINT/SIGTERM the relaxations in flight get this long to come back. Draining takes minutes otherwise: the
# last ones are the slowest, up to the relaxer's step cap in a nearly empty batch (16 walkers of 1200 were still
# waiting 2 minutes after a SIGTERM on the H100). A walker still waiting then stops at its last stored step, and a
# rerun proposes the same candidate again from the same draws.
STOP_GRACE_S = 20.0
# How often walkers waiting on the relaxer look for a stop.
POLL_S = 1.0


def shared_relaxer(configs: list[SearchConfig], device: str | None = None, graphs: bool = False) -> Relaxer:
    """The one relaxer of all walkers, which must therefore name the same engine and options.

    ``device`` other than cpu reaches the engine as its ``device`` option (an engine without one is refused);
    the LAMMPS Buckingham engine becomes its torch twin there. cpu, or None, is the engine as the configs make it.
    ``graphs`` replays the torch engine's steps as CUDA graphs (the same arithmetic, so not part of a walker's
    config: a campaign can switch it between calls; summary.json's settings record it).
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
    if graphs:
        if engine != "torch-buckingham":
            raise ConfigError(f"graphs replay the torch engine's steps; {engine} has none (add --device cuda)")
        options["graphs"] = True
    try:
        return get_relaxer(engine, **options)
    except (TypeError, CalculatorFailed) as err:
        raise ConfigError(f"engine {engine} cannot run on {device} ({err}); leave out --device, "
                          "or choose an engine with a device option") from err


def _propose(due: dict[int, WalkerRun]) -> Iterator[tuple[int, Proposal | RlcspError]]:
    """Every due walker's proposal as it is built (so that it can join the batch at once, not after the rest of
    the due walkers' builds); a walker that cannot build gets its error."""
    for i, run in due.items():
        try:
            yield i, run.search.propose()
        except RlcspError as err:
            yield i, err


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


def drive(walkers: list[tuple[int, SearchConfig, Path]], store, relaxer: Relaxer, stream: RelaxStream,
          done: Done, progress: bool = False, on_open: Callable[[int, int], None] | None = None,
          timings: dict[str, float] | None = None, stop: Callable[[], str | None] | None = None) -> None:
    """Open the ``(index, config, folder)`` walkers and advance them in lockstep through ``stream`` until each
    has finished, stopped or failed, telling ``done(index, summary)`` (``{"error": ...}`` for a failure).

    ``relaxer`` is what the walkers' runs record as theirs; ``on_open(budget, relaxed)`` hears the relaxations
    the opened walkers have left and have done. SIGINT/SIGTERM (or ``stop``, which then replaces them) stop every
    walker after its relaxation in flight (or, past ``STOP_GRACE_S``, without it), a ``stop`` file in a walker's
    folder that walker.
    """

    from tqdm import tqdm

    runs: dict[int, WalkerRun] = {}

    def finish(i: int, summary: dict) -> None:
        runs.pop(i, None)
        with tqdm.external_write_mode():
            done(i, summary)

    def failed(i: int, err: RlcspError) -> None:
        runs[i].flush()
        runs[i].abort()
        finish(i, {"error": f"{type(err).__name__}: {err}"})

    def dropped(i: int, reason: str) -> None:
        """Stopped while its candidate relaxes: nothing of it is stored, the run stays at its last stored step
        (which may lie in the initial population, before the walker that a full summary describes)."""
        run = runs[i]
        run.flush()
        run.abort()
        finish(i, {"run_id": run.run_id, "name": run.config.name, "policy": run.config.policy,
                   "seed": run.config.seed, "relaxations": len(run.search.records),
                   "stop_reason": f"{reason}, its relaxation in flight dropped"})

    try:
        for i, config, folder in walkers:
            with walker_log(Path(folder)):
                run = WalkerRun(config, folder, progress=False, store=store, relaxer=relaxer, batched=True)
            if run.done is not None:
                finish(i, run.done)
                continue
            runs[i] = run
            run.search.lockstep = True
            run.search.start_segment()
        budget = sum(run.config.budget for run in runs.values())
        relaxed = sum(len(run.search.records) for run in runs.values())
        if on_open is not None:
            on_open(budget, relaxed)
        signalled = StopRequest() if stop is None else contextlib.nullcontext(stop)
        with signalled as signals, tqdm(total=budget, initial=relaxed, unit="relax", disable=not progress,
                                        dynamic_ncols=True, desc="lockstep") as bar:
            stops = {i: StopRequest(run.stop_file, lambda run=run: signals() or run.extra_stop())
                     for i, run in runs.items()}
            clock = Timings(timings)
            flying: dict[int, Proposal] = {}  # walkers whose candidate is with the relaxer
            settled_runs: list[int] = []  # walkers whose last step is settled but not yet stored
            stopping_since: float | None = None
            while runs:
                if stopping_since is None and signals():
                    stopping_since = time.monotonic()
                due = {}
                clock.start()
                for i, run in list(runs.items()):
                    if i in flying:
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
                        finish(i, summary)
                clock.lap("advance_s")
                screened = []
                for i, proposal in _propose(due):
                    if isinstance(proposal, RlcspError):
                        failed(i, proposal)
                    elif proposal.screened is not None:  # failed before any relaxation (GULP's inner cut)
                        screened.append((i, proposal, proposal.screened, 0.0))
                    else:
                        stream.submit(i, proposal.atoms)
                        flying[i] = proposal
                clock.lap("propose_s")
                # the steps settled last time are stored while their walkers' next candidates relax (each was
                # queued with the checkpoint it leaves, so the later write changes nothing a rerun reads)
                for i in settled_runs:
                    if i in runs:
                        runs[i].flush()
                clock.lap("store_s")
                settled = screened
                if stream.pending:
                    wait = (POLL_S if stopping_since is None
                            else max(0.0, stopping_since + STOP_GRACE_S - time.monotonic()))
                    settled += [(i, flying.pop(i), result, relax_s)
                                for i, result, relax_s in stream.poll(timeout=wait)]
                clock.lap("relax_s")
                for i, proposal, result, relax_s in settled:
                    runs[i].search.settle(proposal, result, relax_s)
                settled_runs = [i for i, *_ in settled]
                clock.lap("settle_s")
                if stopping_since is not None and time.monotonic() >= stopping_since + STOP_GRACE_S:
                    for i in flying:
                        dropped(i, signals())
                    flying.clear()
                bar.update(len(settled))
                bar.set_postfix(walkers=len(runs))
    except BaseException:
        for run in runs.values():
            run.abort()
        raise


def run_lockstep(walkers: list[tuple[SearchConfig, str | Path]], db_url: str, device: str | None = None,
                 processes: int | None = None, progress: bool = False, on_done: Done | None = None,
                 rounds: bool = False, timings: dict[str, float] | None = None, graphs: bool = False) -> list[dict]:
    """Run (or continue) every (config, folder) walker in lockstep, all recording into the store ``db_url``.

    Returns each walker's summary in order, or ``{"error": ...}`` for one that could not go on (the others do).
    SIGINT/SIGTERM stop all walkers cleanly, a ``stop`` file in a walker's folder only that walker; rerunning
    continues every unfinished one (a killed one from its last stored step). ``on_done(index, summary)`` hears of
    each walker as it finishes. ``processes`` (walker processes around this one's relaxer) are spawned, so a
    script that passes it needs the usual ``if __name__ == "__main__":`` guard. ``timings`` receives seconds per
    phase of the drivers' loops (summed over walker processes, with the relaxer's own as ``serve_s``); ``graphs``
    as for ``shared_relaxer``.
    """
    from rlcsp.db import Store
    from rlcsp.threads import limit_blas_threads

    limit_blas_threads()
    if not walkers:
        return []
    relaxer = shared_relaxer([config for config, _ in walkers], device, graphs)
    summaries: list[dict] = [{} for _ in walkers]

    def done(i: int, summary: dict) -> None:
        summaries[i] = summary
        if on_done is not None:
            on_done(i, summary)

    indexed = [(i, config, Path(folder)) for i, (config, folder) in enumerate(walkers)]
    try:
        stream = RelaxStream(relaxer) if rounds else relaxer.stream()
        if processes:
            from rlcsp.csp.shards import serve

            serve(indexed, db_url, relaxer, stream, processes, done, progress, timings)
        else:
            store = Store(db_url)
            try:
                drive(indexed, store, relaxer, stream, done, progress=progress, timings=timings)
            finally:
                store.close()
    finally:
        relaxer.close()
    return summaries
