from __future__ import annotations

import numpy as np
from rlcsp.stats import kaplan_meier, km_median


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
