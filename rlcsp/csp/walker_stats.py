"""Statistics of stored walkers: move, generation and energy sequences, action histograms, time-to-GM, and the
per-policy summaries and log-rank tests that ``rlcsp compare`` reports."""
from __future__ import annotations

from typing import Any

import numpy as np

from rlcsp.policies import ACTIONS, get_policy
from rlcsp.stats import fisher_p, holm, km_median, km_median_ci, logrank

REFERENCES = ("original", "uniform")  # every policy is tested against these
# Runs of 40 that reached the GM in FUSE's paper: Original / Uniform / RLCSP (shared/data/README.md)
FUSE_COUNTS = {
    "Y2O3": {"original": 14, "uniform": 9, "reinforce-rlcsp": 12},
    "Y2Ti2O7": {"original": 40, "uniform": 40, "reinforce-rlcsp": 40},
    "Y2TiO5": {"original": 40, "uniform": 40, "reinforce-rlcsp": 40},
    "SrY2O4": {"original": 14, "uniform": 40, "reinforce-rlcsp": 40},
    "Sr4Ti3O10": {"original": 39, "uniform": 40, "reinforce-rlcsp": 39},
}


def is_learning(policy: str, options: dict[str, Any]) -> bool:
    """A policy with parameters (fixed policies have an empty state_dict)."""
    return bool(get_policy(policy, **options).state_dict())


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
            "best_energy": info["best_energy"], "code_version": info["code_version"],
            "relax_s": round(sum(s["relax_s"] or 0.0 for s in steps), 3), "moves_sequence": moves_sequence(steps),
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
    # A lockstep step's relax_s is its batch's wall time over the batch size: summed, the row's share of the relaxer.
    out["relax_s"] = round(sum(w["relax_s"] for w in walkers), 1)
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
    for reference in REFERENCES:  # each reference's tests are one family: Holm's correction across the rows
        family = {policy: tests[reference]["p"] for policy, tests in table.items() if reference in tests}
        for policy, adjusted in holm(family).items():
            table[policy][reference]["p_holm"] = adjusted
    return table


def against_fuse(composition: str, policy: str, summary: dict[str, Any]) -> dict[str, Any] | None:
    """FUSE's count of 40 for this composition and policy, with Fisher's exact p of this row against it."""
    reference = FUSE_COUNTS.get(composition, {}).get(policy)
    if reference is None or not summary["runs"]:
        return None
    return {"of_40": reference, "fisher_p": fisher_p(summary["successes"], summary["runs"], reference)}
