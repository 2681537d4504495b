"""Run one search from a config: the store, progress bar, output files and summary (``rlcsp run``)."""
from __future__ import annotations

import contextlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ase import Atoms
from ase.io import read

from rlcsp.calculators.relax import Relaxer
from rlcsp.db import Store, default_url
from rlcsp.db.buffer import StepBuffer
from rlcsp.db.locate import OWNER, folder_run
from rlcsp.exceptions import ConfigError
from rlcsp.version import code_version
from rlcsp.csp.config import SearchConfig, load_script, make_config
from rlcsp.csp.symmetry import same_structure, space_groups
from rlcsp.csp.report import RunOutput
from rlcsp.csp.search import Search
from rlcsp.csp.walker import SearchResult, StepRecord


def interrupted(stop_reason: str) -> bool:
    """Whether a run stopped before its budget or target for a reason a rerun of the same command gets past."""
    return stop_reason.startswith(("signal", "stop file", "database"))


def summarise(config: SearchConfig, result: SearchResult, run_id: int | None = None) -> dict:
    walker = result.walker
    best = walker.best_atoms
    return {
        "run_id": run_id,
        "name": config.name,
        "composition": config.comp.label,
        "best_energy": round(walker.best_energy, 6),
        "best_energy_per_fu": round(walker.best_energy * config.comp.atoms_per_fu, 6),
        "best_formula": best.get_chemical_formula(mode="metal"),
        "space_group": space_groups(best),
        "reference": None if config.reference is None else {
            "name": config.reference_name, "file": config.reference,
            "matches": bool(same_structure(best, read(config.reference_path)))},
        "target_energy": config.target_energy,
        "gm_reached": walker.gm_relaxation is not None,
        "gm_relaxation": walker.gm_relaxation,
        "relaxations": walker.relaxations,
        "wall_s": round(result.wall_s, 2),
        "policy": config.policy,
        "seed": config.seed,
        "calculator": config.calculator,
        "stop_reason": result.stop_reason,
        "outcomes": result.acceptance,
        "best_n_atoms": len(walker.best_atoms),
    }


def outcome_line(summary: dict) -> str:
    """What a run found, in words: the GM and which structure it is, or the best energy and its space group."""
    group = summary["space_group"]["symprec 0.1"].split()[0]
    best = f"best {summary['best_energy']:.6f} eV/atom ({summary['best_formula']}, {group})"
    reference = summary.get("reference") or {}
    if summary["gm_reached"]:
        what = f"{reference['name']}, {group}" if reference.get("matches") and reference.get("name") else group
        return f"found the GM ({what}) at relaxation {summary['gm_relaxation']}; {best}"
    if summary.get("target_energy") is None:
        return best
    return f"GM not reached ({summary['target_energy']:.6f} eV/atom); {best}"


def _already_done(out: Path, run_id: int) -> dict:
    """A finished run rerun with the same command: its summary, unchanged."""
    summary = json.loads((out / "summary.json").read_text())
    print(f"{summary['name']} [{summary['policy']}, seed {summary['seed']}]: finished earlier (run {run_id}): "
          f"{outcome_line(summary)}, {summary['relaxations']} relaxations; outputs in {out} are unchanged. "
          "A larger --budget extends it.")
    return summary


def _lean_params(state: dict) -> dict:
    """Policy parameters without the per-walker episode and the reward history, which live in the checkpoint;
    a 2000-step run would otherwise store the 5000-reward history 2000 times (also inside a shared policy)."""
    return {k: _lean_params(v) if isinstance(v, dict) else v for k, v in state.items()
            if k not in ("buffer", "rewards", "new_rewards")}


def records_from_rows(rows: list[dict]) -> list[StepRecord]:
    out = []
    for row in rows:
        row = dict(row)
        row["unique"] = bool(row.pop("is_unique"))
        row.pop("reward")
        row["failure"] = row["failure"] or ""
        out.append(StepRecord(**row))
    return out


class RunFolderTaken(ConfigError):
    """The output folder holds another run; nothing was changed."""


