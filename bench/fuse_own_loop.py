"""FUSE's own code, with rlcsp's relaxer in place of GULP: is the GM gap in our loop or in the relaxer?

rlcsp's ``--fuse 1.06`` profile reaches the Y2Ti2O7 pyrochlore GM in 1 of 4 walkers of 2000 relaxations, where
FUSE's 40 Uniform runs reached it in 40. Every quirk the review found is reproduced, and the GM's funnel is about
one genome wide for every relaxer we have (``bench/gm_funnel.py``). This bench removes the last doubt about the
loop: it runs FUSE-stable's own ``run_fuse`` (generation, checks, moves, acceptance, melt, policy: all FUSE's
code, unmodified) with one substitution, ``run_gulp`` -> rlcsp's relaxer. If FUSE's own loop with our relaxer
also falls short of 40/40, the gap lies in the relaxer (GULP's optimiser, which no binary here can run) and not
in rlcsp's loop; if it matches FUSE, the gap lies in rlcsp's loop.

FUSE's source is not vendored (GPL-3.0): point ``--fuse-src`` at a FUSE-stable checkout's ``fuse_106`` or
``fuse_104`` folder. Shims let that code run on current ASE and Python, none touching the search:
``Atoms.get_cell_lengths_and_angles`` -> ``cell.cellpar()`` (removed from ASE), a ``func_timeout`` stand-in
(only used when ``gulp_timeout`` is set, which the paper inputs leave unset), empty ``matplotlib`` and
``distutils`` modules where none is installed (FUSE plots only when asked, and this bench never asks), and
``random.seed`` before the run (FUSE draws every random number from Python's ``random`` except ASE's rattle, which
is fixed at seed 42).

Each seed runs in its own process and folder (FUSE writes its files to the working directory); a rerun resumes
unfinished seeds with FUSE's own ``restart=True``. The GM is reached at the first relaxation (counted as FUSE
counts, initial population included) whose energy is within 2e-6 eV/atom of the script's target.

    python bench/fuse_own_loop.py --fuse-src /path/FUSE-stable/fuse_106 --seeds 1 2 3 4 --workers 2
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import pickle
import random
import sys
import threading
import time
import types
from multiprocessing import get_context
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
GM_TOL = 2e-6  # eV/atom: FUSE's energies are rounded to 1e-6
POLICY = {"fuse106": "uniform", "fuse104": "original"}  # the policy each FUSE release ran in the paper


def shim_environment() -> None:
    """What FUSE's code needs from an older ASE and from packages the paper runs had installed."""
    from ase import Atoms

    if not hasattr(Atoms, "get_cell_lengths_and_angles"):
        Atoms.get_cell_lengths_and_angles = lambda self: self.cell.cellpar()
    if "func_timeout" not in sys.modules:
        stub = types.ModuleType("func_timeout")

        class FunctionTimedOut(Exception):
            pass

        stub.FunctionTimedOut = FunctionTimedOut
        stub.func_timeout = lambda timeout, func, args=(), kwargs=None: func(*args, **(kwargs or {}))
        sys.modules["func_timeout"] = stub
    if "distutils" not in sys.modules and importlib.util.find_spec("distutils") is None:
        # FUSE's __init__ imports LooseVersion and never uses it
        for name in ("distutils", "distutils.version"):
            sys.modules[name] = types.ModuleType(name)
        sys.modules["distutils.version"].LooseVersion = str
    if "matplotlib" not in sys.modules and importlib.util.find_spec("matplotlib") is None:
        # FUSE imports it at module level; it only plots when asked, and this bench never asks
        for name in ("matplotlib", "matplotlib.pyplot"):
            sys.modules[name] = types.ModuleType(name)
        sys.modules["matplotlib"].use = lambda *a, **k: None
        sys.modules["matplotlib"].pyplot = sys.modules["matplotlib.pyplot"]


def make_run_gulp(relaxer_name: str):
    """A drop-in for FUSE's ``run_gulp``: (atoms, energy per cell or 1e20, converged), relaxed by rlcsp."""
    from gm_funnel import make_relaxer

    relaxer = make_relaxer(relaxer_name)

    def run_gulp(atoms=None, **_ignored):
        result = relaxer.relax([atoms])[0]
        if not result.ok:
            return atoms, 1.0e20, False
        return result.atoms, result.energy_per_atom * len(result.atoms), True

    return run_gulp


