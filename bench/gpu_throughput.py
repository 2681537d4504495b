"""Relaxations per second of the batched torch engine on real search candidates, against LAMMPS on one core.

Candidates are built as the search builds them: half initial-population genomes (random, checked, rattled), half
move products (a policy's move applied to such a genome, checked, rattled). ``candidates`` writes them once
(a process pool; random genomes pass the checks 1 time in 25-700); ``relax`` relaxes them with the torch engine at
several in-flight batch sizes (optimiser and below-1.2 Å convention as options), and, with ``--peer``, the first
``--peer-n`` of them with ``LammpsRelaxer`` on one core in the same run, for the ratio and the same-minimum rate.

    python bench/gpu_throughput.py candidates --n 2048 --workers 16 --out runs/candidates
    python bench/gpu_throughput.py relax --candidates runs/candidates --device cuda --batch 512 2048 8192
    python bench/gpu_throughput.py relax --candidates runs/candidates --device cpu --batch 64 --limit 64 --peer
    python bench/gpu_throughput.py walkers --device cuda --walkers 1024 --budget 12 --processes 15
    python bench/gpu_throughput.py report bench/results/gpu_throughput_*.json

``walkers`` measures the whole loop: that many lockstep walkers (seeds 1..N, each its own run in one SQLite
store) streaming their candidates through one TorchRelaxer, as ``rlcsp compare --device`` runs them, with the
shares of time spent advancing, building, waiting for relaxations, settling and storing (with ``--processes``,
averaged over the walker processes), and the share of wall time the relaxer itself was stepping ("serve");
``--rounds`` makes every group of walkers wait for its slowest relaxation instead, for comparison.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import signal
import statistics
import threading
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from rlcsp.csp.quirks import PROFILES
from rlcsp.version import commit

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
TARGETS = {"y2ti2o7": -35.153743, "sry2o4": -24.428313, "y2o3": -27.394619}
SAME = 1e-4  # eV/atom: two relaxers reached the same minimum
HELD = {"wells": "wells", "cell": "always", "joint": "never"}  # --open's suffix: TorchRelaxer's hold_atoms
GRAPHS = {"on": True, "off": False}  # --graphs: TorchRelaxer's graphs
SAMPLE_S = 5.0  # seconds between counts of the walkers' stored steps


def _candidates(job: tuple[str, int, int]) -> list:
    """``n`` candidates of one composition from one seed: even ones random genomes, odd ones move products."""
    comp, seed, n = job
    from rlcsp.csp.config import load_script, make_config
    from rlcsp.csp.search import Search
    from rlcsp.csp.walker import Walker

    search = Search(make_config(load_script(ROOT / "inputs" / f"{comp}.py"), seed=seed), relaxer=object())
    out = []
    while len(out) < n:
        search.walker = None
        if len(out) % 2:  # a walker at a random structure, whose move the search proposes
            genome, atoms, _ = search.random_structure()
            search.walker = Walker(genome, atoms, 0.0, genome, atoms, 0.0, search.config.temperature)
        atoms = search.propose().atoms
        atoms.info.update(kind="move" if len(out) % 2 else "random", comp=comp)
        out.append(atoms)
    return out


def make_candidates(args: argparse.Namespace) -> None:
    from ase.io import write
    from tqdm import tqdm

    args.out.mkdir(parents=True, exist_ok=True)
    per = max(1, args.n // args.workers)
    for comp in args.compositions:
        jobs = [(comp, 1000 + w, per) for w in range(args.workers)]
        with ProcessPoolExecutor(args.workers) as pool:
            structures = [a for chunk in tqdm(pool.map(_candidates, jobs), total=len(jobs), desc=comp) for a in chunk]
        write(args.out / f"{comp}.extxyz", structures)
        print(f"{comp}: {len(structures)} candidates, median {statistics.median(len(a) for a in structures)} atoms")


def _plain(value):
    """numpy scalars as Python numbers, for JSON."""
    return value.item()


def summarise(results: list, target: float, wall: float) -> dict:
    ok = [r.energy_per_atom for r in results if r.ok]
    steps = [r.steps for r in results if r.failure is None or r.failure.value != "atoms_too_close"]
    fails = Counter(r.failure.value for r in results if r.failure is not None)
    n = len(results)
    return {"n": n, "wall_s": round(wall, 3), "relax_per_s": round(n / wall, 2),
            "median_steps": float(statistics.median(steps)) if steps else None,
            "p90_steps": float(np.percentile(steps, 90)) if steps else None,
            "converged": sum(r.ok for r in results), "failures": dict(fails),
            "collapse_rate": round(fails.get("exploded", 0) / n, 4),
            "gm": int(sum(e <= target + 1e-5 for e in ok)), "within_0.05": int(sum(e <= target + 0.05 for e in ok)),
            "median_energy": float(statistics.median(ok)) if ok else None}


def relax(args: argparse.Namespace) -> None:
    import torch
    from ase.io import read

    from rlcsp.calculators.torch_relax import TorchRelaxer

    rows = []
    lammps: dict[str, tuple] = {}  # the peer relaxes each composition's candidates once
    graphed: dict[tuple, list] = {}  # a row's results by everything but graphs: on and off agree?
    for comp in args.compositions:
        structures = read(args.candidates / f"{comp}.extxyz", index=":")
        limits = args.limit or [None]
        if len(limits) not in (1, len(args.batch)):
            raise SystemExit(f"--limit takes one value or one per batch ({len(args.batch)}), got {len(limits)}")
        for batch, limit in zip(args.batch, limits * len(args.batch) if len(limits) == 1 else limits):
            size = max(batch, limit or batch)
            pool = (structures * (1 + size // len(structures)))[:size]
            for optimizer, inner, opening, swap, graphs in itertools.product(args.optimizers, args.inner, args.open,
                                                                             args.swap_every, args.graphs):
                factor, gpa, held = (opening + ":wells").split(":")[:3]
                relaxer = TorchRelaxer(device=args.device, dtype=args.dtype, optimizer=optimizer, inner=inner,
                                       batch_size=batch, batch_atoms=batch * 80, open_factor=float(factor),
                                       open_gpa=float(gpa), hold_atoms=HELD[held], swap_every=swap,
                                       compile=args.compile, timed=args.phases, graphs=GRAPHS[graphs])
                if args.device == "cuda" or args.compile:
                    warm = time.perf_counter()
                    relaxer.relax(pool[:8])  # warm-up: CUDA context and kernels, or compilation
                    if args.device == "cuda":
                        torch.cuda.synchronize()
                    warm_s = time.perf_counter() - warm
                start = time.perf_counter()
                profile = args.output.with_suffix(".profile.txt") if args.profile and not rows else None
                aligned, steady = streamed(relaxer, pool, args.max_seconds, profile)
                results = [r for r in aligned if r is not None]
                if args.device == "cuda":
                    torch.cuda.synchronize()
                row = {"composition": comp, "device": args.device, "dtype": args.dtype, "batch": batch,
                       "optimizer": optimizer, "memory": relaxer.memory if optimizer == "lbfgs" else None,
                       "inner": inner, "open": f"{factor}:{gpa}:{held}",  # older rows without a suffix: joint
                       "swap_every": relaxer.swap_every, "graphs": relaxer.graphs, "spare": relaxer.spare,
                       "threads": torch.get_num_threads(),
                       "compile": relaxer.model.compiled, "commit": commit(),
                       **summarise(results, TARGETS[comp], time.perf_counter() - start), **steady,
                       "engine_steps": relaxer.stats["steps"], "pair_rebuilds": relaxer.stats["rebuilds"],
                       "relayouts": relaxer.stats["relayouts"], "captures": relaxer.stats["captures"],
                       "phases": args.phases,  # rows before 2026-12-04 synchronised at every phase on a GPU
                       "time_s": {k: round(v, 2) for k, v in relaxer.stats.items()
                                  if k.endswith("_s") and (args.phases or k == "wall_s")}}
                if args.device == "cuda" or args.compile:
                    row["warmup_s"] = round(warm_s, 2)
                if args.peer:
                    if comp not in lammps:
                        lammps[comp] = lammps_results(pool[:args.peer_n])
                    row["peer"] = peer(lammps[comp], aligned[:args.peer_n], TARGETS[comp], row)
                key = (comp, batch, limit, optimizer, inner, opening, swap)
                if key in graphed:  # the same candidates with graphs the other way: the same arithmetic?
                    row["vs_graphs_" + ("off" if relaxer.graphs else "on")] = agreement(aligned, graphed[key])
                graphed[key] = aligned
                rows.append(row)
                print(json.dumps(row, default=_plain), flush=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(rows, indent=1, default=_plain) + "\n")
    print(table(rows))


def streamed(relaxer, pool: list, max_s: float | None = None, profile: Path | None = None) -> tuple[list, dict]:
    """Relax ``pool`` through the relaxer's stream, and its rate while the batch was full.

    The whole run's rate includes the start, where every slot begins at step 0 and nothing finishes for a
    while, and the queue's draining tail, where the slowest structures relax almost alone. Results come in
    ``pool``'s order, None for one left unfinished at ``max_s``. The steady rate counts
    the relaxations finished between the first ``batch`` finishing and the queue running dry (or ``max_s``, where
    the run stops and the unfinished structures are left out): what walkers that keep the batch fed get
    (``steady_per_s``; absent when the run has no such window). ``profile`` names a file for a torch.profiler
    table of the first five seconds of that window.
    """
    stream = relaxer.stream()
    for k, atoms in enumerate(pool):
        stream.submit(k, atoms)
    results: list = [None] * len(pool)
    start, done, marks, prof, until = time.perf_counter(), 0, [], None, None
    while stream.pending:
        for k, result, _ in stream.poll():
            results[k] = result
            done += 1
        now = time.perf_counter() - start
        marks.append((now, done, stream.queued))
        if profile is not None and prof is None and done >= relaxer.batch_size:
            prof, until = _profiler(), now + 5.0
            prof.__enter__()
        if until is not None and now > until:
            _stop_profile(prof, profile)
            until = None
        if max_s is not None and now > max_s:
            break
    if until is not None:  # the run ended inside the profiled window
        _stop_profile(prof, profile)
    relaxer.stats["wall_s"] = time.perf_counter() - start
    first = next((m for m in marks if m[1] >= relaxer.batch_size), None)
    end = next((m for m in marks if m[2] == 0), marks[-1] if marks else None)
    extra = {} if done == len(pool) else {"stopped_at_s": max_s, "unfinished": len(pool) - done}
    if first is None or end is None or end[0] <= first[0]:
        return results, extra
    return results, {**extra, "steady_per_s": round((end[1] - first[1]) / (end[0] - first[0]), 2),
                     "steady_window": [round(first[0], 1), round(end[0], 1)]}


def _profiler():
    from torch.profiler import ProfilerActivity, profile

    return profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA])


def _stop_profile(prof, out: Path) -> None:
    """Stop the profiler; the kernels and host calls that cost most go to ``out``."""
    prof.__exit__(None, None, None)
    text = (prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=40) + "\n"
            + prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=40))
    out.write_text(text)
    print(text[:6000])


def lammps_results(structures: list) -> tuple[list, float]:
    """LammpsRelaxer on one core on the candidates, and its wall time."""
    from rlcsp.calculators import get_relaxer

    lammps = get_relaxer("lammps-buckingham")
    start = time.perf_counter()
    return lammps.relax(structures), time.perf_counter() - start


def peer(theirs: tuple[list, float], mine: list, target: float, row: dict) -> dict:
    """The peer's rate on the same candidates, and how often both reach the same minimum."""
    out = summarise(theirs[0], target, theirs[1])
    agreed = agreement(mine, theirs[0])
    out.update(same_minimum=agreed["same_minimum"], both_converged=agreed["both_converged"],
               torch_lower=agreed["lower"])
    row["ratio_vs_lammps"] = round(row["relax_per_s"] / out["relax_per_s"], 2)
    return out


