"""``rlcsp compare``: many (policy, seed) walkers on Dask, then time-to-GM statistics, sequences and plots.

Every walker is one ``rlcsp.run.execute`` call in ``<out>/<policy>-seed<seed>/`` (a ':' in the policy name
becomes '-'), and all of them record into one store, from which the report is computed. A walker counts as done
when the store holds a finished run with its exact configuration: its summary.json alone is not enough, because
the report reads the stored steps (a walker whose last steps are still queued locally is rerun, and ``execute``
then flushes them and marks the run finished). An unfinished walker is continued by ``execute`` itself.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from policies import ACTIONS, State, get_policy
from rlcsp.config import SearchConfig, load_script, make_config
from rlcsp.exceptions import ConfigError, RlcspError
from rlcsp.stats import kaplan_meier, km_median, km_median_ci, logrank

REFERENCES = ("original", "uniform")  # every policy is tested against these
# A walker that raises (a transient database error, a worker lost) is run again, which resumes it exactly from its
# last committed step; one that fails every time is reported and left out of the statistics.
WALKER_RETRIES = 3


class SchedulerUnreachable(RlcspError, ConnectionError):
    """The Dask scheduler named by --scheduler did not answer."""


def _safe(policy: str) -> str:
    return policy.replace(":", "-")


def walker_dir(out: Path, policy: str, seed: int) -> Path:
    return out / f"{_safe(policy)}-seed{seed}"


def is_learning(policy: str, options: dict[str, Any]) -> bool:
    """A policy with parameters (fixed policies have an empty state_dict)."""
    return bool(get_policy(policy, **options).state_dict())


# -- per-run metrics ------------------------------------------------------------------------------------

def search_steps(steps: list[dict]) -> list[dict]:
    return [s for s in steps if s["kind"] == "S"]


def moves_sequence(steps: list[dict]) -> list[int]:
    """Move attempts it took to produce each next generation.

    For every search step whose candidate the walker moved to (outcome 'accepted' or 'metropolis'), the number of
    candidates built (the ``attempts`` column) summed over the search steps since the previous such step, this
    one included. Attempts of steps after the last acceptance are dropped (no generation came of them).
    """
    out, pending = [], 0
    for step in search_steps(steps):
        pending += step["attempts"]
        if step["outcome"] in ("accepted", "metropolis"):
            out.append(pending)
            pending = 0
    return out


def generation_sequence(steps: list[dict]) -> list[int]:
    """Lengths, in search steps, of the maximal non-increasing streaks of the walker's current energy.

    The current energy after each search step (``e_current``) is cut wherever it rises (an uphill Metropolis
    acceptance: an exploration jump), e.g. 5, 4, 3, 2, 5 gives [4, 1]. The last streak, cut off by the end of the
    run, is included.
    """
    out: list[int] = []
    previous = None
    for step in search_steps(steps):
        if previous is None or step["e_current"] > previous:
            out.append(0)
        out[-1] += 1
        previous = step["e_current"]
    return out


def energy_sequence(steps: list[dict]) -> list[float]:
    """The local minimum before each exploration jump: for every search step whose current energy is higher than
    the one before it, that previous energy (the end of the generation streak of :func:`generation_sequence`)."""
    energies = [s["e_current"] for s in search_steps(steps)]
    return [a for a, b in zip(energies, energies[1:]) if b > a]


def action_histogram(steps: list[dict]) -> dict[int, int]:
    """How often each of the nine moves was applied, over the search steps."""
    moves = [s["move"] for s in search_steps(steps)]
    return {a: moves.count(a) for a in ACTIONS}


def time_to_gm(steps: list[dict], gm_relaxation: int | None) -> tuple[int, float, bool]:
    """(relaxations, wall seconds, reached): at the GM, or censored at the end of the run when not reached.

    Wall time is the sum of the steps' build, relaxation and policy times, so it is the walker's own compute,
    unaffected by queueing on the cluster, database waits or interruptions.
    """
    reached = gm_relaxation is not None
    end = gm_relaxation if reached else max((s["relaxation"] for s in steps), default=0)
    wall = sum(s["build_s"] + s["relax_s"] + s["policy_s"] for s in steps if s["relaxation"] <= end)
    return end, wall, reached


def walker_metrics(store, run_id: int) -> dict[str, Any]:
    info = store.run_info(run_id)
    steps = store.steps(run_id)
    relaxations, wall, reached = time_to_gm(steps, info["gm_relaxation"])
    return {"run_id": run_id, "policy": info["policy"], "seed": info["seed"], "gm_reached": reached,
            "relaxations_to_gm": relaxations, "wall_s_to_gm": round(wall, 3), "relaxations": info["relaxations"],
            "best_energy": info["best_energy"], "moves_sequence": moves_sequence(steps),
            "generation_sequence": generation_sequence(steps), "energy_sequence": energy_sequence(steps),
            "action_histogram": action_histogram(steps),
            "best_energy_trace": [e if e is not None and np.isfinite(e) else None for e in
                                  (s["e_global"] for s in steps)]}


def _sequence_summary(sequences: list[list[float]]) -> dict[str, float | None]:
    pooled = [x for seq in sequences for x in seq]
    return {"per_run": float(np.mean([len(s) for s in sequences])) if sequences else None,
            "mean": float(np.mean(pooled)) if pooled else None,
            "median": float(np.median(pooled)) if pooled else None}


def policy_summary(walkers: list[dict], budget: int) -> dict[str, Any]:
    """Success within the budget, KM medians of relaxations and wall time to the GM (95 % CI), sequences."""
    reached = [w["gm_reached"] and w["relaxations_to_gm"] <= budget for w in walkers]
    out: dict[str, Any] = {"runs": len(walkers), "successes": int(sum(reached)),
                           "success_rate": float(np.mean(reached)) if walkers else None}
    for key in ("relaxations_to_gm", "wall_s_to_gm"):
        times = [w[key] for w in walkers]
        out[key] = {"km_median": km_median(times, reached), "ci95": list(km_median_ci(times, reached))}
    best = [w["best_energy"] for w in walkers if w["best_energy"] is not None]
    # With budgets too small for the GM, the best energy reached is what still separates policies.
    out["best_energy"] = {"median": float(np.median(best)) if best else None,
                          "min": float(np.min(best)) if best else None}
    for key in ("moves_sequence", "generation_sequence", "energy_sequence"):
        out[key] = _sequence_summary([w[key] for w in walkers])
    counts = {a: sum(w["action_histogram"][a] for w in walkers) for a in ACTIONS}
    total = sum(counts.values()) or 1
    out["action_histogram"] = {str(a): {"count": c, "fraction": c / total} for a, c in counts.items()}
    return out


def logrank_table(walkers: dict[str, list[dict]], budget: int) -> dict[str, dict[str, dict[str, float]]]:
    """Log-rank tests of relaxations-to-GM of every policy against each reference policy that was run."""
    def sample(policy: str) -> tuple[list[int], list[bool]]:
        ws = walkers[policy]
        return ([w["relaxations_to_gm"] for w in ws],
                [w["gm_reached"] and w["relaxations_to_gm"] <= budget for w in ws])

    table: dict[str, dict[str, dict[str, float]]] = {}
    for policy in walkers:
        for reference in REFERENCES:
            if reference in walkers and reference != policy and walkers[policy] and walkers[reference]:
                statistic, p = logrank(*sample(policy), *sample(reference))
                table.setdefault(policy, {})[reference] = {"statistic": statistic, "p": p}
    return table


# -- plots ----------------------------------------------------------------------------------------------

def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _param_versions(store, policy_id: str, points: int) -> list[tuple[int, int, dict]]:
    """(version, number of versions, params) at ``points`` versions spread evenly from the first to the last.

    Only those rows are read: a learning policy stores a new version nearly every step, each with its reward
    history.
    """
    numbers = [r[0] for r in store.db.query("SELECT update_no FROM policy_params WHERE policy_id = ? "
                                            "ORDER BY update_no", (policy_id,))]
    if not numbers:
        return []
    chosen = sorted({numbers[round(i)] for i in np.linspace(0, len(numbers) - 1, max(points, 1))})
    rows = store.db.query(f"SELECT update_no, params FROM policy_params WHERE policy_id = ? AND update_no IN "
                          f"({', '.join('?' * len(chosen))}) ORDER BY update_no", (policy_id, *chosen))
    return [(numbers.index(n) + 1, len(numbers), json.loads(p)) for n, p in rows]


def action_probabilities(policy: str, options: dict[str, Any], params: dict[str, Any], energies: np.ndarray,
                         state: State) -> np.ndarray:
    """P(move) for each energy (rows) and each of the nine moves (columns), all moves allowed, other state
    features as in ``state``."""
    model = get_policy(policy, **options)
    model.load_state_dict({**model.state_dict(), **params})  # stored rows omit episode and reward history
    rows = [model.probabilities(replace(state, energy=float(e)), list(ACTIONS)) for e in energies]
    return np.array([[p[a] for a in ACTIONS] for p in rows])


def plot_action_probabilities(store, run_id: int, path: Path, points: int = 3) -> bool:
    """Probability of each move versus energy at ``points`` versions of a run's policy, as RLCSP draws them.

    The energy axis spans the target and the run's relaxed energies (up to their 95th percentile); the other
    features are those of a walker that just went downhill at the starting temperature with the run's median
    size. Returns False (and draws nothing) for a policy without parameters or a run without stored versions.
    """
    from actions import MOVES

    info = store.run_info(run_id)
    config = info["config"]
    if not is_learning(info["policy"], config["policy_options"]):
        return False
    versions = _param_versions(store, f"run{run_id}", points)
    steps = store.steps(run_id)
    energies = [s["e_new"] for s in steps if s["e_new"] is not None and np.isfinite(s["e_new"])]
    if not versions or not energies:
        return False
    target = config.get("target_energy")
    grid = np.linspace(min(energies + ([target] if target is not None else [])), np.percentile(energies, 95), 80)
    sizes = [s["n_atoms"] for s in steps]
    state = State(0.0, int(np.median(sizes)), config["max_atoms"], 0, config["temperature"], None)
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(versions), figsize=(4.2 * len(versions), 3.8), sharey=True, squeeze=False)
    for ax, (number, total, params) in zip(axes[0], versions):
        probs = action_probabilities(info["policy"], config["policy_options"], params, grid, state)
        for i, a in enumerate(ACTIONS):
            ax.plot(grid, probs[:, i], lw=1.2, label=f"{a} {MOVES[a].name}")
        if target is not None:
            ax.axvline(target, c="k", ls="--", lw=0.7)
        ax.set_title(f"version {number} of {total}", fontsize=9)
        ax.set_xlabel("energy (eV/atom)")
    axes[0][0].set_ylabel("P(move)")
    axes[0][-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.suptitle(f"run {run_id}: {info['policy']}, seed {info['seed']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_time_to_gm(walkers: dict[str, list[dict]], budget: int, path: Path) -> None:
    """1 - KM of relaxations-to-GM: the fraction of walkers that reached the GM by each relaxation."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for policy, ws in walkers.items():
        times = [w["relaxations_to_gm"] for w in ws]
        t, s = kaplan_meier(times, [w["gm_reached"] for w in ws])
        ax.step(np.concatenate([[0], t, [budget]]), 1 - np.concatenate([[1], s, [s[-1] if len(s) else 1]]),
                where="post", label=f"{policy} (n={len(ws)})")
    ax.set_xlim(0, budget)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("relaxations")
    ax.set_ylabel("P(GM reached)  [1 - Kaplan-Meier]")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_best_energy(walkers: dict[str, list[dict]], budget: int, target: float | None, path: Path) -> None:
    """Best energy vs relaxation: every seed as a thin line, the median across seeds thick. A walker that stopped
    early (at the GM) keeps its last best energy up to the budget."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    x = np.arange(1, budget + 1)
    for i, (policy, ws) in enumerate(walkers.items()):
        colour = f"C{i % 10}"
        traces = []
        for w in ws:
            trace = np.array([np.nan if e is None else e for e in w["best_energy_trace"]], dtype=float)[:budget]
            trace = np.concatenate([trace, np.full(budget - len(trace), trace[-1] if len(trace) else np.nan)])
            traces.append(trace)
            ax.plot(x, trace, c=colour, lw=0.5, alpha=0.35)
        if traces:
            with warnings.catch_warnings():  # relaxations where no seed has a structure yet stay blank
                warnings.simplefilter("ignore", RuntimeWarning)
                ax.plot(x, np.nanmedian(np.array(traces), axis=0), c=colour, lw=2, label=policy)
    if target is not None:
        ax.axhline(target, c="k", ls="--", lw=0.8, label="target (GM)")
    finite = [e for ws in walkers.values() for w in ws for e in w["best_energy_trace"] if e is not None]
    if finite:
        lo = min(finite + ([target] if target is not None else []))
        ax.set_ylim(lo - 0.05, min(max(finite), lo + 2.0) + 0.05)
    ax.set_xlabel("relaxation")
    ax.set_ylabel("best energy (eV/atom)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- running the walkers --------------------------------------------------------------------------------

def run_walker(base: dict[str, Any], policy: str, seed: int, budget: int, folder: str, db_url: str) -> dict:
    """One walker, on a Dask worker: its own output goes to ``<folder>/walker.log``."""
    from rlcsp.run import execute

    config = make_config(base, policy=policy, seed=seed, budget=budget)
    Path(folder).mkdir(parents=True, exist_ok=True)
    with open(Path(folder) / "walker.log", "a") as log, contextlib.redirect_stdout(log), \
            contextlib.redirect_stderr(log):
        return execute(config, folder, progress=False, db_url=db_url)


def finished_run(store, config: SearchConfig) -> int | None:
    """The newest finished run with exactly this configuration in the store."""
    return store.find_run(config.to_dict(), which="finished")


@contextlib.contextmanager
def dask_client(scheduler: str | None, workers: int | None, timeout_s: float = 5.0):
    """A client of the given scheduler, or of a LocalCluster of ``workers`` single-threaded processes."""
    from dask.distributed import Client, LocalCluster

    if scheduler is not None:
        try:
            client = Client(scheduler, timeout=f"{timeout_s}s")
        except OSError as err:
            raise SchedulerUnreachable(f"no Dask scheduler answered at {scheduler} within {timeout_s:.0f} s "
                                       f"({err}); start one with `dask scheduler` or leave out --scheduler") from err
        with client:
            yield client
        return
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=logging.ERROR) as cluster, Client(cluster) as client:
        yield client


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def compare(script: str | Path, policies: list[str], seeds: int, budget: int, out: str | Path | None = None,
            db_url: str | None = None, scheduler: str | None = None, workers: int | None = None,
            echo: Callable[[str], None] = print, run_missing: bool = True,
            mode: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run every missing (policy, seed) walker, then write report.md, report.html, report.json and the plots.

    ``mode`` sets the search mode of every walker (``fuse``, ``quirks``, ``without``; None keeps the script's).

    Everything is validated (script, budget, policy and baseline names) before a cluster starts. With
    ``run_missing=False`` only the walkers already finished are reported (the rest are listed as missing).
    """
    from db import Store, default_url

    if scheduler is not None and workers is not None:
        raise ConfigError("--workers sizes a local cluster; an existing scheduler (--scheduler) has its own workers")
    if seeds < 1 or len(set(policies)) != len(policies) or not policies:
        raise ConfigError(f"need at least one seed and distinct policies, got {seeds} seeds of {policies}")
    base = {**load_script(script), **{k: v for k, v in (mode or {}).items() if v is not None}}
    configs = {(p, s): make_config(base, policy=p, seed=s, budget=budget) for p in policies for s in range(seeds)}
    for policy in policies:
        get_policy(policy, **configs[policy, 0].policy_options)  # UnknownName lists the valid names
    first = configs[policies[0], 0]
    out = Path(out or Path("runs") / f"compare-{first.name}").resolve()  # workers may run elsewhere
    out.mkdir(parents=True, exist_ok=True)
    url = db_url or default_url(out)
    store = Store(url)  # creates the schema once, before the walkers race for it
    pending = [(p, s) for s in range(seeds) for p in policies if finished_run(store, configs[p, s]) is None]
    echo(f"{len(configs) - len(pending)} of {len(configs)} walkers already finished in {store.url}")
    failures: dict[str, str] = {}
    if pending and run_missing:
        n_workers = workers or min(_cores(), len(pending))
        with dask_client(scheduler, n_workers) as client:
            futures = {client.submit(run_walker, base, p, s, budget, str(walker_dir(out, p, s)), url,
                                     pure=False, retries=WALKER_RETRIES): (p, s) for p, s in pending}
            from dask.distributed import as_completed

            try:
                for done, future in enumerate(as_completed(futures), 1):
                    p, s = futures[future]
                    if future.status == "error":
                        failures[f"{p} seed {s}"] = repr(future.exception())
                        echo(f"[{done}/{len(pending)}] {p} seed {s}: FAILED {failures[f'{p} seed {s}']}")
                        continue
                    summary = future.result()
                    gm = (f"GM at relaxation {summary['gm_relaxation']}" if summary["gm_reached"]
                          else "GM not reached")
                    echo(f"[{done}/{len(pending)}] {p} seed {s}: {gm}, best {summary['best_energy']:.6f} eV/atom, "
                         f"{summary['relaxations']} relaxations ({summary['stop_reason']})")
            except KeyboardInterrupt:
                echo("interrupted: rerun the same command to continue (finished walkers are skipped, the others "
                     "resume from their last stored step)")
                raise
    report = build_report(store, configs, policies, seeds, budget, out, str(script))
    report["failures"] = failures
    write_report(report, out)
    store.close()
    echo(f"report: {out / 'report.md'}")
    return report