def _same_search(stored: dict, wanted: dict) -> bool:
    """Whether two configs describe the same search, a larger budget (and the population it implies) aside."""
    ignore = ("budget", "initial_population")
    return {k: v for k, v in stored.items() if k not in ignore} == {k: v for k, v in wanted.items() if k not in ignore}


def _folder_decision(store, out: Path, config: SearchConfig, new_run: bool) -> tuple[str, int | None]:
    """What to do with a folder a run already owns: ('done' | 'continue' | 'new', run id).

    The same search rerun is done (its summary is shown) or, with a larger budget or after a stop, continued; any
    other search is refused unless ``new_run``, and then the old files move to ``run<id>/`` first.
    """
    owner = folder_run(out)
    if owner is None:
        return "new", None
    url, run_id = owner
    info = store.run_info(run_id) if url == store.url else None
    if info is not None and _same_search(info["config"], config.to_dict()):
        finished = (info["status"] == "finished" and config.budget <= info["config"]["budget"]
                    and (out / "summary.json").is_file())
        return ("done" if finished else "continue"), run_id
    if not new_run:
        if info is None:
            what = f"run {run_id} of {url}, not of this command's store {store.url}"
            choices = f"Give --db {url} to continue it, choose another --out, or add"
        else:
            what = (f"run {run_id} ({info['name']}, {info['policy']}, seed {info['seed']}, {info['status']} after "
                    f"{info['relaxations']} relaxations), a different search")
            choices = "Choose another --out, or add"
        raise RunFolderTaken(f"{out} holds {what}; nothing was changed. {choices} --new-run to start a new run "
                             f"there (the old files move to {out}/run{run_id}/)")
    if (out / "pending_steps.jsonl").exists():
        raise RunFolderTaken(f"run {run_id} in {out} still has steps waiting for its database; rerun its own command "
                             "first, so that they are stored")
    keep = out / f"run{run_id}"
    keep.mkdir(exist_ok=True)
    for path in out.iterdir():
        if path.is_file() and path.name not in ("rlcsp.db", "rlcsp.db-wal", "rlcsp.db-shm"):
            path.rename(keep / path.name)
    return "new", None