def agreement(mine: list, theirs: list) -> dict:
    """Two relaxations of the same candidates (lists aligned, None where unfinished): where both converged, how
    often they reached the same minimum (within SAME), mine lower, and the largest energy difference."""
    both = [(a.energy_per_atom, b.energy_per_atom) for a, b in zip(mine, theirs) if a and b and a.ok and b.ok]
    return {"both_converged": len(both), "same_minimum": sum(abs(a - b) < SAME for a, b in both),
            "lower": sum(a < b - SAME for a, b in both),
            "max_abs_diff": max((abs(a - b) for a, b in both), default=None)}


def walkers(args: argparse.Namespace) -> None:
    """End-to-end lockstep walkers: relaxations per second of the whole loop, and where the time goes."""
    import tempfile

    import torch

    from rlcsp.csp.config import load_script, make_config
    from rlcsp.csp.lockstep import run_lockstep
    from rlcsp.csp.shards import in_flight

    script = load_script(ROOT / "inputs" / f"{args.composition}.py")
    configs = [make_config(script, policy=args.policy, seed=seed, budget=args.budget, fuse=args.fuse,
                           initial_population=args.initial_population, calculator="torch-buckingham",
                           calculator_options={"optimizer": args.optimizer, "graphs": args.graphs})
               for seed in range(1, args.walkers + 1)]
    with tempfile.TemporaryDirectory() as tmp:
        timings: dict[str, float] = {}
        # SIGINT to this process only, as one Ctrl-C: the walkers stop cleanly; cancelled if they finish first
        timer = threading.Timer(args.max_seconds or 0.0, os.kill, (os.getpid(), signal.SIGINT))
        if args.max_seconds:
            timer.start()
        start = time.perf_counter()
        ended = threading.Event()
        stored: list[tuple[float, int]] = []
        sampler = threading.Thread(target=_count_steps, args=(Path(tmp) / "walkers.db", start, ended, stored))
        sampler.start()
        try:
            summaries = run_lockstep([(c, Path(tmp) / f"w{c.seed}") for c in configs],
                                     f"sqlite:///{tmp}/walkers.db", device=args.device,
                                     processes=args.processes or None, progress=True, rounds=args.rounds,
                                     timings=timings)
        finally:
            timer.cancel()
            ended.set()
            sampler.join()
        wall = time.perf_counter() - start
    errors = [s["error"] for s in summaries if "error" in s]
    relaxations = sum(s.get("relaxations", 0) for s in summaries)
    row = {"composition": args.composition, "device": args.device, "walkers": args.walkers, "budget": args.budget,
           "initial_population": args.initial_population, "policy": args.policy, "fuse": args.fuse,
           "rounds": args.rounds, "processes": args.processes, "threads": torch.get_num_threads(),
           "optimizer": args.optimizer, "graphs": args.graphs,
           "commit": commit(), "relaxations": relaxations, "wall_s": round(wall, 2),
           "walker_relax_per_s": round(relaxations / wall, 2),
           "steady_relax_per_s": _steady(stored, args.max_seconds or wall), "stored_steps": stored}
    drivers = timings.pop("processes", 1)  # walker processes: their phases add up over them
    row["in_flight"] = round(share, 3) if (share := in_flight(timings)) is not None else None
    relaxing = timings.get("serve_s") or timings.get("relax_s")
    row["relaxer_relax_per_s"] = round(relaxations / relaxing, 2) if relaxing else None
    row["time_share"] = {k: round(v / wall / (1 if k in ("serve_s", "wait_s") else drivers), 3)
                         for k, v in timings.items()}
    row["errors"] = errors[:3]
    if args.max_seconds:
        row["stopped_at_s"] = args.max_seconds
    print(json.dumps(row), flush=True)
    rows = json.loads(args.output.read_text()) if args.output.exists() else []
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(rows + [row], indent=1) + "\n")
    print(walker_table(rows + [row]))