# -- the report -----------------------------------------------------------------------------------------

def build_report(store, configs: dict[tuple[str, int], SearchConfig], policies: list[str], seeds: int,
                 budget: int, out: Path, script: str) -> dict[str, Any]:
    """Every number of the comparison, and the plots (paths relative to ``out``)."""
    walkers: dict[str, list[dict]] = {p: [] for p in policies}
    missing = []
    for (policy, seed), config in sorted(configs.items(), key=lambda kv: (policies.index(kv[0][0]), kv[0][1])):
        run_id = finished_run(store, config)
        if run_id is None:
            missing.append(f"{policy} seed {seed}")
            continue
        walkers[policy].append({**walker_metrics(store, run_id), "folder": walker_dir(out, policy, seed).name})
    first = configs[policies[0], 0]
    plots = {"time_to_gm": "time_to_gm.png", "best_energy": "best_energy.png"}
    plot_time_to_gm(walkers, budget, out / plots["time_to_gm"])
    plot_best_energy(walkers, budget, first.target_energy, out / plots["best_energy"])
    for policy, ws in walkers.items():
        name = f"probabilities_{_safe(policy)}.png"
        if ws and plot_action_probabilities(store, ws[0]["run_id"], out / name):
            plots[f"probabilities {policy}"] = name
    return {"script": script, "composition": first.comp.label, "target_energy": first.target_energy,
            "budget": budget, "seeds": seeds, "policies": policies, "db": store.url, "missing": missing,
            "summary": {p: policy_summary(ws, budget) for p, ws in walkers.items()},
            "logrank_relaxations_to_gm": logrank_table(walkers, budget), "plots": plots,
            "walkers": [w for ws in walkers.values() for w in ws]}


