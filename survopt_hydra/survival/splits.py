"""Seeded, event-stratified splits of a cohort's rows: train / validation / test, and K folds."""
from __future__ import annotations

from typing import Sequence

import numpy as np


def split_indices(
    events: np.ndarray, fractions: Sequence[float] = (0.7, 0.15, 0.15), seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeded train/val/test split, stratified by event status.

    Stratifying keeps the event rate equal across splits, and every split with
    a non-zero fraction gets at least one event, because the Cox loss and the
    C-index are undefined without events. A fraction may be 0 (e.g. test when
    a separate test file is given); that split is then empty.
    """
    events = np.asarray(events).reshape(-1)
    fractions = np.asarray(fractions, dtype=np.float64)
    if fractions.shape != (3,) or (fractions < 0).any() or abs(fractions.sum() - 1.0) > 1e-6:
        raise ValueError(
            f"split_indices: fractions must be 3 non-negative numbers summing to 1, got {fractions.tolist()}"
        )
    used = fractions > 0
    n_events, n_used = int((events > 0).sum()), int(used.sum())
    if n_events < n_used:
        raise ValueError(f"split_indices: {n_events} event(s) cannot give each of {n_used} splits an event")
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[], [], []]
    for stratum, need_one in ((events > 0, True), (events <= 0, False)):
        idx = rng.permutation(np.flatnonzero(stratum))
        exact = fractions * len(idx)
        counts = np.floor(exact).astype(int)
        for k in np.argsort(-(exact - counts), kind="stable")[: len(idx) - counts.sum()]:
            counts[k] += 1  # largest remainder rounding
        while need_one and (counts[used] == 0).any():
            counts[np.argmax(counts)] -= 1
            counts[np.flatnonzero(used & (counts == 0))[0]] += 1
        for k, chunk in enumerate(np.split(idx, np.cumsum(counts)[:-1])):
            parts[k].append(chunk)
    train, val, test = (np.sort(np.concatenate(p)).astype(np.int64) for p in parts)
    return train, val, test


def fold_indices(events: np.ndarray, folds: int, seed: int = 0) -> list[np.ndarray]:
    """Seeded K-fold partition of the rows, stratified by event status: ``folds`` sorted index arrays.

    Why: a model-selection figure averaged over K folds validates on every row once, where one
    random validation split of a small cohort ranks configs by noise. Events and censored rows are
    each shuffled and dealt round-robin (events first), so fold sizes differ by at most one and
    every fold holds ``events // folds`` or one more events; fewer events than folds is refused,
    because a fold without an event cannot be scored.
    """
    events = np.asarray(events).reshape(-1)
    if folds < 2:
        raise ValueError(f"fold_indices: folds must be >= 2, got {folds}")
    n_events = int((events > 0).sum())
    if n_events < folds:
        raise ValueError(f"fold_indices: {n_events} event(s) cannot give each of {folds} folds an event")
    rng = np.random.default_rng(seed)
    order = np.concatenate([rng.permutation(np.flatnonzero(events > 0)), rng.permutation(np.flatnonzero(events <= 0))])
    return [np.sort(order[k::folds]).astype(np.int64) for k in range(folds)]
