"""Survival statistics for steps-to-GM: runs that never reach the GM are censored at their budget."""
from __future__ import annotations

import numpy as np


def kaplan_meier(times: list[float], reached: list[bool]) -> tuple[np.ndarray, np.ndarray]:
    """Event times and the Kaplan-Meier estimate of P(not yet reached the GM) just after each."""
    t = np.asarray(times, dtype=float)
    e = np.asarray(reached, dtype=bool)
    event_times = np.unique(t[e])
    survival = []
    s = 1.0
    for u in event_times:
        at_risk = np.sum(t >= u)
        s *= 1.0 - np.sum((t == u) & e) / at_risk
        survival.append(s)
    return event_times, np.asarray(survival)


def km_median(times: list[float], reached: list[bool]) -> float | None:
    """Smallest time at which the KM survival drops to 0.5 or below; None if it never does (censored)."""
    event_times, survival = kaplan_meier(times, reached)
    below = np.nonzero(survival <= 0.5)[0]
    return float(event_times[below[0]]) if len(below) else None