def history(folder: Path) -> tuple[list[float], list[str]]:
    """Every relaxation's energy (initial population first) and each search step's move, from FUSE's pickles.

    Read from ``search_structures.p`` (every relaxed candidate, failures included), not ``energies.p``, which
    FUSE pickles before appending the step's energy. So a restart loses that last energy from FUSE's
    ``energies`` and never runs the acceptance of the candidate relaxed just before the stop: FUSE's own
    restart behaviour, one candidate per stop, left as it is.
    """
    ini = pickle.load(open(folder / "ini_energies.p", "rb"))
    structures = pickle.load(open(folder / "search_structures.p", "rb"))
    steps = [structures[k] for k in sorted(structures) if k > 0]  # 0 is the initial population's best
    return list(ini) + [s[3] for s in steps], [str(s[4]) for s in steps]


def done_relaxations(folder: Path) -> int:
    """Relaxations FUSE has finished in ``folder``, initial population included (0 before any is saved)."""
    try:
        return len(history(folder)[0])
    except (OSError, EOFError, pickle.UnpicklingError):
        return 0


def run_seed(job: dict) -> dict:
    """One FUSE run in its own folder; stdout goes to ``fuse_stdout.txt`` there."""
    folder = Path(job["folder"]).resolve()  # absolute: FUSE changes into it
    folder.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, job["fuse_src"])
    shim_environment()
    package = job["package"]
    __import__(f"{package}.run_fuse")
    run_fuse_module = sys.modules[f"{package}.run_fuse"]
    run_fuse_module.run_gulp = make_run_gulp(job["relaxer"])
    done = done_relaxations(folder)
    remaining = job["budget"] - done
    started = time.time()
    if remaining > 0:
        os.chdir(folder)
        random.seed(job["seed"] * 1000003 + done)  # a resumed segment gets its own stream, named by where it resumed
        config = job["config"]
        kwargs = dict(composition={k: list(v) for k, v in config["composition"].items()}, search=1,
                      initial_gen=config["initial_population"], max_atoms=config["max_atoms"],
                      imax_atoms=config["max_atoms"], iterations=remaining, rmax=1000000, restart=done > 0,
                      ctype="gulp", kwds=["opti conj conp c6", "opti lbfgs conp c6"], gulp_opts=[[""], [""]],
                      lib="lib2.lib", shel=None, write_all_structures=False, write_graph=False,
                      write_graph_end=False)
        if job["deadline_s"]:  # FUSE's own graceful stop: it writes its restart files and exits
            timer = threading.Timer(job["deadline_s"], (folder / "stop.txt").touch)
            timer.daemon = True
            timer.start()
        with open("fuse_stdout.txt", "a") as out, contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
            run_fuse_module.run_fuse(**kwargs)
        with contextlib.suppress(FileNotFoundError):
            (folder / "stop.txt").unlink()
    return {"seed": job["seed"], "wall_s": time.time() - started, **read_run(folder, job["target"])}


def read_run(folder: Path, target: float) -> dict:
    """GM hit, relaxations to it, best energy and relaxations per move of one FUSE run."""
    energies, moves = history(folder)
    hit = next((i + 1 for i, e in enumerate(energies) if e <= target + GM_TOL), None)
    share = {m: moves.count(m) for m in sorted(set(moves), key=int)}
    return {"relaxations": len(energies), "gm_relaxation": hit, "best_energy": min(energies),
            "failed": sum(e > 0 for e in energies), "relaxations_per_move": share}


