"""Antolini's time-dependent C and the cause-specific C and Brier score for competing risks.

References: O(n^2) plain-Python loops written from the definitions in
``survopt_hydra/survival/families/metrics.py``; Harrell's C (``concordance_index``, itself
equal to lifelines') for curves that never cross; pycox's ``concordance_td`` (Antolini's
original, ties 0) on tie-free predictions; and, with one cause, the single-risk IPCW Brier
score (``brier_scores``, equal to scikit-survival's) and scikit-survival directly.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from survopt_hydra.survival import BreslowBaseline, brier_scores, concordance_index
from survopt_hydra.survival.families import (
    antolini_cindex,
    cause_specific_brier,
    cause_specific_cindex,
    integrated_cause_specific_brier,
)


def step_value(row, times, t, before):
    k = np.searchsorted(times, t, side="right") - 1
    return before if k < 0 else row[k]


def loop_cause_cindex(cif, times, durations, events, cause):
    good = usable = 0.0
    n = len(durations)
    for i in range(n):
        if events[i] != cause:
            continue
        own = step_value(cif[i], times, durations[i], 0.0)
        for j in range(n):
            if j == i:
                continue
            if durations[j] > durations[i] or (durations[j] == durations[i] and events[j] == 0) \
                    or events[j] not in (0, cause):
                other = step_value(cif[j], times, durations[i], 0.0)
                usable += 1
                good += 1.0 if own > other else 0.5 if own == other else 0.0
    return good / usable


def loop_antolini(surv, times, durations, events):
    good = usable = 0.0
    for i in range(len(durations)):
        if not events[i]:
            continue
        own = step_value(surv[i], times, durations[i], 1.0)
        for j in range(len(durations)):
            if durations[j] > durations[i] or (durations[j] == durations[i] and not events[j] and j != i):
                other = step_value(surv[j], times, durations[i], 1.0)
                usable += 1
                good += 1.0 if own < other else 0.5 if own == other else 0.0
    return good / usable


def crossing_curves(seed, n=80, causes=1):
    """Random non-monotone-in-rank curves on a grid, rounded so that ties in the curves occur."""
    rng = np.random.default_rng(seed)
    times = np.arange(1.0, 11.0)
    durations = rng.integers(0, 13, n).astype(np.float64)  # before, on and past the grid; tied
    events = rng.integers(0, causes + 1, n) * (rng.random(n) < 0.8)
    steps = rng.random((n, len(times)))
    curve = np.round(np.cumsum(steps, 1) / steps.sum(1, keepdims=True) * rng.uniform(0.3, 1, (n, 1)), 2)
    return curve, times, durations, events


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_antolini_matches_a_plain_loop(seed):
    cif, times, durations, events = crossing_curves(seed)
    surv = 1.0 - cif
    assert antolini_cindex(surv, times, durations, events) == pytest.approx(
        loop_antolini(surv, times, durations, events), rel=1e-12)


def test_antolini_equals_harrell_when_curves_do_not_cross():
    """A proportional-hazards model: S(t | x) is decreasing in the risk at every t."""
    rng = np.random.default_rng(4)
    n = 150
    risk = np.round(rng.normal(size=n), 1)  # tied risks: both metrics count them 1/2
    durations = np.round(rng.exponential(np.exp(-risk)), 1) + 0.1
    events = (rng.random(n) < 0.7).astype(np.float64)
    baseline = BreslowBaseline.fit(risk, durations, events)
    times = np.unique(durations)
    surv = baseline.survival(risk, times)
    c = antolini_cindex(surv, times, durations, events)
    assert c == pytest.approx(concordance_index(risk, durations, events), abs=1e-15)
    assert 0.6 < c < 0.9  # a real signal, so the equality is not trivial


def test_antolini_matches_pycox_without_ties():
    concordance = pytest.importorskip("pycox.evaluation.concordance")
    rng = np.random.default_rng(5)
    n = 60
    durations = rng.permutation(np.arange(1.0, n + 1))  # distinct times
    events = (rng.random(n) < 0.7).astype(np.int64)
    surv = np.sort(rng.random((n, n)), 1)[:, ::-1]  # crossing, tie-free curves on the grid `durations`
    times = np.arange(1.0, n + 1)
    ref = concordance.concordance_td(durations, events, np.ascontiguousarray(surv.T),
                                     (durations - 1).astype(np.int64), method="antolini")
    assert antolini_cindex(surv, times, durations, events) == pytest.approx(ref, rel=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("cause", [1, 2])
def test_cause_specific_cindex_matches_a_plain_loop(seed, cause):
    cif, times, durations, events = crossing_curves(seed, causes=2)
    assert set(np.unique(events)) == {0, 1, 2}
    assert cause_specific_cindex(cif, times, durations, events, cause) == pytest.approx(
        loop_cause_cindex(cif, times, durations, events, cause), rel=1e-12)


def test_competing_events_stay_comparable():
    """Row 1 had the other cause *before* row 0's event: it can never have cause 1, so it counts."""
    times = np.array([1.0, 2.0, 3.0])
    cif = np.array([[0.1, 0.5, 0.6], [0.0, 0.2, 0.3], [0.0, 0.1, 0.9]])
    durations, events = np.array([2.0, 1.0, 2.5]), np.array([1, 2, 0])
    # pairs for cause 1: (0, 1) competing, 0.5 > 0.2 concordant; (0, 2) later, 0.5 > 0.1 concordant
    assert cause_specific_cindex(cif, times, durations, events, 1) == 1.0
    cif[1, 1] = 0.7
    assert cause_specific_cindex(cif, times, durations, events, 1) == 0.5
    cif[1, 1], events[1] = 0.2, 0  # censored before row 0's event: not comparable any more
    assert cause_specific_cindex(cif, times, durations, events, 1) == 1.0
    cif[2, 1] = 0.9
    assert cause_specific_cindex(cif, times, durations, events, 1) == 0.0