def _count_steps(db: Path, start: float, ended: threading.Event, into: list[tuple[float, int]]) -> None:
    """Every few seconds, the steps stored so far: the end-to-end rate over time, warm-up and stop apart."""
    import sqlite3

    while not ended.wait(SAMPLE_S):
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
                count = conn.execute("SELECT COUNT(*) FROM steps").fetchone()[0]
        except sqlite3.Error:  # not created yet, or busy
            continue
        into.append((round(time.perf_counter() - start, 1), count))


def _steady(stored: list[tuple[float, int]], until: float) -> float | None:
    """Steps stored per second over the second half of the run, before the stop (compile and start-up left out)."""
    window = [(t, n) for t, n in stored if until / 2 <= t <= until]
    if len(window) < 2 or window[-1][0] == window[0][0]:
        return None
    return round((window[-1][1] - window[0][1]) / (window[-1][0] - window[0][0]), 1)


def walker_table(rows: list[dict]) -> str:
    head = ("| composition | device | walkers | budget | schedule | walker processes | walker relax/s | steady | "
            "relaxer alone "
            "relax/s | share: advance / build / wait for relax / settle / store | relaxer stepping | in flight | "
            "commit |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        share = " / ".join(f"{100 * r['time_share'].get(k, 0):.0f} %" for k in
                           ("advance_s", "propose_s", "relax_s", "settle_s", "store_s"))
        lines.append(f"| {r['composition']} | {r['device']} | {r['walkers']} | {r['budget']} | "
                     f"{'rounds' if r['rounds'] else 'stream'} | {r.get('processes') or 0} | "
                     f"{r['walker_relax_per_s']} | {r.get('steady_relax_per_s', '–')} | {r['relaxer_relax_per_s']} | "
                     f"{share} | "
                     f"{_percent(r['time_share'].get('serve_s'))} | {_percent(r.get('in_flight'))} | {r['commit']} |")
    return "\n".join(lines)


