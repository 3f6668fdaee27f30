"""C-index checked against lifelines, including its tie conventions, and against a hand-computed example."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from survopt_hydra.survival.metrics import ConcordanceCounts, comparable_pairs, concordance_index

lifelines_ci = pytest.importorskip("lifelines.utils").concordance_index


@pytest.mark.parametrize("seed", range(5))
def test_matches_lifelines_with_ties_in_time_and_risk(seed):
    rng = np.random.default_rng(seed)
    n = 300
    time = rng.integers(1, 10, n).astype(float)
    event = (rng.random(n) < 0.5).astype(float)
    risk = np.round(rng.normal(size=n) - 0.1 * time, 1)  # rounding creates tied risks
    expected = lifelines_ci(time, -risk, event)
    assert concordance_index(risk, time, event) == pytest.approx(expected, abs=1e-9)
    from_tensors = concordance_index(torch.tensor(risk), torch.tensor(time), torch.tensor(event))
    assert from_tensors == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("n", [1, 2, 3, 17, 1000, 20_000])
def test_matches_lifelines_at_several_sizes_with_heavy_ties(n):
    # Few distinct times and rounded risks: long runs of tied times (events and censored) and tied risks.
    rng = np.random.default_rng(n)
    time, risk = rng.integers(0, 4 + n // 100, n).astype(float), np.round(rng.normal(size=n), 1)
    event = rng.random(n) < 0.6
    try:
        expected = lifelines_ci(time, -risk, event)
    except ZeroDivisionError:  # n = 1, or a draw without a comparable pair
        with pytest.raises(ValueError, match="no comparable pairs"):
            concordance_index(risk, time, event)
        return
    assert concordance_index(risk, time, event) == pytest.approx(expected, abs=1e-9)


def test_hand_computed_example():
    # Pairs (event row first): (0,1) (0,2) (0,3) (0,4) concordant; (1,2) tied risk 0.5, censored at the
    # same time; (1,3) discordant; (1,4) concordant; (3,4) concordant -> 6.5 of 8.
    time, event = [1.0, 2.0, 2.0, 3.0, 4.0], [1, 1, 0, 1, 0]
    risk = [0.9, 0.5, 0.5, 0.7, 0.1]
    assert concordance_index(risk, time, event) == 6.5 / 8
    assert ConcordanceCounts(risk, time, event).pairs == comparable_pairs(time, event) == 8


def test_fields_of_a_structured_y_are_read_as_plain_arrays():
    """scikit-survival's y is a structured array: its fields are strided views, read as their values."""
    time, event = [1.0, 2.0, 2.0, 3.0, 4.0], [1, 1, 0, 1, 0]
    y = np.array(list(zip(map(bool, event), time)), dtype=[("Status", "?"), ("Days", "<f8")])
    risk = np.array([0.9, 0.5, 0.5, 0.7, 0.1])
    assert not y["Days"].flags.c_contiguous
    assert concordance_index(risk, y["Days"], y["Status"]) == concordance_index(risk, time, event) == 6.5 / 8


def test_row_order_dtype_and_signed_zero_do_not_matter():
    rng = np.random.default_rng(3)
    time, risk = rng.integers(0, 20, 3000).astype(float), np.round(rng.normal(size=3000), 2)
    event = rng.random(3000) < 0.5
    risk[risk == 0] = -0.0  # -0.0 and 0.0 are one tied risk, as lifelines compares them
    risk[:5] = 0.0
    expected = lifelines_ci(time, -risk, event)
    perm = rng.permutation(3000)
    assert concordance_index(risk[perm], time[perm], event[perm]) == pytest.approx(expected, abs=1e-12)
    as_float32 = torch.tensor(risk, dtype=torch.float32)  # the app's risks: exact in float64
    assert concordance_index(as_float32, time, event) == pytest.approx(
        lifelines_ci(time, -as_float32.double().numpy(), event), abs=1e-12)


def test_all_tied_times_and_all_tied_risks():
    # Same time for everyone: only event-vs-censored pairs at that time are comparable.
    time, event, risk = np.full(6, 3.0), np.array([1, 1, 0, 0, 0, 1]), np.array([5, 1, 2, 3, 0, 4.0])
    assert concordance_index(risk, time, event) == pytest.approx(lifelines_ci(time, -risk, event), abs=1e-12)
    with pytest.raises(ValueError, match="no comparable pairs"):
        concordance_index(risk, time, np.ones(6))  # all events at one time: no pair
    rng = np.random.default_rng(0)
    time, event = rng.exponential(size=500), rng.random(500) < 0.5
    assert concordance_index(np.full(500, 0.3), time, event) == 0.5


def test_weighted_sums_equal_the_rows_repeated():
    """ConcordanceCounts.sums with integer row counts = lifelines on the rows repeated that often."""
    rng = np.random.default_rng(5)
    n = 200
    time, risk = rng.integers(0, 15, n).astype(float), np.round(rng.normal(size=n), 1)
    event = rng.random(n) < 0.5
    counts = rng.integers(0, 4, (6, n)).astype(float)
    [(num, den)] = ConcordanceCounts(risk, time, event).sums(torch.tensor(counts))
    for b in range(6):
        rows = np.repeat(np.arange(n), counts[b].astype(int))
        assert float(num[b] / den[b]) == pytest.approx(lifelines_ci(time[rows], -risk[rows], event[rows]),
                                                       abs=1e-12)


def test_continuous_data_and_column_vector_input():
    rng = np.random.default_rng(1)
    time, risk = rng.exponential(size=400), rng.normal(size=400)
    event = rng.random(400) < 0.7
    expected = lifelines_ci(time, -risk, event)
    assert concordance_index(risk[:, None], time, event) == pytest.approx(expected, abs=1e-9)


def test_perfect_and_reversed_ordering():
    time = np.arange(1.0, 21.0)
    event = np.ones(20)
    event[::3] = 0
    assert concordance_index(-time, time, event) == 1.0
    assert concordance_index(time, time, event) == 0.0
    assert concordance_index(np.zeros(20), time, event) == 0.5


def test_tied_times_are_comparable_only_event_vs_censored():
    # Event and censoring at the same time: comparable, the event should have higher risk.
    assert concordance_index([2.0, 1.0], [5.0, 5.0], [1, 0]) == 1.0
    assert concordance_index([1.0, 2.0], [5.0, 5.0], [1, 0]) == 0.0
    # Two events at the same time: not comparable, so only the (t=1, t=5) pairs count.
    assert concordance_index([3.0, 1.0, 2.0], [1.0, 5.0, 5.0], [1, 1, 1]) == 1.0


def test_no_comparable_pairs_raises_where_lifelines_divides_by_zero():
    time, event, risk = [1.0, 2.0, 3.0], [0, 0, 0], [0.1, 0.2, 0.3]
    with pytest.raises(ZeroDivisionError):
        lifelines_ci(time, risk, event)
    with pytest.raises(ValueError, match="no comparable pairs"):
        concordance_index(risk, time, event)


def test_bad_input_refused():
    with pytest.raises(ValueError, match="same length"):
        concordance_index([1.0, 2.0], [1.0, 2.0, 3.0], [1, 1, 1])
    with pytest.raises(ValueError, match="risk contains NaN"):
        concordance_index([float("nan"), 1.0], [1.0, 2.0], [1, 1])
