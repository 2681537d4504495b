"""FUSE's fixed policies on the paper compositions: success rate and relaxations-to-GM per policy.

Every (composition, policy, seed) walker is an independent `rlcsp` search in its own process; runs stop at the
target (GM) energy, so relaxations-to-GM is the relaxation at which the GM was first reached, censored at the
budget for runs that never reach it. The reference column is FUSE's published success count out of 40 runs.

A 2000-relaxation walker takes 10 to 45 minutes of one core here (SrY2O4 to Y2Ti2O7), so the results
accumulate: each invocation merges its walkers into ``bench/results/<tag>.json`` (keyed by composition, policy and
seed, with the commit that ran each), and ``--first-seed`` lets a later invocation, or another machine, add seeds
to the same table. SIGINT or SIGTERM, to the bench alone or to its whole process group, stops it cleanly: running
walkers finish their step and are reported as cut short, and queued ones never start (their folders, and any
earlier run in them, are left alone).

    python bench/csp_fuse_policies.py --compositions y2ti2o7 sry2o4 --policies original uniform --seeds 4
    python bench/csp_fuse_policies.py --compositions y2ti2o7 --seeds 2 --first-seed 5   # two more seeds
    python bench/csp_fuse_policies.py --fuse 1.06 --policies uniform --tag csp_fuse106   # FUSE 1.06's own loop
    python bench/csp_fuse_policies.py --fuse 1.06 --policies uniform --tag csp_fuse106 --resume  # go on after a stop

The mode (``--fuse``, ``--quirks``, ``--without``) is checked against what every walker's summary.json says it
ran with (``settings.mode``), and the table gives per row the share of relaxations per move, the pass rate of
move candidates, the spread of best energies and a Fisher exact p-value against FUSE's count of 40.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import signal
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from rlcsp.csp.walker_stats import FUSE_COUNTS
from rlcsp.stats import fisher_p
from rlcsp.csp.quirks import PROFILES
from rlcsp.version import commit as current_commit

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
WALKER_COMMIT = "bench_commit.txt"  # in each walker's folder: the commit that ran it


STOPPING = None  # in each worker: the bench-wide Event set once a stop is requested


def init_worker(stopping) -> None:
    """Workers keep Python's default signal handling; each search installs its own clean-stop handler."""
    global STOPPING
    STOPPING = stopping
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def walker(script: str, policy: str, seed: int, budget: int, out: str, mode: dict, commit: str,
           calculator: str | None = None, resume: bool = False) -> dict | None:
    """One search in a worker process, in a fresh output folder unless ``resume``.

    With ``resume`` a walker cut short by an earlier invocation of the same commit continues from its last stored
    step (the run's own exact resume) and a finished one is only reported; a folder of another commit is refused,
    so one walker never mixes two versions of the code. Once the bench is stopping, a walker that has not started
    yet returns None and leaves its folder alone, so an earlier run kept there is not wiped by a job that would
    only be stopped at once.
    """
    import shutil

    from rlcsp.csp.config import load_script, make_config
    from rlcsp.csp.run import execute

    if STOPPING is not None and STOPPING.is_set():
        return None
    folder = Path(out)
    if resume and (folder / WALKER_COMMIT).exists():
        if walker_commit(folder) != commit:
            raise SystemExit(f"{folder} was run by {walker_commit(folder)}, this bench is {commit}: "
                             "resume with that commit, or drop --resume to start it again")
    else:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        (folder / WALKER_COMMIT).write_text(commit)
    config = make_config(load_script(script), policy=policy, seed=seed, budget=budget, calculator=calculator,
                         **mode)
    summary = execute(config, out, progress=False)
    if summary["stop_reason"].startswith("signal") and STOPPING is not None:
        STOPPING.set()  # the signal may have reached the workers only: their queued jobs must not start either
    summary["wall_per_relaxation_s"] = summary["wall_s"] / max(summary["relaxations"], 1)
    summary["commit"] = commit
    return summary


