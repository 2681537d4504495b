"""Lockstep walkers in several processes around one relaxer: this process relaxes, walker processes run walkers.

A GPU relaxes a thousand candidates at a time, faster than one core can build them (random genomes pass the
checks 1 time in 25-677), settle them (the uniqueness test) and store them: with 1024 Y2Ti2O7 walkers in one
process the H200 ran at under half its relaxation rate. So ``serve`` splits the walkers into shares, one per
spawned walker process, each running ``rlcsp.csp.lockstep.drive`` on its share with its own store connection,
and relaxes what they submit through the one relaxer's stream, sending each result back to its walker's process.
A walker stays whole in one process, so its draws are its own as before; only the order in which candidates join
the batch depends on timing, and the relaxer's results do not (exactly for a per-structure relaxer such as
LAMMPS', to rounding for the batched torch one, see TorchStream).

SIGINT/SIGTERM here are passed on to the walker processes, which stop their walkers after the relaxations in
flight, served for a grace period (rlcsp.csp.lockstep.STOP_GRACE_S). A walker process that dies fails its
unfinished walkers, and the others go on; one whose relaxer process is gone exits without writing, as after a
SIGKILL of both, so a rerun resumes every walker from its last stored step. One still there ``FORCE_AFTER_S``
after the grace (held outside its stream: a build, a store's lock) is killed so, its stack first written to
stderr: a campaign's stop then costs the grace and no more, and its log says where the walker process was.
"""
from __future__ import annotations

import faulthandler
import os
import queue
import signal
import time
import traceback
from multiprocessing import get_context, parent_process
from pathlib import Path
from typing import Any

from ase import Atoms

from rlcsp.calculators.processes import die_with_parent
from rlcsp.calculators.relax import Relaxer, RelaxResult, RelaxStream
from rlcsp.csp.config import SearchConfig, make_config
from rlcsp.csp.lockstep import STOP_GRACE_S
from rlcsp.csp.search import relaxer_settings
from rlcsp.csp.stop import StopRequest

# A walker process checks this often that the relaxer's process is still there while it waits for a result.
PARENT_CHECK_S = 1.0
# Once a stop is passed on, the relaxer's process relaxes in slices this long, reading the walker processes' news
# in between (they stop their walkers within rlcsp.csp.lockstep.STOP_GRACE_S and exit).
STOPPING_POLL_S = 0.5
# A walker process still there this long after the grace is killed (its walkers resume as after a SIGKILL).
FORCE_AFTER_S = 10.0


class _Remote(Relaxer):
    """What a walker process's runs record as their relaxer: the name, device and settings
    (``rlcsp.csp.search.relaxer_settings``) of the one that serves them."""

    def __init__(self, name: str, device: str, settings: dict[str, Any]):
        self.name = name
        self.device = device
        for key, value in settings.items():
            setattr(self, key, value)

    def relax_one(self, atoms: Atoms) -> RelaxResult:
        raise RuntimeError("a walker process relaxes through its stream")


class RemoteStream(RelaxStream):
    """A walker process's stream: structures go to the relaxer's process, results come back in any order."""

    def __init__(self, relaxer: Relaxer, share: int, requests, replies):
        super().__init__(relaxer)
        self.share, self.requests, self.replies = share, requests, replies
        self._pending = 0

    def submit(self, key: Any, atoms: Atoms) -> None:
        self.requests.put(("relax", self.share, key, atoms))
        self._pending += 1

    @property
    def pending(self) -> int:
        return self._pending

    def poll(self, timeout: float | None = None) -> list[tuple[Any, RelaxResult, float]]:
        out = []
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._pending and not out:
            wait = PARENT_CHECK_S if deadline is None else min(PARENT_CHECK_S, deadline - time.monotonic())
            if wait <= 0:
                break
            try:
                out.append(self.replies.get(timeout=wait))
            except queue.Empty:
                if not parent_process().is_alive():
                    os._exit(1)  # nothing is queued unstored between polls: as if killed with the relaxer
        while True:
            try:
                out.append(self.replies.get_nowait())
            except queue.Empty:
                break
        self._pending -= len(out)
        return out


def in_flight(timings: dict[str, float]) -> float | None:
    """The share of the live walkers whose candidate the relaxer held while it stepped (``serve``'s timings;
    the walker-seconds behind it are taken out of ``timings``): what the host leaves the batch."""
    relaxing, live = timings.pop("relaxing_walker_s", None), timings.pop("live_walker_s", None)
    return relaxing / live if live else None


def _share_main(share: int, walkers: list[tuple[int, dict, str]], db_url: str, requests, replies, stop_signal,
                name: str, device: str, settings: dict[str, Any]) -> None:
    """A walker process: drive its share of the walkers, reporting each one's end and its loop's timings.

    A terminal's Ctrl-C reaches every process of the group; the walker processes leave signals to the relaxer's,
    which passes a stop on through ``stop_signal`` (a signal number), so one Ctrl-C is one clean stop.
    """
    from rlcsp.csp.lockstep import drive
    from rlcsp.db import Store
    from rlcsp.threads import limit_blas_threads

    die_with_parent(signal.SIGKILL)  # on Linux the kernel ends us with the relaxer's process; the poll checks too
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # the stack, asked for before a forced end
    limit_blas_threads()
    timings: dict[str, float] = {}
    relaxer = _Remote(name, device, settings)
    store = Store(db_url)
    try:
        drive([(i, make_config(config), Path(folder)) for i, config, folder in walkers], store, relaxer,
              RemoteStream(relaxer, share, requests, replies), lambda i, summary: requests.put(("done", i, summary)),
              on_open=lambda budget, relaxed: requests.put(("open", budget, relaxed)), timings=timings,
              stop=lambda: f"signal {signal.Signals(stop_signal.value).name}" if stop_signal.value else None)
    except BaseException as err:
        requests.put(("crash", share, "".join(traceback.format_exception_only(type(err), err)).strip()))
    finally:
        store.close()
    requests.put(("exit", share, timings))


