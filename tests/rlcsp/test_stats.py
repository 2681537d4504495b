from __future__ import annotations

import numpy as np
import pytest
from rlcsp.stats import greenwood_se, kaplan_meier, km_median, km_median_ci, logrank


def test_without_censoring_km_is_the_empirical_survival():
    t, s = kaplan_meier([10, 20, 30, 40], [True] * 4)
    np.testing.assert_allclose(t, [10, 20, 30, 40])
    np.testing.assert_allclose(s, [0.75, 0.5, 0.25, 0.0])
    assert km_median([10, 20, 30, 40], [True] * 4) == 20


def test_censored_runs_leave_the_risk_set_without_an_event():
    # Hand-computed: at 10, 5 at risk -> 4/5; censored at 15; at 20, 3 at risk -> 4/5*2/3 = 8/15; at 30 -> 4/15.
    t, s = kaplan_meier([10, 15, 20, 30, 2000], [True, False, True, True, False])
    np.testing.assert_allclose(s, [0.8, 8 / 15, 4 / 15])
    assert km_median([10, 15, 20, 30, 2000], [True, False, True, True, False]) == 30


def test_median_is_none_when_most_runs_fail():
    assert km_median([50, 2000, 2000], [True, False, False]) is None
    assert km_median([], []) is None


# Freireich et al. (1963) leukaemia remission times in weeks, the log-rank textbook example (Kleinbaum & Klein,
# "Survival Analysis", ch. 2): 6-MP (9 relapses, 12 censored) against placebo (21 relapses). Its log-rank
# statistic is 16.79 on 1 df (O - E = 9 - 19.25, variance 6.257), p = 4.17e-5, as R's survdiff prints.
SIX_MP = [6, 6, 6, 6, 7, 9, 10, 10, 11, 13, 16, 17, 19, 20, 22, 23, 25, 32, 32, 34, 35]
SIX_MP_RELAPSED = [True, True, True, False, True, False, True, False, False, True, True, False, False, False,
                   True, True, False, False, False, False, False]
PLACEBO = [1, 1, 2, 2, 3, 4, 4, 5, 5, 8, 8, 8, 8, 11, 11, 12, 12, 15, 17, 22, 23]


def test_logrank_reproduces_the_textbook_leukaemia_example():
    statistic, p = logrank(SIX_MP, SIX_MP_RELAPSED, PLACEBO, [True] * len(PLACEBO))
    assert statistic == pytest.approx(16.79, abs=0.01)
    assert p == pytest.approx(4.17e-5, rel=0.01)
    assert logrank(PLACEBO, [True] * len(PLACEBO), SIX_MP, SIX_MP_RELAPSED) == pytest.approx((statistic, p))


def test_logrank_of_identical_groups_has_p_one_and_of_disjoint_groups_a_small_p():
    times, reached = [10, 20, 30, 40, 2000], [True, True, True, True, False]
    assert logrank(times, reached, times, reached) == pytest.approx((0.0, 1.0))
    fast, slow = list(range(10, 210, 10)), list(range(1010, 1210, 10))
    assert logrank(fast, [True] * 20, slow, [True] * 20)[1] < 1e-6
    assert logrank([2000] * 3, [False] * 3, [2000] * 3, [False] * 3) == (0.0, 1.0)  # no event: nothing to test


def test_greenwood_error_without_censoring_is_the_binomial_one():
    # No censoring: Var S = S (1 - S) / n at every event time.
    times = list(range(1, 11))
    _, s = kaplan_meier(times, [True] * 10)
    np.testing.assert_allclose(greenwood_se(times, [True] * 10), np.sqrt(s * (1 - s) / 10))


def test_greenwood_error_with_censoring_by_hand():
    # Terms d / (n (n - d)): 1/20 at t = 10, 1/6 at t = 20 (the run censored at 15 left), 1/2 at t = 30.
    se = greenwood_se([10, 15, 20, 30, 2000], [True, False, True, True, False])
    np.testing.assert_allclose(se, [0.8 * np.sqrt(1 / 20), 8 / 15 * np.sqrt(1 / 20 + 1 / 6),
                                    4 / 15 * np.sqrt(1 / 20 + 1 / 6 + 1 / 2)])


def test_median_ci_brookmeyer_crowley_by_hand():
    # Ten events at 1..10, S(k) = 1 - k/10, se = sqrt(S (1 - S) / 10). Lower band S - 1.96 se first reaches 0.5
    # at k = 3 (0.7 - 0.284 = 0.416; at k = 2: 0.8 - 0.248 = 0.552); upper band S + 1.96 se at k = 8
    # (0.2 + 0.248 = 0.448; at k = 7: 0.3 + 0.284 = 0.584). The median is 5.
    times = list(range(1, 11))
    assert km_median(times, [True] * 10) == 5
    assert km_median_ci(times, [True] * 10) == (3, 8)


def test_median_ci_is_open_ended_when_too_many_runs_fail():
    times = [10, 20, 30, 40, 50, 2000, 2000, 2000, 2000, 2000]
    lower, upper = km_median_ci(times, [True] * 5 + [False] * 5)
    assert lower == 30 and upper is None


def test_fisher_and_holm_by_hand():
    from rlcsp.stats import fisher_p, holm

    assert fisher_p(4, 4, 0, 4) == pytest.approx(2 / 70)  # [[4, 0], [0, 4]]: the two extreme tables of C(8, 4)
    assert fisher_p(40, 40, 40) == pytest.approx(1.0)
    assert holm({"a": 0.01, "b": 0.04, "c": 0.03}) == pytest.approx({"a": 0.03, "c": 0.06, "b": 0.06})
    assert holm({"a": 0.5, "b": 0.9}) == {"a": 1.0, "b": 1.0}