def main() -> None:
    from gm_funnel import RELAXERS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fuse-src", type=Path, required=True, help="FUSE-stable's fuse_106 or fuse_104 folder")
    parser.add_argument("--composition", default="y2ti2o7", help="an inputs/ script name")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4])
    parser.add_argument("--budget", type=int, default=2000, help="relaxations, initial population included")
    parser.add_argument("--relaxer", default="lammps", choices=RELAXERS, help="as bench/gm_funnel.py names them")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "fuse_own_loop")
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--deadline-s", type=float, default=0, help="stop each seed cleanly after this long (0: never)")
    parser.add_argument("--report", action="store_true", help="only tabulate the seed folders already there")
    parser.add_argument("--ran-at", default=None, help="with --report: which commits ran the walkers, for the table")
    args = parser.parse_args()

    from rlcsp.csp.config import load_script

    package = next(p.name for p in args.fuse_src.iterdir() if p.name.startswith("fuse1") and p.is_dir())
    config = load_script(ROOT / "inputs" / f"{args.composition}.py")
    config = {k: config[k] for k in ("composition", "initial_population", "max_atoms", "target_energy")}
    tag = f"{args.composition}_{package}_{args.relaxer}"
    jobs = [{"seed": s, "folder": str(args.runs / tag / f"seed{s}"), "fuse_src": str(args.fuse_src.resolve()),
             "package": package, "relaxer": args.relaxer, "budget": args.budget, "config": config,
             "target": config["target_energy"], "deadline_s": args.deadline_s} for s in args.seeds]
    rows = []
    if args.report:
        rows = [{"seed": j["seed"], "wall_s": None, **read_run(Path(j["folder"]), j["target"])} for j in jobs
                if Path(j["folder"], "search_structures.p").exists()]
    else:
        with get_context("spawn").Pool(args.workers, maxtasksperchild=1) as pool:
            for row in pool.imap_unordered(run_seed, jobs):
                rows.append(row)
                print(f"seed {row['seed']}: {row['relaxations']} relaxations, GM at {row['gm_relaxation']}, "
                      f"best {row['best_energy']:.6f}, {row['wall_s']:.0f} s", flush=True)
    rows.sort(key=lambda r: r["seed"])
    write(rows, args, package, tag)


def rlcsp_walkers(composition: str) -> list[dict]:
    """rlcsp's own ``--fuse 1.06`` walkers of this composition (``bench/csp_fuse106.json``), same relaxer."""
    path = RESULTS / "csp_fuse106.json"
    if not path.exists():
        return []
    keys = ("seed", "relaxations", "gm_relaxation", "best_energy", "relaxations_per_move")
    return [{**{k: r[k] for k in keys}, "failed": r["outcomes"]["failed"]}
            for r in json.loads(path.read_text())["runs"] if r["composition"].lower() == composition]


def pooled(rows: list[dict]) -> dict:
    """Relaxations per move (count and %), failed relaxations (%) and best energies, over a loop's walkers."""
    from csp_fuse_policies import pooled_counts, pooled_shares

    return {"moves": pooled_counts(rows),
            "move_pct": {m: round(100 * f, 1) for m, f in pooled_shares(rows).items()},
            "failed_pct": round(100 * sum(r["failed"] for r in rows) / sum(r["relaxations"] for r in rows), 2),
            "best_energies": sorted(r["best_energy"] for r in rows)}


def reached_by(rows: list[dict], at: int) -> str:
    """'hits/observed' at relaxation ``at``: walkers that ran that far or reached the GM before it."""
    seen = [r for r in rows if r["relaxations"] >= at or (r["gm_relaxation"] or at + 1) <= at]
    return f"{sum((r['gm_relaxation'] or at + 1) <= at for r in seen)}/{len(seen)}"


