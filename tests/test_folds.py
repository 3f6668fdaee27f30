"""K-fold validation (``data.folds``/``data.fold``): a partition of the non-test rows, test rows fixed."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from survopt_hydra.survival import fold_indices


def test_fold_indices_partition_the_rows_stratified_by_event() -> None:
    events = (np.random.default_rng(1).random(503) < 0.37).astype(np.float32)
    folds = fold_indices(events, 5, seed=7)
    assert sorted(np.concatenate(folds).tolist()) == list(range(503))  # every row exactly once
    sizes = [len(f) for f in folds]
    assert max(sizes) - min(sizes) <= 1 and sum(sizes) == 503
    n_events = int(events.sum())
    assert sorted({int(events[f].sum()) for f in folds}) in ([n_events // 5], [n_events // 5, n_events // 5 + 1])
    assert all(np.all(np.diff(f) > 0) for f in folds)  # sorted, no duplicates
    again, other = fold_indices(events, 5, seed=7), fold_indices(events, 5, seed=8)
    assert all(np.array_equal(a, b) for a, b in zip(folds, again))
    assert not all(np.array_equal(a, b) for a, b in zip(folds, other))


def test_fold_indices_refuse_what_cannot_be_scored() -> None:
    events = np.array([1, 0, 1, 0, 0, 0])
    with pytest.raises(ValueError, match="2 event\\(s\\) cannot give each of 3 folds an event"):
        fold_indices(events, 3)
    with pytest.raises(ValueError, match="folds must be >= 2, got 1"):
        fold_indices(events, 1)
    assert [int(events[f].sum()) for f in fold_indices(events, 2)] == [1, 1]


def _data(*overrides: str) -> dict:
    from survopt_hydra.app.compose import compose_train
    from survopt_hydra.app.schemas import check_app_config

    return check_app_config(compose_train(list(overrides)))["data"]


@pytest.mark.parametrize("base,test_in_file", [([], False), (["data=gbsg2"], True)])
def test_folds_validate_each_non_test_row_once_and_never_move_the_test_rows(base, test_in_file) -> None:
    """Against the split without folds (same data.split_seed): the same test rows; the K validation
    folds partition that split's train + validation rows; each fold trains on the other K-1."""
    from survopt_hydra.app.data import _parts
    from survopt_hydra.app.data import load_table

    plain = _data(*base)
    events = load_table(plain, str(plain["path"]), "data.path").events
    tr0, va0, te0 = _parts(events, plain, "x", test_in_file)
    non_test = np.sort(np.concatenate([tr0, va0]))
    vals = []
    for k in range(4):
        tr, va, te = _parts(events, _data(*base, "data.folds=4", f"data.fold={k}"), "x", test_in_file)
        assert np.array_equal(te, te0) and len(te) == (len(te0) if test_in_file else 0)
        assert np.array_equal(np.sort(np.concatenate([tr, va])), non_test) and not np.intersect1d(tr, va).size
        vals.append(va)
    assert np.array_equal(np.sort(np.concatenate(vals)), non_test)  # disjoint folds covering every non-test row
    assert abs(len(vals[0]) - len(non_test) / 4) <= 1
    other_seed = _parts(events, _data(*base, "data.folds=4", "data.split_seed=1"), "x", test_in_file)[1]
    assert not np.array_equal(other_seed, vals[0])


def test_a_fold_cohort_is_standardized_on_its_own_training_rows() -> None:
    from survopt_hydra.app.data import load_cohort

    a, b = (load_cohort(_data("data=gbsg2", "data.folds=3", f"data.fold={k}")) for k in (0, 2))
    for cohort in (a, b):
        assert torch.allclose(cohort.train.x.double().mean(0), torch.zeros(cohort.train.x.shape[1],
                                                                            dtype=torch.float64), atol=1e-5)
    assert torch.equal(a.test.durations, b.test.durations) and torch.equal(a.test.events, b.test.events)
    assert not torch.equal(a.val.durations, b.val.durations)
    assert len(a.train) + len(a.val) == len(b.train) + len(b.val)