def in_progress(args, jobs, summaries) -> list[dict]:
    """Walkers still running when the report is written: censored at their current relaxation count."""
    import csv

    done = {key(s) for s in summaries}  # incl. stopped ones
    partial = []
    for c, p, s in jobs:
        path = walker_folder(args, (c, p, s)) / "steps.csv"
        if (c, p, s) in done or not path.exists():
            continue
        rows = list(csv.DictReader(path.open()))
        if rows:
            energies = [float(r["e_new"]) for r in rows if r["e_new"]]
            partial.append({"composition": {x.lower(): x for x in FUSE_COUNTS}[c], "policy": p, "seed": s,
                            "gm_reached": False, "gm_relaxation": None, "relaxations": len(rows),
                            "best_energy": min(energies) if energies else None, "wall_s": None,
                            "candidate_acceptance": None, "running": True,
                            "commit": walker_commit(path.parent)})
    return partial


def walker_folder(args, job: tuple[str, str, int]) -> Path:
    composition, policy, seed = job
    return Path(args.runs) / f"{composition}-{policy}-seed{seed}"


def walker_commit(folder: Path) -> str:
    path = folder / WALKER_COMMIT
    return path.read_text() if path.exists() else "unknown"


def cut_short(run: dict) -> bool:
    """Still running, or interrupted before its budget (signal, stop file, database): censored where it stopped."""
    from rlcsp.csp.run import interrupted

    return bool(run.get("running")) or interrupted(run.get("stop_reason", ""))


def key(run: dict) -> tuple[str, str, int]:
    return run["composition"].lower(), run["policy"], run["seed"]


def earlier_runs(args, jobs: list) -> list[dict]:
    """Walkers of earlier invocations with the same tag, except those this invocation runs again."""
    path = RESULTS / f"{args.tag}.json"
    if not path.exists():
        return []
    earlier = json.loads(path.read_text())
    keys = ("budget", "fuse", "quirks", "without", "calculator")
    mode, ours = {k: earlier["args"].get(k) for k in keys}, {k: getattr(args, k) for k in keys}
    if mode != ours:
        raise SystemExit(f"{path} holds runs with {mode}; this bench runs {ours}: choose another --tag")
    rerun = set(jobs)
    return [r for r in earlier["runs"] if key(r) not in rerun]


def mode_label(args) -> str:
    """The mode as SearchConfig.label writes it, which every walker's summary.json must repeat."""
    from rlcsp.csp.config import make_config

    return make_config({"composition": {"Y": [2, 3], "O": [3, -2]}, "max_atoms": 10}, **mode_options(args)).label


def mode_options(args) -> dict:
    return {"fuse": args.fuse, "quirks": args.quirks, "without": args.without}


def pooled_counts(runs: list[dict]) -> dict[str, int]:
    """Relaxations per move, summed over walkers, in move order."""
    counts: dict[str, int] = {}
    for run in runs:
        for move, n in (run.get("relaxations_per_move") or {}).items():
            counts[move] = counts.get(move, 0) + n
    return {m: counts[m] for m in sorted(counts, key=int)}


def pooled_shares(runs: list[dict]) -> dict[str, float]:
    counts = pooled_counts(runs)
    total = sum(counts.values())
    return {m: n / total for m, n in counts.items()} if total else {}