def test_one_cause_reduces_to_antolini():
    cif, times, durations, events = crossing_curves(7)
    assert cause_specific_cindex(cif, times, durations, events, 1) == pytest.approx(
        antolini_cindex(1.0 - cif, times, durations, events), rel=1e-12)


def loop_brier(cif, times, durations, events, cause, train_durations, train_events):
    """Schoop et al. (2011): IPCW weights from the censoring KM of the training rows (a plain loop KM,
    scikit-survival's convention for ties)."""
    def censoring_km(t):
        s = 1.0
        for u in sorted(set(train_durations)):
            if u > t:
                break
            # an event tied with a censoring happened first, so it is no longer at risk of censoring
            at_risk = sum(1 for d, e in zip(train_durations, train_events) if d > u or (d == u and e == 0))
            censored = sum(1 for d, e in zip(train_durations, train_events) if d == u and e == 0)
            s *= 1 - censored / at_risk
        return s

    out = []
    for k, t in enumerate(times):
        total = 0.0
        for i in range(len(durations)):
            f = cif[i][k]
            if durations[i] <= t and events[i] != 0:
                total += ((1.0 if events[i] == cause else 0.0) - f) ** 2 / censoring_km(durations[i])
            elif durations[i] > t:
                total += f**2 / censoring_km(t)
        out.append(total / len(durations))
    return out


@pytest.mark.parametrize("cause", [1, 2])
def test_cause_specific_brier_matches_a_plain_loop(cause):
    cif, times, durations, events = crossing_curves(3, n=50, causes=2)
    rng = np.random.default_rng(8)
    train_d, train_e = rng.integers(1, 14, 70).astype(np.float64), rng.integers(0, 3, 70)
    got = cause_specific_brier(cif, times, durations, events, cause, train_d, train_e)
    expected = loop_brier(cif.tolist(), times, durations, events, cause, train_d.tolist(), train_e.tolist())
    assert got.tolist() == pytest.approx(expected, rel=1e-12)
    ibs = integrated_cause_specific_brier(cif, times, durations, events, cause, train_d, train_e)
    assert ibs == pytest.approx(np.trapezoid(expected, times) / (times[-1] - times[0]), rel=1e-12)


def test_one_cause_brier_is_the_single_risk_brier_of_scikit_survival():
    sksurv = pytest.importorskip("sksurv.metrics")
    from sksurv.util import Surv

    cif, times, durations, events = crossing_curves(9, n=60)
    durations = durations + 0.5  # inside the training follow-up, as scikit-survival requires
    train_d = np.concatenate([durations, [20.0]])
    train_e = np.concatenate([events, [0]])
    times = times[:-1]
    cif = cif[:, :-1]
    ours = cause_specific_brier(cif, times, durations, events, 1, train_d, train_e)
    assert torch.allclose(ours, brier_scores(1.0 - cif, times, durations, events, train_d, train_e), rtol=1e-12)
    _, ref = sksurv.brier_score(Surv.from_arrays(train_e > 0, train_d), Surv.from_arrays(events > 0, durations),
                                1.0 - cif, times)
    assert ours.numpy() == pytest.approx(ref, rel=1e-9)


def test_bad_input_is_a_one_line_error():
    cif, times, durations, events = crossing_curves(0, n=10)
    with pytest.raises(ValueError, match="shape"):
        antolini_cindex(cif[:, :3], times, durations, events)
    with pytest.raises(ValueError, match="no usable pair"):
        cause_specific_cindex(cif, times, durations, np.zeros(10), 1)
    with pytest.raises(ValueError, match="increasing"):
        antolini_cindex(cif, times[::-1], durations, events)
