"""C-index checked against lifelines, including its tie conventions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from survopt_hydra.survival.metrics import concordance_index

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


@pytest.mark.parametrize("chunk_rows", [1, 7, 64, 100_000])
def test_chunking_does_not_change_the_result(chunk_rows):
    # Few distinct times and rounded risks: chunk boundaries fall inside tied groups.
    rng = np.random.default_rng(42)
    time, risk = rng.integers(0, 4, 500).astype(float), np.round(rng.normal(size=500), 1)
    event = rng.random(500) < 0.7
    expected = lifelines_ci(time, -risk, event)
    assert concordance_index(risk, time, event, chunk_rows=chunk_rows) == pytest.approx(expected, abs=1e-9)


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