def _fmt(x: float | None, digits: int = 0) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _median_ci(entry: dict, digits: int = 0) -> str:
    lo, hi = entry["ci95"]
    return f"{_fmt(entry['km_median'], digits)} [{_fmt(lo, digits)}, {'∞' if hi is None else _fmt(hi, digits)}]"


def report_blocks(report: dict[str, Any]) -> list[tuple]:
    """The report as headings, paragraphs, tables and images, rendered to Markdown and HTML alike."""
    summary, tests = report["summary"], report["logrank_relaxations_to_gm"]
    blocks: list[tuple] = [
        ("h1", f"Policy comparison: {report['composition']}"),
        ("p", f"Input {report['script']}, budget {report['budget']} relaxations (initial population included), "
              f"seeds 0-{report['seeds'] - 1}, target {report['target_energy']} eV/atom, store {report['db']}."),
    ]
    if report["missing"]:
        blocks.append(("p", f"Not finished (left out): {', '.join(report['missing'])}."))
    refs = [r for r in REFERENCES if r in summary]
    blocks += [("h2", "Time to the global minimum"),
               ("table", ["policy", "runs", "success", "KM median relaxations [95% CI]",
                          "KM median wall s [95% CI]", "best E median (min), eV/atom",
                          *[f"log-rank p vs {r}" for r in refs]],
                [[p, str(s["runs"]), f"{s['successes']}/{s['runs']}",
                  _median_ci(s["relaxations_to_gm"]), _median_ci(s["wall_s_to_gm"], 1),
                  f"{_fmt(s['best_energy']['median'], 6)} ({_fmt(s['best_energy']['min'], 6)})",
                  *[_fmt(tests.get(p, {}).get(r, {}).get("p"), 3) if r != p else "" for r in refs]]
                 for p, s in summary.items()]),
               ("p", "Runs that miss the GM are censored at their last relaxation. The median's confidence interval "
                     "is Brookmeyer-Crowley with Greenwood's variance (∞: not bounded by the data); p-values are "
                     "two-sided log-rank tests of relaxations-to-GM (claims of 'A beats B' need at least 20 seeds "
                     "per policy). Wall time is the walker's own build + relaxation + policy time."),
               ("h2", "Seed-report sequences"),
               ("table", ["policy", "moves/generation (mean, median)", "generations per run",
                          "generation length (mean, median)", "jumps per run", "pre-jump minimum (median eV/atom)"],
                [[p, f"{_fmt(s['moves_sequence']['mean'], 1)}, {_fmt(s['moves_sequence']['median'], 1)}",
                  _fmt(s["generation_sequence"]["per_run"], 1),
                  f"{_fmt(s['generation_sequence']['mean'], 1)}, {_fmt(s['generation_sequence']['median'], 1)}",
                  _fmt(s["energy_sequence"]["per_run"], 1), _fmt(s["energy_sequence"]["median"], 4)]
                 for p, s in summary.items()]),
               ("p", "Moves: candidates built per accepted step (accepted or Metropolis), summed since the previous "
                     "acceptance. Generations: maximal non-increasing streaks of the current energy. Jumps: rises "
                     "of the current energy; the pre-jump minimum is the energy just before each."),
               ("h2", "Moves applied (fraction of search steps)"),
               ("table", ["policy", *[str(a) for a in ACTIONS]],
                [[p, *[f"{s['action_histogram'][str(a)]['fraction']:.3f}" for a in ACTIONS]]
                 for p, s in summary.items()]),
               ("h2", "Plots")]
    blocks += [("img", path, title.replace("_", " ")) for title, path in report["plots"].items()]
    return blocks