def write_report(args, summaries: list[dict], jobs: list, started: float) -> None:
    from rlcsp.stats import km_median

    label = mode_label(args)

    runs_all = earlier_runs(args, jobs) + summaries + in_progress(args, jobs, summaries)
    rows = []
    for comp in sorted({s["composition"] for s in runs_all}):
        for policy in sorted({s["policy"] for s in runs_all}):
            runs = [s for s in runs_all if s["composition"] == comp and s["policy"] == policy]
            if not runs:
                continue
            times = [s["gm_relaxation"] or (s["relaxations"] if cut_short(s) else args.budget) for s in runs]
            finished = [s for s in runs if not cut_short(s)]
            measured = [s for s in runs if s.get("wall_s")]  # every walker that wrote a summary, stopped ones too
            reached = [s["gm_reached"] for s in runs]
            tally = [s["candidate_acceptance"]["random"] for s in measured]
            moves = [s["candidate_acceptance"]["moves"] for s in measured]
            ref = FUSE_COUNTS.get(comp, {}).get(policy)
            wrong = sorted({s["settings"]["mode"] for s in measured if s.get("settings")} - {label})
            if wrong:
                raise SystemExit(f"{comp} {policy}: walkers ran in mode {wrong}, not {label!r}; keep tags apart")
            best = sorted(s["best_energy"] for s in runs if s.get("best_energy") is not None)
            rows.append({
                "composition": comp, "policy": policy, "runs": len(runs), "running": len(runs) - len(finished),
                "seeds": sorted(s["seed"] for s in runs), "commits": sorted({s.get("commit", "unknown") for s in runs}),
                "gm_reached": sum(reached),
                "success_rate": sum(reached) / len(runs),
                "km_median_relaxations_to_gm": km_median(times, reached),
                "relaxations_to_gm": sorted(t for t, r in zip(times, reached) if r),
                "wall_per_relaxation_s": (sum(s["wall_s"] for s in measured) / sum(s["relaxations"] for s in measured)
                                          if measured else None),
                "random_candidate_acceptance": (sum(t["passed"] for t in tally) / sum(t["candidates"] for t in tally)
                                                if tally else None),
                "move_candidate_acceptance": (sum(t["passed"] for t in moves) / sum(t["candidates"] for t in moves)
                                              if moves else None),
                "relaxation_share_per_move": pooled_shares(measured),
                "modes_reported": sorted({s["settings"]["mode"] for s in measured if s.get("settings")}),
                "reference_success_of_40": ref,
                "fisher_p": None if ref is None else fisher_p(sum(reached), len(runs), ref),
                "best_energies": [s["best_energy"] for s in runs],
                "best_energy_spread": [best[0], best[len(best) // 2], best[-1]] if best else None,
            })

    mode = f"Mode: {label} (as every walker's summary.json reports it)"
    mode += f", calculator {args.calculator}" if args.calculator else ""
    finished = sum(not cut_short(s) for s in runs_all)
    lines = [f"{mode}, budget {args.budget} relaxations (incl. 100 initial). {finished} walkers finished; "
             f"{len(runs_all) - finished} still running or stopped early are censored at their current relaxation "
             f"count. This invocation: {args.workers} worker processes, wall {time.perf_counter() - started:.0f} s; "
             f"commits {', '.join(sorted({s.get('commit', 'unknown') for s in runs_all}))}.", "",
             "| composition | policy | seeds | GM reached | FUSE (of 40) | Fisher p | KM median relax. to GM "
             "| relax. to GM (reached) | best E min / median / max | s / relaxation | random candidates passing "
             "| move candidates passing | relaxations per move (%) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ref = r["reference_success_of_40"]
        median = r["km_median_relaxations_to_gm"]
        running = f" ({r['running']} cut short)" if r["running"] else ""
        rate, move_rate = r["random_candidate_acceptance"], r["move_candidate_acceptance"]
        acceptance = f"1 in {1 / rate:.0f}" if rate else "-"
        move_acceptance = f"1 in {1 / move_rate:.1f}" if move_rate else "-"
        spread = " / ".join(f"{e:.6f}" for e in r["best_energy_spread"]) if r["best_energy_spread"] else "-"
        shares = " ".join(f"{m}:{100 * v:.0f}" for m, v in r["relaxation_share_per_move"].items()) or "-"
        p = "-" if r["fisher_p"] is None else f"{r['fisher_p']:.3g}"
        lines.append(f"| {r['composition']} | {r['policy']} | {','.join(map(str, r['seeds']))} | "
                     f"{r['gm_reached']}/{r['runs']}{running} | "
                     f"{'-' if ref is None else f'{ref}/40'} | {p} | "
                     f"{'censored' if median is None else int(median)} | {r['relaxations_to_gm']} | {spread} | "
                     f"{'-' if r['wall_per_relaxation_s'] is None else format(r['wall_per_relaxation_s'], '.2f')} | "
                     f"{acceptance} | {move_acceptance} | {shares} |")
    table = "\n".join(lines)
    print(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.tag}.md").write_text(table + "\n")
    (RESULTS / f"{args.tag}.json").write_text(json.dumps({"args": vars(args), "rows": rows, "runs": runs_all},
                                                         indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--compositions", nargs="+", default=["y2ti2o7", "sry2o4"])
    parser.add_argument("--policies", nargs="+", default=["original", "uniform"])
    parser.add_argument("--seeds", type=int, default=4, help="number of seeds per (composition, policy)")
    parser.add_argument("--first-seed", type=int, default=1,
                        help="seeds run are first-seed .. first-seed + seeds - 1, so a later bench can add seeds")
    parser.add_argument("--budget", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--runs", help="folder for per-walker outputs (default runs/<tag>)")
    parser.add_argument("--tag", default="csp_fuse_policies")
    parser.add_argument("--fuse", choices=sorted(PROFILES), help="FUSE's own loop of that version (rlcsp.csp.quirks)")
    parser.add_argument("--quirks", metavar="A,B", help="single FUSE behaviours switched on (rlcsp.csp.quirks names)")
    parser.add_argument("--without", metavar="A,B", help="quirks of the --fuse profile switched off")
    parser.add_argument("--calculator", help="relaxer for every walker (default: the scripts' own, LAMMPS "
                        "Buckingham); e.g. gulp where a gulp binary exists, with another --tag")
    parser.add_argument("--resume", action="store_true",
                        help="continue walkers an earlier invocation of the same commit cut short (finished ones are "
                        "only reported), e.g. across the device machine's 10-minute calls")
    parser.add_argument("--report-only", action="store_true",
                        help="write the table from the walkers' folders (finished and still running) and exit")
    args = parser.parse_args()
    args.runs = args.runs or str(ROOT / "runs" / args.tag)

    # Seed-major order, so that a bench cut short still covers every (composition, policy) cell.
    jobs = [(c, p, s) for s in range(args.first_seed, args.first_seed + args.seeds)
            for c in args.compositions for p in args.policies]
    started = time.perf_counter()
    if args.report_only:
        folders = [walker_folder(args, job) for job in jobs]
        summaries = [json.loads((f / "summary.json").read_text()) | {"commit": walker_commit(f)}
                     for f in folders if (f / "summary.json").exists()]
        write_report(args, summaries, jobs, started)
        return
    commit = current_commit()
    summaries = []
    stopping = multiprocessing.Event()
    since = time.time()
    with ProcessPoolExecutor(max_workers=args.workers, initializer=init_worker, initargs=(stopping,)) as pool:
        futures = {pool.submit(walker, str(ROOT / "inputs" / f"{c}.py"), p, s, args.budget,
                               str(walker_folder(args, (c, p, s))), mode_options(args), commit,
                               args.calculator, args.resume): (c, p, s)
                   for c, p, s in jobs}
        asked: list[str] = []

        def stop(signum, frame) -> None:
            """First signal: running walkers finish their step and report, queued ones never start. Second: abort."""
            if asked:
                raise KeyboardInterrupt
            asked.append(signal.Signals(signum).name)
            stopping.set()  # queued walkers return at once (cancelling their futures can hang as_completed)
            for job in futures.values():  # the walkers this invocation started, which may not have got the signal
                folder = walker_folder(args, job)
                marker = folder / WALKER_COMMIT
                if marker.exists() and marker.stat().st_mtime >= since and not (folder / "summary.json").exists():
                    (folder / "stop").touch()
            print(f"{asked[0]}: waiting for the running walkers to finish their step (again to abort)", flush=True)

        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, stop)
        for future in as_completed(futures):
            c, p, s = futures[future]
            summary = future.result()
            if summary is None:  # never started: the bench was stopping
                continue
            summaries.append(summary)
            print(f"[{len(summaries)}/{len(jobs)}] {c} {p} seed {s}: best {summary['best_energy']:.6f}, "
                  f"GM at {summary['gm_relaxation']}, {summary['wall_s']:.0f} s", flush=True)
            write_report(args, summaries, jobs, started)

    write_report(args, summaries, jobs, started)


if __name__ == "__main__":
    main()