def write(rows: list[dict], args, package: str, tag: str) -> None:
    from rlcsp.csp.walker_stats import FUSE_COUNTS
    from rlcsp.stats import fisher_p, km_median, logrank
    from rlcsp.version import commit as current_commit

    commit = current_commit()
    complete = [r for r in rows if r["relaxations"] >= args.budget or r["gm_relaxation"]]
    hits = sum(r["gm_relaxation"] is not None for r in complete)
    names = {name.lower(): name for name in FUSE_COUNTS}
    ref = FUSE_COUNTS[names[args.composition]][POLICY[package]] if args.composition in names else None
    p = fisher_p(hits, len(complete), ref) if ref is not None and complete else None
    times = [r["gm_relaxation"] or r["relaxations"] for r in rows]
    events = [r["gm_relaxation"] is not None for r in rows]
    ours = rlcsp_walkers(args.composition) if package == "fuse106" else []
    vs_ours = logrank(times, events, [r["gm_relaxation"] or r["relaxations"] for r in ours],
                      [r["gm_relaxation"] is not None for r in ours])[1] if ours else None
    mine, theirs = pooled(rows), pooled(ours) if ours else None
    move_p = None
    if theirs:
        from scipy.stats import chi2_contingency

        keys = sorted(set(mine["moves"]) | set(theirs["moves"]), key=int)
        move_p = float(chi2_contingency([[mine["moves"].get(k, 0) for k in keys],
                                         [theirs["moves"].get(k, 0) for k in keys]])[1])
    out = args.output or RESULTS / f"fuse_own_loop_{tag}.json"
    marks = (500, 1000, 1500, args.budget)
    out.write_text(json.dumps({
        "bench": "fuse_own_loop", "commit": commit, "ran_at": args.ran_at, "composition": args.composition,
        "fuse": package, "relaxer": args.relaxer,
        "budget": args.budget, "walkers": len(rows), "complete": len(complete),
        "gm_reached_complete": hits, "gm_reached_all": sum(events), "fuse_reference": ref, "fisher_p": p,
        "km_median": km_median(times, events), "reached_by": {m: reached_by(rows, m) for m in marks},
        "pooled": mine,
        "rlcsp_loop": {"walkers": ours, "reached_by": {m: reached_by(ours, m) for m in marks},
                       "logrank_p": vs_ours, "pooled": theirs, "move_share_chi2_p": move_p},
        "rows": rows}, indent=1) + "\n")
    lines = [f"# FUSE's own loop ({package}) with rlcsp's `{args.relaxer}` relaxer: {args.composition}, budget "
             f"{args.budget}", "",
             f"commit {commit}" + (f" (walkers ran at {args.ran_at})" if args.ran_at else "")
             + f". GM reached in **{hits}/{len(complete)}** walkers run to the budget or to the GM"
             + (f" (FUSE with GULP: {ref}/40, Fisher p = {p:.2g})" if p is not None else "")
             + f"; {len(rows) - len(complete)} more walkers stopped earlier are censored where they stopped.", "",
             "GM reached by relaxation R, of the walkers observed that far:", "",
             "| loop | " + " | ".join(f"R = {m}" for m in marks) + " | log-rank p vs rlcsp |",
             "|---|" + "---|" * (len(marks) + 1),
             f"| FUSE's own ({package}) | " + " | ".join(reached_by(rows, m) for m in marks) + " | "
             + (f"{vs_ours:.2g} |" if vs_ours is not None else "- |")]
    if ours:
        lines.append("| rlcsp `--fuse 1.06` (csp_fuse106.json) | " + " | ".join(reached_by(ours, m) for m in marks)
                     + " | - |")
    if theirs:
        keys = list(mine["move_pct"])
        lines += ["", f"Pooled over walkers. Move shares: chi-square p = {move_p:.2g} over pooled relaxations, which "
                  "treats them as independent; a walker's shares follow its current structure (moves 4 and 5 "
                  "apply only to some sizes), so this overstates the evidence of a difference.", "",
                  "| loop | relaxations | failed % | " + " | ".join(f"move {k} %" for k in keys)
                  + " | best E median |", "|---|---|---|" + "---|" * (len(keys) + 1)]
        for name, walkers, pool in ((f"FUSE's own ({package})", rows, mine), ("rlcsp `--fuse 1.06`", ours, theirs)):
            best = pool["best_energies"]
            lines.append(f"| {name} | {sum(r['relaxations'] for r in walkers)} | {pool['failed_pct']} | "
                         + " | ".join(str(pool["move_pct"].get(k, 0)) for k in keys)
                         + f" | {best[len(best) // 2]:.6f} |")
    lines += ["", "| seed | relaxations | GM at | best E (eV/atom) | failed | relaxations per move |",
              "|---|---|---|---|---|---|"]
    for r in rows:
        moves = " ".join(f"{m}:{n}" for m, n in r["relaxations_per_move"].items())
        lines.append(f"| {r['seed']} | {r['relaxations']} | {r['gm_relaxation'] or '-'} | {r['best_energy']:.6f} "
                     f"| {r['failed']} | {moves} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))

if __name__ == "__main__":
    main()