def _markdown(blocks: list[tuple]) -> str:
    lines = []
    for kind, *rest in blocks:
        if kind == "h1":
            lines += [f"# {rest[0]}", ""]
        elif kind == "h2":
            lines += [f"## {rest[0]}", ""]
        elif kind == "p":
            lines += [rest[0], ""]
        elif kind == "table":
            header, rows = rest
            lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            lines += ["| " + " | ".join(row) + " |" for row in rows] + [""]
        else:
            lines += [f"![{rest[1]}]({rest[0]})", ""]
    return "\n".join(lines)


def _html(blocks: list[tuple]) -> str:
    from html import escape

    body = []
    for kind, *rest in blocks:
        if kind in ("h1", "h2", "p"):
            body.append(f"<{kind}>{escape(rest[0])}</{kind}>")
        elif kind == "table":
            header, rows = rest
            body.append("<table><tr>" + "".join(f"<th>{escape(h)}</th>" for h in header) + "</tr>" + "".join(
                "<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in rows) + "</table>")
        else:
            body.append(f'<figure><img src="{escape(rest[0])}" alt="{escape(rest[1])}">'
                        f"<figcaption>{escape(rest[1])}</figcaption></figure>")
    style = "body{font-family:sans-serif;max-width:70em}table{border-collapse:collapse}td,th{border:1px solid #999;" \
            "padding:2px 6px}"
    return f"<!DOCTYPE html><html><head><meta charset='utf-8'><style>{style}</style></head><body>" + \
        "\n".join(body) + "</body></html>\n"


def write_report(report: dict[str, Any], out: Path) -> None:
    blocks = report_blocks(report)
    (out / "report.md").write_text(_markdown(blocks))
    (out / "report.html").write_text(_html(blocks))
    (out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
