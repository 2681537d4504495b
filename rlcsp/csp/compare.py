"""``rlcsp compare``: many (policy, seed) walkers on Dask, then time-to-GM statistics, sequences and plots.

Every walker is one ``rlcsp.csp.run.execute`` call in ``<out>/<policy>-seed<seed>/`` (a ':' in the policy name
becomes '-'), and all of them record into one store, from which the report is computed. A walker counts as done
when the store holds a finished run with its exact configuration: its summary.json alone is not enough, because
the report reads the stored steps (a walker whose last steps are still queued locally is rerun, and ``execute``
then flushes them and marks the run finished). An unfinished walker is continued by ``execute`` itself.
With ``lockstep`` the walkers are the same runs, advanced together by rlcsp.csp.lockstep so that their
candidates relax as one batch (a GPU relaxer's), and resumed the same way.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Callable

from rlcsp.policies import ACTIONS, get_policy
from rlcsp.csp.config import SearchConfig, load_script, make_config
from rlcsp.exceptions import ConfigError, RlcspError
from rlcsp.csp.plots import plot_action_probabilities, plot_best_energy, plot_time_to_gm
from rlcsp.csp.walker_stats import REFERENCES, against_fuse, logrank_table, policy_summary, walker_metrics

# A walker that raises (a transient database error, a worker lost) is run again, which resumes it exactly from its
# last committed step; one that fails every time is reported and left out of the statistics.
WALKER_RETRIES = 3


class SchedulerUnreachable(RlcspError, ConnectionError):
    """The Dask scheduler named by --scheduler did not answer."""


def _safe(policy: str) -> str:
    return policy.replace(":", "-")


def walker_dir(out: Path, policy: str, seed: int) -> Path:
    return out / f"{_safe(policy)}-seed{seed}"


# -- running the walkers --------------------------------------------------------------------------------

def run_share(base: dict[str, Any], walkers: list[tuple[str, int]], budget: int, out: str, db_url: str,
              lockstep: dict[str, Any] | None = None, progress: bool = False,
              on_done: Callable[[int, dict], None] | None = None) -> list[dict]:
    """A share of the walkers, as one Dask task (or, for a single local lockstep share, here): their summaries.

    Alone (``lockstep`` None) a share is one walker, so that Dask spreads and retries walkers one by one, and its
    output goes to ``<folder>/walker.log``; in lockstep (``lockstep``: run_lockstep's ``device`` and
    ``processes``) every walker of the share relaxes in one batch per round, whether the share is all the
    walkers on one device or one of many.
    """
    runs = [(make_config(base, policy=p, seed=s, budget=budget), walker_dir(Path(out), p, s)) for p, s in walkers]
    if lockstep is not None:
        from rlcsp.csp.lockstep import run_lockstep

        return run_lockstep(runs, db_url, progress=progress, on_done=on_done, **lockstep)
    from rlcsp.csp.run import execute, walker_log

    [(config, folder)] = runs
    with walker_log(folder):
        return [execute(config, folder, progress=False, db_url=db_url)]


def finished_run(store, config: SearchConfig) -> int | None:
    """The newest finished run with exactly this configuration in the store."""
    return store.find_run(config.to_dict(), which="finished")


@contextlib.contextmanager
def dask_client(scheduler: str | None, workers: int | None, timeout_s: float = 5.0, daemon: bool = True):
    """A client of the given scheduler, or of a LocalCluster of ``workers`` single-threaded processes (not
    ``daemon`` ones when their tasks start processes of their own, as lockstep's build workers)."""
    import dask
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
    with dask.config.set({"distributed.worker.daemon": daemon}), \
            LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                         silence_logs=logging.ERROR) as cluster, Client(cluster) as client:
        yield client


