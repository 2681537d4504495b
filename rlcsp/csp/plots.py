"""Plots of stored walkers: time-to-GM curves, best energy against relaxations, and a learning policy's action
probabilities against energy (``rlcsp compare`` and ``rlcsp show``)."""
from __future__ import annotations

import json
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from rlcsp.csp.walker_stats import is_learning
from rlcsp.policies import ACTIONS, State, get_policy
from rlcsp.stats import kaplan_meier


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


def plot_action_probabilities(store, run_ids: int | list[int], path: Path, points: int = 3) -> bool:
    """Probability of each move versus energy at ``points`` versions of the runs' policies, as RLCSP draws them.

    With several runs (the seeds of one policy) the curves are pooled: the mean over runs of each run's own
    version at the same fraction of its updates, with the range across runs shaded. The energy axis spans the
    target and the runs' relaxed energies (up to their 95th percentile); the other features are those of a walker
    that just went downhill at the starting temperature with the runs' median size. Returns False (and draws
    nothing) for a policy without parameters or runs without stored versions.
    """
    from rlcsp.actions import MOVES

    run_ids = [run_ids] if isinstance(run_ids, int) else list(run_ids)
    infos = [store.run_info(r) for r in run_ids]
    config = infos[0]["config"]
    if not is_learning(infos[0]["policy"], config["policy_options"]):
        return False
    versions = [v for v in (_param_versions(store, f"run{r}", points) for r in run_ids) if v]
    steps = [s for r in run_ids for s in store.steps(r)]
    energies = [s["e_new"] for s in steps if s["e_new"] is not None and np.isfinite(s["e_new"])]
    if not versions or not energies:
        return False
    target = config.get("target_energy")
    grid = np.linspace(min(energies + ([target] if target is not None else [])), np.percentile(energies, 95), 80)
    state = State(0.0, int(np.median([s["n_atoms"] for s in steps])), config["max_atoms"], 0, config["temperature"],
                  None)
    columns = min(len(v) for v in versions)
    plt = _pyplot()
    fig, axes = plt.subplots(1, columns, figsize=(4.2 * columns, 3.8), sharey=True, squeeze=False)
    for k, ax in enumerate(axes[0]):
        chosen = [v[round(k * (len(v) - 1) / max(columns - 1, 1))] for v in versions]
        probs = np.array([action_probabilities(infos[0]["policy"], config["policy_options"], params, grid, state)
                          for _, _, params in chosen])
        for i, a in enumerate(ACTIONS):
            line, = ax.plot(grid, probs[:, :, i].mean(axis=0), lw=1.2, label=f"{a} {MOVES[a].name}")
            if len(probs) > 1:
                ax.fill_between(grid, probs[:, :, i].min(axis=0), probs[:, :, i].max(axis=0),
                                color=line.get_color(), alpha=0.12, lw=0)
        if target is not None:
            ax.axvline(target, c="k", ls="--", lw=0.7)
        number, total, _ = chosen[0]
        ax.set_title(f"update {number} of {total}" if len(chosen) == 1 else
                     f"{k * 100 // max(columns - 1, 1)} % of the updates", fontsize=9)
        ax.set_xlabel("energy (eV/atom)")
    axes[0][0].set_ylabel("P(move)")
    axes[0][-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    who = (f"run {run_ids[0]}: {infos[0]['policy']}, seed {infos[0]['seed']}" if len(run_ids) == 1 else
           f"{infos[0]['policy']}: mean of {len(versions)} seeds (shaded: their range)")
    fig.suptitle(who, fontsize=10)
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
    styles = ("-", "--", "-.", ":")
    for i, (policy, ws) in enumerate(walkers.items()):
        colour, style = f"C{i % 10}", styles[i % len(styles)]
        traces = []
        for w in ws:
            trace = np.array([np.nan if e is None else e for e in w["best_energy_trace"]], dtype=float)[:budget]
            trace = np.concatenate([trace, np.full(budget - len(trace), trace[-1] if len(trace) else np.nan)])
            traces.append(trace)
            ax.plot(x, trace, c=colour, lw=0.5, alpha=0.35)
        if traces:
            with warnings.catch_warnings():  # relaxations where no seed has a structure yet stay blank
                warnings.simplefilter("ignore", RuntimeWarning)
                # styles and staggered markers keep medians apart where several policies share one value
                ax.plot(x, np.nanmedian(np.array(traces), axis=0), c=colour, lw=2, ls=style,
                        label=f"{policy} (median)", marker="os^dv<>"[i % 7],
                        markevery=(i * budget // (10 * len(walkers)) + 1, max(budget // 10, 1)))
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
