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


def plot_action_probabilities(store, run_id: int, path: Path, points: int = 3) -> bool:
    """Probability of each move versus energy at ``points`` versions of a run's policy, as RLCSP draws them.

    The energy axis spans the target and the run's relaxed energies (up to their 95th percentile); the other
    features are those of a walker that just went downhill at the starting temperature with the run's median
    size. Returns False (and draws nothing) for a policy without parameters or a run without stored versions.
    """
    from rlcsp.actions import MOVES

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