def serve(walkers: list[tuple[int, SearchConfig, Path]], db_url: str, relaxer: Relaxer, stream: RelaxStream,
          processes: int, done, progress: bool = False, timings: dict[str, float] | None = None) -> None:
    """Run the ``(index, config, folder)`` walkers in ``processes`` walker processes, relaxing through ``stream``
    here; ``done(index, summary)`` as each walker ends (``{"error": ...}`` for one whose process failed)."""
    from tqdm import tqdm

    context = get_context("spawn")
    requests = context.Queue()
    n = max(1, min(processes, len(walkers)))
    shares = [walkers[k::n] for k in range(n)]
    replies = [context.Queue() for _ in range(n)]
    for reply in replies:  # a walker process that died leaves its replies unread: exit without flushing them
        reply.cancel_join_thread()
    stop_signal = context.Value("i", 0)
    device = str(getattr(relaxer, "device", "cpu"))
    settings = relaxer_settings(relaxer)
    workers = [context.Process(target=_share_main, name=f"rlcsp-walkers-{k}", daemon=True,
                               args=(k, [(i, c.to_dict(), str(f)) for i, c, f in share], db_url, requests,
                                     replies[k], stop_signal, relaxer.name, device, settings))
               for k, share in enumerate(shares)]
    ended: set[int] = set()
    live = set(range(n))
    crashes: dict[int, str] = {}
    clock = {"serve_s": 0.0, "wait_s": 0.0, "relaxing_walker_s": 0.0, "live_walker_s": 0.0}

    def end(k: int, why: str) -> None:
        live.discard(k)
        for i, *_ in shares[k]:
            if i not in ended:
                ended.add(i)
                done(i, {"error": why})

    def force(k: int, waited: float) -> None:
        worker = workers[k]
        if worker.exitcode is None:
            os.kill(worker.pid, signal.SIGUSR1)
            worker.join(timeout=1.0)
            worker.kill()
            worker.join(timeout=2.0)
        end(k, f"walker process killed {waited:.0f} s after the stop (its stack is on stderr)")

    def take(message: tuple) -> None:
        kind = message[0]
        if kind == "relax":
            _, k, i, atoms = message
            stream.submit((k, i), atoms)
        elif kind == "done":
            ended.add(message[1])
            with tqdm.external_write_mode():
                done(message[1], message[2])
        elif kind == "open":
            bar.total += message[1]
            bar.update(message[2])
        elif kind == "crash":
            crashes[message[1]] = message[2]
        elif kind == "exit":
            for phase, seconds in message[2].items():
                clock[phase] = clock.get(phase, 0.0) + seconds
            end(message[1], f"walker process failed: {crashes.get(message[1], 'no summary')}")

    try:
        with StopRequest() as signals, tqdm(total=0, unit="relax", disable=not progress, dynamic_ncols=True,
                                            desc=f"lockstep, {n} walker processes") as bar:
            for worker in workers:
                worker.start()
            stopping_since: float | None = None
            while live:
                if signals.signal and not stop_signal.value:
                    stop_signal.value = signal.Signals[signals.signal].value
                    stopping_since = time.monotonic()
                if stopping_since is not None and time.monotonic() > stopping_since + STOP_GRACE_S + FORCE_AFTER_S:
                    for k in sorted(live):
                        force(k, time.monotonic() - stopping_since)
                started = time.perf_counter()
                try:  # wait a little for work only when nothing relaxes
                    take(requests.get(timeout=0.05) if not stream.pending else requests.get_nowait())
                    while True:
                        take(requests.get_nowait())
                except queue.Empty:
                    pass
                for k in list(live):
                    if workers[k].exitcode is not None and requests.empty():
                        end(k, f"walker process died (exit code {workers[k].exitcode})")
                clock["wait_s"] += time.perf_counter() - started
                if stream.pending:  # once stopping, briefly: the walker processes' exits are read in between
                    started, relaxing = time.perf_counter(), stream.pending
                    results = stream.poll(timeout=STOPPING_POLL_S if stop_signal.value else None)
                    for (k, i), result, relax_s in results:
                        replies[k].put((i, result, relax_s))
                    served = time.perf_counter() - started
                    clock["serve_s"] += served
                    # walker-seconds with the relaxer and alive, over the relaxer's steps: their ratio is the
                    # share of the walkers whose candidate the batch holds (the rest are on the host)
                    clock["relaxing_walker_s"] += served * relaxing
                    clock["live_walker_s"] += served * (len(walkers) - len(ended))
                    bar.update(len(results))
                    # how full the batch is and (a batched stream) its steps so far: a campaign's log shows the pace
                    bar.set_postfix(walkers=len(walkers) - len(ended), relaxing=stream.pending,
                                    steps=getattr(stream, "steps", "-"))
    finally:
        for worker in workers:  # normally gone already; after an error here, as if killed with this process
            worker.join(timeout=0 if worker.exitcode is not None else 2)
            if worker.is_alive():
                worker.kill()
    if timings is not None:
        for phase, seconds in clock.items():
            timings[phase] = timings.get(phase, 0.0) + seconds
        timings["processes"] = n