def walker_line(policy: str, seed: int, summary: dict) -> str:
    """One finished (or failed) walker in words."""
    if "error" in summary:
        return f"{policy} seed {seed}: FAILED {summary['error']}"
    if "gm_reached" not in summary:  # stopped with its relaxation in flight (rlcsp.csp.lockstep.STOP_GRACE_S)
        return f"{policy} seed {seed}: stopped after {summary['relaxations']} relaxations ({summary['stop_reason']})"
    gm = f"GM at relaxation {summary['gm_relaxation']}" if summary["gm_reached"] else "GM not reached"
    return (f"{policy} seed {seed}: {gm}, best {summary['best_energy']:.6f} eV/atom, {summary['relaxations']} "
            f"relaxations ({summary['stop_reason']})")


def _follow(futures: dict, store, configs: dict, budget: int, failures: dict[str, str],
            echo: Callable[[str], None]) -> None:
    """Wait for the shares of walkers with a progress bar over walkers x relaxations, read from the shared store,
    showing the best energy so far of each policy; one line per finished walker."""
    from dask.distributed import wait
    from tqdm import tqdm

    policies = sorted({p for p, _ in configs})
    wanted = {json.dumps(c.to_dict(), sort_keys=True) for c in configs.values()}
    total = sum(len(walkers) for walkers in futures.values())
    bar = tqdm(total=len(configs) * budget, unit="relax", desc="walkers", dynamic_ncols=True)
    pending, done = set(futures), 0
    try:
        while pending:
            try:
                finished, pending = wait(list(pending), timeout=2.0, return_when="FIRST_COMPLETED")
            except TimeoutError:  # none finished in the last 2 s: only the bar moves
                finished = set()
            rows = [r for r in store.db.query("SELECT policy, relaxations, best_energy, config FROM runs")
                    if r[3] in wanted]
            bar.n = sum(r[1] or 0 for r in rows)
            best = {p: min((r[2] for r in rows if r[0] == p and r[2] is not None), default=None) for p in policies}
            bar.set_postfix_str(" ".join(f"{p} {e:.4f}" for p, e in best.items() if e is not None))
            bar.refresh()
            for future in finished:
                walkers = futures[future]
                summaries = (future.result() if future.status != "error"
                             else [{"error": repr(future.exception())}] * len(walkers))
                for (p, s), summary in zip(walkers, summaries):
                    done += 1
                    if "error" in summary:
                        failures[f"{p} seed {s}"] = summary["error"]
                    with bar.external_write_mode():  # the caller's echo, without tearing the bar
                        echo(f"[{done}/{total}] {walker_line(p, s, summary)}")
    finally:
        bar.close()


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def compare(script: str | Path, policies: list[str], seeds: int, budget: int, out: str | Path | None = None,
            db_url: str | None = None, scheduler: str | None = None, workers: int | None = None,
            echo: Callable[[str], None] = print, run_missing: bool = True,
            mode: dict[str, Any] | None = None, lockstep: bool = False, device: str | None = None,
            processes: int | None = None, first_seed: int = 0, interim: bool = False) -> dict[str, Any]:
    """Run every missing (policy, seed) walker, then write report.md, report.html, report.json and the plots.

    ``mode`` sets the search mode of every walker (``fuse``, ``quirks``, ``without``, ``keep_structures``; None keeps
    the script's).
    ``lockstep`` (implied by ``device`` and ``processes``) relaxes the walkers' candidates in batches
    (rlcsp.csp.lockstep): all in this process, or split into one share per Dask worker (``workers`` local ones,
    or every worker of ``scheduler``), each share with its own relaxer on ``device``.

    Everything is validated (script, budget, policy and baseline names) before a cluster starts. With
    ``run_missing=False`` only the walkers already finished are reported (the rest are listed as missing);
    ``interim`` also reports the walkers still walking, censored at their last stored relaxation (a campaign's
    Kaplan-Meier estimate on the way: its GM counts are lower bounds).
    """
    from rlcsp.db import Store, default_url

    if scheduler is not None and workers is not None:
        raise ConfigError("--workers sizes a local cluster; an existing scheduler (--scheduler) has its own workers")
    if seeds < 1 or len(set(policies)) != len(policies) or not policies:
        raise ConfigError(f"need at least one seed and distinct policies, got {seeds} seeds of {policies}")
    base = {**load_script(script), **{k: v for k, v in (mode or {}).items() if v is not None}}
    numbers = range(first_seed, first_seed + seeds)  # the seeds of every policy
    configs = {(p, s): make_config(base, policy=p, seed=s, budget=budget) for p in policies for s in numbers}
    for policy in policies:
        get_policy(policy, **configs[policy, first_seed].policy_options)  # UnknownName lists the valid names
    first = configs[policies[0], first_seed]
    out = Path(out or Path("runs") / f"compare-{first.name}").resolve()  # workers may run elsewhere
    out.mkdir(parents=True, exist_ok=True)
    url = db_url or default_url(out)
    store = Store(url)  # creates the schema once, before the walkers race for it
    pending = [(p, s) for s in numbers for p in policies if finished_run(store, configs[p, s]) is None]
    echo(f"{len(configs) - len(pending)} of {len(configs)} walkers already finished in {store.url}")
    failures: dict[str, str] = {}
    batched = ({"device": device, "processes": processes}
               if lockstep or device is not None or processes is not None else None)
    if pending and run_missing and batched is not None and scheduler is None and (workers or 1) == 1:
        from rlcsp.csp.run import interrupted

        def on_done(i: int, summary: dict) -> None:
            if "error" in summary:
                failures[f"{pending[i][0]} seed {pending[i][1]}"] = summary["error"]
            echo(f"[lockstep] {walker_line(*pending[i], summary)}")

        summaries = run_share(base, pending, budget, str(out), url, batched, progress=True, on_done=on_done)
        if any(interrupted(s.get("stop_reason", "")) for s in summaries):
            echo("stopped: rerun the same command to continue (every unfinished walker resumes from its last stored "
                 "step)")
    elif pending and run_missing:
        n_workers = workers or min(_cores(), len(pending))
        with dask_client(scheduler, n_workers, daemon=not processes) as client:
            n_shares = max(1, len(client.scheduler_info()["workers"])) if batched is not None else len(pending)
            shares = [share for k in range(n_shares) if (share := pending[k::n_shares])]
            futures = {client.submit(run_share, base, share, budget, str(out), url, batched, pure=False,
                                     retries=WALKER_RETRIES): share for share in shares}
            try:
                _follow(futures, store, configs, budget, failures, echo)
            except KeyboardInterrupt:
                echo("interrupted: rerun the same command to continue (finished walkers are skipped, the others "
                     "resume from their last stored step)")
                raise
    report = build_report(store, configs, policies, numbers, budget, out, str(script), interim)
    report["failures"] = failures
    write_report(report, out)
    store.close()
    echo(f"report: {out / 'report.md'}")
    return report