@contextlib.contextmanager
def walker_log(folder: Path) -> Iterator[None]:
    """A walker's own messages go to its folder's walker.log (compare's walkers, alone on Dask or in lockstep)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "walker.log", "a") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        yield


class WalkerRun:
    """One search as a run in the store and its folder, whoever advances it: ``execute`` alone, or
    rlcsp.csp.lockstep with other walkers (a shared ``store`` and ``relaxer``, and ``batched`` writes).

    Opening decides about the folder, creates or resumes the run and restores the search from its last stored
    step; ``done`` is then the summary of a run that had already finished (nothing else happens). Each record is
    queued with the checkpoint it leaves and written by ``flush``: at once unless ``batched``, when the driver
    flushes every walker after each batch of relaxations.
    """

    def __init__(self, config: SearchConfig, out: str | Path, progress: bool = True, db_url: str | None = None,
                 resume: int | None = None, outage_s: float = 5.0, max_outage_s: float = 600.0,
                 shared_policy: str | None = None, new_run: bool = False, store: Store | None = None,
                 relaxer: Relaxer | None = None, batched: bool = False):
        from tqdm import tqdm

        self.out = out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        self.done: dict | None = None
        self.max_outage_s = max_outage_s
        self.batched = batched
        self._owns_store = store is None
        # Each write gives up quickly when the server is away; StepBuffer then queues steps until it is back.
        self.store = store = store or Store(db_url or config.db or default_url(out), outage_s=outage_s)
        if resume is None:
            decision, owner = _folder_decision(store, out, config, new_run)
            if decision == "done":
                self.close()
                self.done = _already_done(out, owner)
                return
            resume = owner
        if resume is not None:
            info = store.run_info(resume)
            config = make_config(info["config"], budget=max(config.budget, info["config"]["budget"]))
            run_id = resume
        else:
            run_id = store.find_run(config.to_dict())
            info = store.run_info(run_id) if run_id is not None else None
        policy = None
        if shared_policy:
            from rlcsp.policies import get_policy
            from rlcsp.policies.shared import SharedPolicy

            policy = SharedPolicy(get_policy(config.policy, **config.policy_options), store, shared_policy, run_id)
        self.config = config
        self.search = search = Search(config, relaxer=relaxer, policy=policy, on_record=self._on_record)
        self.buffer = (StepBuffer(store, run_id, out / "pending_steps.jsonl", max_outage_s) if run_id is not None
                       else None)
        if self.buffer is not None:
            info = store.run_info(run_id)  # after flushing steps buffered during an earlier outage
        if info is not None and info["state"] is not None:
            records = records_from_rows(store.steps(run_id))
            search.restore(info["state"], records,
                           lambda: [(s["energy"], s["atoms"]) for s in store.structures(run_id)])
            store.add_code_version(run_id, code_version())
            print(f"resuming run {run_id} ({config.name}, {config.policy}, seed {config.seed}) after relaxation "
                  f"{info['relaxations']} from {store.url}", file=sys.stderr)
        elif run_id is None:
            run_id = store.create_run(config.to_dict(), config.name, config.comp.label, config.policy, config.seed,
                                      config.calculator, code_version(), policy_id=shared_policy)
            (out / OWNER).write_text(json.dumps({"run_id": run_id, "db": store.url}) + "\n")
            if policy is not None:
                policy.run_id = run_id
            self.buffer = StepBuffer(store, run_id, out / "pending_steps.jsonl", max_outage_s)
        self.run_id = run_id
        store.set_status(run_id, "running")
        self.output = RunOutput(out, search.records)
        self.bar = tqdm(total=config.budget, initial=len(search.records), unit="relax", disable=not progress,
                        dynamic_ncols=True, desc=f"{config.name} {config.policy} seed {config.seed}")
        self.stop_file = out / "stop"
        self._stop_now: list[str] = []
        self._queue: list[tuple] = []
        self._last_params: dict | None = None

    def extra_stop(self) -> str | None:
        """Why the run must stop besides a signal or its stop file: the database away for too long."""
        return self._stop_now[0] if self._stop_now else None

    def _on_record(self, record: StepRecord, walker, new) -> None:
        search = self.search
        best = walker.best_energy if walker is not None else (search.init_best[0] if search.init_best else None)
        gm = walker.gm_relaxation if walker is not None else search.initial_gm()
        state = search.checkpoint()
        lean = _lean_params(state["policy"])
        params = lean if lean != self._last_params else None  # only when they changed
        self._last_params = lean
        self._queue.append((record, state, new, {"best_energy": best, "gm_relaxation": gm, "policy_params": params}))
        if not self.batched:
            self.flush()
        self.output.record(record, walker)
        self.bar.update(1)
        if best is not None:
            self.bar.set_postfix(best=f"{best:.6f}")

    def flush(self) -> None:
        """Store the queued records in order (StepBuffer keeps them locally while the database is away)."""
        for record, state, new, fields in self._queue:
            self.buffer.record(record, state, new, **fields)
        self._queue.clear()
        if self.buffer.expired and not self._stop_now:
            self._stop_now.append(f"database unreachable for over {self.max_outage_s:.0f} s")

    def close(self) -> None:
        if self._owns_store:
            self.store.close()

    def abort(self) -> None:
        """The driver failed: the run is marked interrupted, and a rerun resumes it from its last stored step."""
        self.bar.close()
        try:
            self.store.set_status(self.run_id, "interrupted")
        finally:
            self.close()

    def finish(self, result: SearchResult, command: str | None = None) -> dict:
        """Store what is queued, mark the run, write summary.json and the other outputs; the summary."""
        config, search, buffer, store, out = self.config, self.search, self.buffer, self.store, self.out
        self.bar.close()
        self.flush()
        stopped_early = interrupted(result.stop_reason)
        self.stop_file.unlink(missing_ok=True)  # the run has stopped: rerunning the same command continues it
        if buffer.flush():
            store.set_status(self.run_id, "interrupted" if stopped_early else "finished")
        summary = summarise(config, result, self.run_id)
        summary["candidate_acceptance"] = search.tally
        summary["settings"] = search.effective_settings()
        moves = [r.move for r in result.records if r.kind == "S"]
        summary["relaxations_per_move"] = {str(m): moves.count(m) for m in sorted(set(moves))}
        summary["db"] = store.url
        # a lockstep stop ends hundreds of walkers at once, and their figures (seconds each) would outlast the
        # grace a batch job gets before SIGKILL: they are drawn when the walker finishes
        self.output.finish(result, summary, figures=not (stopped_early and self.batched))
        self.close()
        print(f"{config.name} [{config.policy}, seed {config.seed}]: {outcome_line(summary)}, "
              f"{summary['relaxations']} relaxations in {summary['wall_s']:.1f} s ({result.stop_reason}); "
              f"outputs in {out}")
        kept = (f"every step is stored in {store.url} (run {self.run_id})" if not buffer.pending else
                f"{len(buffer.pending)} steps wait in {buffer.path} for {store.url} (run {self.run_id})")
        if stopped_early:
            print(f"Stopped cleanly after relaxation {summary['relaxations']}: {result.stop_reason}; {kept}. "
                  f"To continue, rerun {command or 'the same command'} or add --resume {self.run_id}.",
                  file=sys.stderr)
        elif buffer.pending:
            print(f"The search finished but the database is away: {kept}. Rerun {command or 'the same command'} "
                  "when it is back to store them.", file=sys.stderr)
        return summary


def execute(config: SearchConfig, out: str | Path, progress: bool = True, command: str | None = None,
            db_url: str | None = None, resume: int | None = None, outage_s: float = 5.0,
            max_outage_s: float = 600.0, shared_policy: str | None = None, new_run: bool = False) -> dict:
    """Run (or continue) a search, recording every step in the store and writing outputs into ``out``.

    A folder belongs to one run. Rerunning the same command continues that run after a stop or crash, extends it
    when the budget grew, and otherwise only prints its summary: a finished run is never overwritten. A folder
    holding another search is refused (RunFolderTaken) unless ``new_run``.
    """
    from rlcsp.threads import limit_blas_threads

    limit_blas_threads()
    run = WalkerRun(config, out, progress=progress, db_url=db_url, resume=resume, outage_s=outage_s,
                    max_outage_s=max_outage_s, shared_policy=shared_policy, new_run=new_run)
    if run.done is not None:
        return run.done
    try:
        result = run.search.run(stop_file=run.stop_file, extra_stop=run.extra_stop)
    except BaseException:
        run.abort()
        raise
    return run.finish(result, command)


@dataclass
class RunResult:
    """What ``rlcsp.search`` returns: the run's summary (as in summary.json), its best structure and folder."""

    summary: dict
    best_atoms: Atoms
    out: Path

    @property
    def best_energy(self) -> float:
        """Lowest energy found, eV/atom."""
        return self.summary["best_energy"]

    @property
    def gm_relaxation(self) -> int | None:
        """The relaxation at which the target (GM) energy was first reached, or None."""
        return self.summary["gm_relaxation"]

    @property
    def relaxations(self) -> int:
        return self.summary["relaxations"]


def search(script: str | Path | dict | SearchConfig, out: str | Path | None = None, progress: bool = True,
           db_url: str | None = None, **overrides) -> RunResult:
    """Run (or continue) one search: an input script, its CONFIG dict or a SearchConfig, with overrides such as
    ``policy="uniform", seed=3, budget=300, fuse="1.06"``; outputs go to ``out`` (default
    runs/<name>-<policy>-seed<seed>), every step to the store, exactly as ``rlcsp run`` does."""
    if isinstance(script, SearchConfig):
        config = make_config(script.to_dict(), **overrides) if overrides else script
    else:
        config = make_config(script if isinstance(script, dict) else load_script(script), **overrides)
    out = Path(out or Path("runs") / f"{config.name}-{config.policy}-seed{config.seed}")
    summary = execute(config, out, progress=progress, db_url=db_url)
    store = Store(summary["db"])
    try:
        best = min(store.structures(summary["run_id"]), key=lambda s: s["energy"])["atoms"]
    finally:
        store.close()
    return RunResult(summary, best, out)