def _percent(share: float | None) -> str:
    return "–" if share is None else f"{100 * share:.0f} %"


def stopped(row: dict) -> str:
    """A row stopped by --max-seconds counts only what finished by then: the faster relaxations."""
    return f" (stopped at {row['stopped_at_s']:.0f} s, {row['unfinished']} unfinished)" if "stopped_at_s" in row else ""


def table(rows: list[dict]) -> str:
    head = ("| composition | device | dtype | compile | batch | optimizer | inner | opening | swap every | relax/s "
            "| steady/s | × LAMMPS core | median steps | p90 | collapse | LAMMPS collapse | converged | GM | commit |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        lammps = f"{r['peer']['collapse_rate']:.1%}" if "peer" in r else ""
        lines.append(f"| {r['composition']} | {r['device']} | {r.get('dtype', 'float64')} | "
                     f"{'yes' if r.get('compile') else ''} | {r['batch']} | {r['optimizer']} | {r['inner']} | "
                     f"{r.get('open', '1:1')} | {r.get('swap_every', 5)} | {r['relax_per_s']} | "
                     f"{r.get('steady_per_s', '')} | {r.get('ratio_vs_lammps', '')} | {r['median_steps']:.0f} | "
                     f"{r['p90_steps']:.0f} | {r['collapse_rate']:.1%} | {lammps} | "
                     f"{r['converged']}/{r['n']}{stopped(r)} | {r['gm']} | {r['commit']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    cand = sub.add_parser("candidates", help="build search candidates once")
    cand.add_argument("--n", type=int, default=2048, help="candidates per composition")
    cand.add_argument("--workers", type=int, default=os.cpu_count(), help="processes building them")
    cand.add_argument("--out", type=Path, default=ROOT / "runs" / "candidates", help="folder for <comp>.extxyz")
    cand.add_argument("--compositions", nargs="+", default=list(TARGETS), help="input scripts by name")
    rel = sub.add_parser("relax", help="relax the candidates and write JSON")
    rel.add_argument("--candidates", type=Path, default=ROOT / "runs" / "candidates", help="folder from candidates")
    rel.add_argument("--compositions", nargs="+", default=list(TARGETS), help="which candidate files")
    rel.add_argument("--device", default="cpu", help="torch device: cpu or cuda")
    rel.add_argument("--dtype", default="float64", choices=("float64", "float32"), help="engine precision")
    rel.add_argument("--batch", type=int, nargs="+", default=[512], help="structures in flight")
    rel.add_argument("--limit", type=int, nargs="+", default=None,
                     help="relax this many (one value, or one per --batch; default: the batch size)")
    rel.add_argument("--optimizers", nargs="+", default=["lbfgs"], choices=("fire", "lbfgs"), help="optimisers")
    rel.add_argument("--inner", nargs="+", default=["keep"], choices=("keep", "gulp"),
                     help="exponential below 1.2 Å while minimising: kept (LAMMPS) or cut (GULP's model)")
    rel.add_argument("--open", nargs="+", default=["0.05:1:wells"],
                     help="opening stage as open_factor:open_gpa:held, held one of wells, cell, joint (1:inf leaves "
                          "it out; wells: the atoms of structures with a pair inside its barrier keep their fractional "
                          "coordinates while the cell opens; cell: every structure's; joint: none)")
    rel.add_argument("--profile", action="store_true",
                     help="profile five seconds of the first row's steady window (torch.profiler)")
    rel.add_argument("--max-seconds", type=float, default=None,
                     help="stop each row after this long and report the relaxations finished by then")
    rel.add_argument("--swap-every", type=int, nargs="+", default=[None],
                     help="steps between refills of the batch (default the relaxer's: 20 on a GPU, 5 on a CPU)")
    rel.add_argument("--compile", action="store_true", help="torch.compile the minimiser's model")
    rel.add_argument("--graphs", nargs="+", default=["off"], choices=list(GRAPHS),
                     help="steps between refills as CUDA graphs (emulated on a CPU)")
    rel.add_argument("--phases", action="store_true",
                     help="time each phase of a step (on a GPU a synchronisation per phase, which costs throughput)")
    rel.add_argument("--peer", action="store_true", help="also LammpsRelaxer on one core, same candidates")
    rel.add_argument("--peer-n", type=int, default=64, help="candidates the peer relaxes")
    rel.add_argument("--output", type=Path, default=RESULTS / "gpu_throughput.json", help="JSON rows")
    walk = sub.add_parser("walkers", help="end-to-end lockstep walkers on one device")
    walk.add_argument("--composition", default="y2ti2o7", help="input script by name")
    walk.add_argument("--walkers", type=int, default=64, help="walkers (seeds 1..N)")
    walk.add_argument("--budget", type=int, default=12, help="relaxations per walker")
    walk.add_argument("--initial-population", type=int, default=4, help="random structures per walker")
    walk.add_argument("--policy", default="uniform")
    walk.add_argument("--fuse", choices=sorted(PROFILES), default=None, help="FUSE profile")
    walk.add_argument("--device", default="cpu", help="torch device: cpu or cuda")
    walk.add_argument("--processes", type=int, default=0, help="walker processes around the relaxer's")
    walk.add_argument("--rounds", action="store_true", help="wait for each group's slowest relaxation")
    walk.add_argument("--optimizer", default="lbfgs", choices=("fire", "lbfgs", "cg"), help="the relaxer's")
    walk.add_argument("--graphs", action="store_true", help="the relaxer's steps between refills as CUDA graphs")
    walk.add_argument("--max-seconds", type=float, default=None,
                      help="stop every walker cleanly after this long (as Ctrl-C does) and report what was done")
    walk.add_argument("--output", type=Path, default=RESULTS / "gpu_walkers.json", help="JSON rows (appended)")
    rep = sub.add_parser("report", help="print the table of earlier JSON files")
    rep.add_argument("files", nargs="+", type=Path, help="JSON files from relax")
    args = parser.parse_args()
    if args.command == "candidates":
        make_candidates(args)
    elif args.command == "relax":
        relax(args)
    elif args.command == "walkers":
        walkers(args)
    else:
        print(table([row for f in args.files for row in json.loads(f.read_text())]))


if __name__ == "__main__":
    main()