# -- the report -----------------------------------------------------------------------------------------

def build_report(store, configs: dict[tuple[str, int], SearchConfig], policies: list[str], seeds: range,
                 budget: int, out: Path, script: str, interim: bool = False) -> dict[str, Any]:
    """Every number of the comparison, and the plots (paths relative to ``out``); ``interim`` counts the walkers
    still walking, censored at their last stored relaxation."""
    walkers: dict[str, list[dict]] = {p: [] for p in policies}
    missing, walking = [], []
    for (policy, seed), config in sorted(configs.items(), key=lambda kv: (policies.index(kv[0][0]), kv[0][1])):
        run_id = finished_run(store, config)
        if run_id is None and interim and (run_id := store.find_run(config.to_dict())) is not None:
            walking.append(f"{policy} seed {seed}")
        if run_id is None:
            missing.append(f"{policy} seed {seed}")
            continue
        walkers[policy].append({**walker_metrics(store, run_id), "folder": walker_dir(out, policy, seed).name})
    first = configs[policies[0], seeds.start]
    plots = {"time_to_gm": "time_to_gm.png", "best_energy": "best_energy.png"}
    plot_time_to_gm(walkers, budget, out / plots["time_to_gm"])
    plot_best_energy(walkers, budget, first.target_energy, out / plots["best_energy"])
    for policy, ws in walkers.items():
        name = f"probabilities_{_safe(policy)}.png"
        if ws and plot_action_probabilities(store, [w["run_id"] for w in ws], out / name):
            plots[f"probabilities {policy}"] = name
    summary = {p: policy_summary(ws, budget) for p, ws in walkers.items()}
    for policy, row in summary.items():
        row["fuse"] = against_fuse(first.comp.label, policy, row)
    return {"script": script, "composition": first.comp.label, "target_energy": first.target_energy,
            "budget": budget, "seeds": len(seeds), "first_seed": seeds.start, "policies": policies, "db": store.url,
            "missing": missing, "walking": walking,
            "summary": summary,
            "logrank_relaxations_to_gm": logrank_table(walkers, budget), "plots": plots,
            "walkers": [w for ws in walkers.values() for w in ws]}


