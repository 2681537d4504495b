"""Survival statistics for steps-to-GM: runs that never reach the GM are censored at their budget."""
from __future__ import annotations

import numpy as np
from scipy.stats import chi2, norm


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


def greenwood_se(times: list[float], reached: list[bool]) -> np.ndarray:
    """Greenwood's standard error of the KM survival at each event time of :func:`kaplan_meier`.

    Var S(t) = S(t)^2 * sum over event times u <= t of d_u / (n_u (n_u - d_u)); where S(t) = 0 (everyone at
    risk had the event) the estimate is exact and the error is 0.
    """
    t = np.asarray(times, dtype=float)
    e = np.asarray(reached, dtype=bool)
    event_times, survival = kaplan_meier(times, reached)
    total, out = 0.0, []
    for u, s in zip(event_times, survival):
        n, d = np.sum(t >= u), np.sum((t == u) & e)
        total = np.inf if n == d else total + d / (n * (n - d))
        out.append(0.0 if s == 0 else s * np.sqrt(total))
    return np.asarray(out)


def km_median_ci(times: list[float], reached: list[bool], level: float = 0.95) -> tuple[float | None, float | None]:
    """Brookmeyer-Crowley confidence interval of the KM median, with Greenwood's variance on the plain scale.

    The interval holds the times t where H0: S(t) = 0.5 is not rejected, |S(t) - 0.5| <= z se(t). As in R's
    ``survfit``, its lower end is the first event time where the lower band S - z se reaches 0.5 and its upper
    end the first event time where the upper band S + z se does. An end the data never reach is None
    (unbounded: too many runs censored).
    """
    event_times, survival = kaplan_meier(times, reached)
    se = greenwood_se(times, reached)
    z = norm.ppf(0.5 + level / 2)

    def first(band: np.ndarray) -> float | None:
        hit = np.nonzero(band <= 0.5)[0]
        return float(event_times[hit[0]]) if len(hit) else None

    return first(survival - z * se), first(survival + z * se)


def logrank(times_a: list[float], reached_a: list[bool], times_b: list[float],
            reached_b: list[bool]) -> tuple[float, float]:
    """Two-sample log-rank test of equal time-to-GM distributions: (chi-square statistic on 1 df, p-value).

    At each distinct event time u of the pooled sample, with n at risk (n_a of them in A) and d events, group A
    expects d n_a / n events with hypergeometric variance d (n_a/n) (1 - n_a/n) (n - d) / (n - 1); the statistic
    is (O_a - E_a)^2 / V summed over u. With no events at all there is nothing to compare: (0, 1).
    """
    t = np.concatenate([np.asarray(times_a, dtype=float), np.asarray(times_b, dtype=float)])
    e = np.concatenate([np.asarray(reached_a, dtype=bool), np.asarray(reached_b, dtype=bool)])
    in_a = np.arange(len(t)) < len(times_a)
    observed = expected = variance = 0.0
    for u in np.unique(t[e]):
        at_risk = t >= u
        n, n_a = at_risk.sum(), (at_risk & in_a).sum()
        d = ((t == u) & e).sum()
        observed += ((t == u) & e & in_a).sum()
        expected += d * n_a / n
        if n > 1:
            variance += d * (n_a / n) * (1 - n_a / n) * (n - d) / (n - 1)
    if variance == 0:
        return 0.0, 1.0
    statistic = (observed - expected) ** 2 / variance
    return float(statistic), float(chi2.sf(statistic, 1))


def fisher_p(hits: int, n: int, ref_hits: int, ref_n: int = 40) -> float:
    """Fisher's exact test (two-sided) of hits/n against a reference count, such as FUSE's of 40 runs."""
    from scipy.stats import fisher_exact

    return float(fisher_exact([[hits, n - hits], [ref_hits, ref_n - ref_hits]])[1])


def holm(pvalues: dict[str, float]) -> dict[str, float]:
    """Holm-Bonferroni adjusted p-values of a family of tests: the k-th smallest of m is multiplied by m - k + 1,
    then made non-decreasing in that order (and capped at 1), so a row is significant at level a when its adjusted
    p is below a, whichever other rows were tested."""
    order = sorted(pvalues, key=pvalues.get)
    adjusted, running = {}, 0.0
    for k, name in enumerate(order):
        running = max(running, min(1.0, (len(order) - k) * pvalues[name]))
        adjusted[name] = running
    return adjusted