def _fmt(x: float | None, digits: int = 0) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _test(result: dict | None) -> str:
    return "–" if result is None else f"{result['p']:.3f} ({result['p_holm']:.3f})"


def _median_ci(entry: dict, digits: int = 0) -> str:
    lo, hi = entry["ci95"]
    return f"{_fmt(entry['km_median'], digits)} [{_fmt(lo, digits)}, {'∞' if hi is None else _fmt(hi, digits)}]"


def report_blocks(report: dict[str, Any]) -> list[tuple]:
    """The report as headings, paragraphs, tables and images, rendered to Markdown and HTML alike."""
    summary, tests = report["summary"], report["logrank_relaxations_to_gm"]
    blocks: list[tuple] = [
        ("h1", f"Policy comparison: {report['composition']}"),
        ("p", f"Input {report['script']}, budget {report['budget']} relaxations (initial population included), "
              f"seeds {report['first_seed']}-{report['first_seed'] + report['seeds'] - 1}, "
              f"target {report['target_energy']} eV/atom, store {report['db']}."),
    ]
    if report["missing"]:
        blocks.append(("p", f"Not finished (left out): {', '.join(report['missing'])}."))
    if report.get("walking"):
        blocks.append(("p", f"Interim: {len(report['walking'])} walkers are still walking, counted as censored at "
                            "their last stored relaxation; their GM counts can only grow."))
    refs = [r for r in REFERENCES if r in summary]
    blocks += [("h2", "Time to the global minimum"),
               ("table", ["policy", "runs", "success", "KM median relaxations [95% CI]",
                          "KM median wall s [95% CI]", "relaxer s (all runs)", "best E median (min), eV/atom",
                          "FUSE of 40 (Fisher p)", *[f"log-rank p vs {r} (Holm)" for r in refs]],
                [[p, str(s["runs"]), f"{s['successes']}/{s['runs']}",
                  _median_ci(s["relaxations_to_gm"]), _median_ci(s["wall_s_to_gm"], 1), _fmt(s["relax_s"], 1),
                  f"{_fmt(s['best_energy']['median'], 6)} ({_fmt(s['best_energy']['min'], 6)})",
                  "–" if s["fuse"] is None else f"{s['fuse']['of_40']} ({s['fuse']['fisher_p']:.2g})",
                  *[_test(tests.get(p, {}).get(r)) if r != p else "" for r in refs]]
                 for p, s in summary.items()]),
               ("p", "Runs that miss the GM are censored at their last relaxation. The median's confidence interval "
                     "is Brookmeyer-Crowley with Greenwood's variance (∞: not bounded by the data); p-values are "
                     "two-sided log-rank tests of relaxations-to-GM, in brackets Holm-corrected across the rows "
                     "tested against the same reference (claims of 'A beats B' need at least 20 seeds per policy); "
                     "FUSE's count is its paper's runs of 40 that reached the GM, with Fisher's exact p of this row "
                     "against it. Wall time is the walker's own build + relaxation + policy time; relaxer "
                     "seconds sum the row's relaxations, a batch's wall time shared by its members (a GPU's "
                     "seconds in lockstep). Each walker's code version is in report.json."),
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
