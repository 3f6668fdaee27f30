"""Turn the validated ``data`` group into train/val/test tensors.

Shared by the app and the tools (baseline, LR finder, schedule plot) so every one of
them sees exactly the same split and features. The split is stratified by event and
seeded by ``data.split_seed`` alone (not ``trainer.seed``), so changing the model seed
never changes which patients are in the test set. Features are standardized with
statistics of the training rows only.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import torch

from ..survival.data import DataError, Standardizer, load_csv, make_synthetic_images, resolve_path, split_indices


@dataclass
class Split:
    """One part of a cohort as tensors: inputs, durations and events (1 = event)."""

    x: torch.Tensor
    durations: torch.Tensor
    events: torch.Tensor

    def __len__(self) -> int:
        return int(self.durations.shape[0])

    def to(self, device: torch.device | str) -> "Split":
        return Split(self.x.to(device), self.durations.to(device), self.events.to(device))


@dataclass
class Cohort:
    train: Split
    val: Split
    test: Split
    feature_names: list[str]
    source: str
    test_source: str
    standardizer: Standardizer | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train.x.shape[1:])

    def to(self, device: torch.device | str) -> "Cohort":
        return Cohort(self.train.to(device), self.val.to(device), self.test.to(device), self.feature_names,
                      self.source, self.test_source, self.standardizer, self.extra)

    def describe(self) -> str:
        def part(name: str, s: Split) -> str:
            return f"{name} {len(s)} ({int(s.events.sum())} events)"

        return ", ".join([part("train", self.train), part("val", self.val), part("test", self.test)])


def _split(events: np.ndarray, fractions: tuple[float, float, float], seed: int, label: str):
    try:
        return split_indices(events, fractions, seed)
    except ValueError as exc:  # too few events for a stratified split
        raise DataError(f"{label}: {str(exc).removeprefix('split_indices: ')}") from None


def _tensors(x: np.ndarray, durations: np.ndarray, events: np.ndarray, idx: np.ndarray | None = None) -> Split:
    if idx is not None:
        x, durations, events = x[idx], durations[idx], events[idx]
    as_t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731
    return Split(as_t(x), as_t(durations), as_t(events))


def load_cohort(data: Mapping[str, Any]) -> Cohort:
    """Load and split the cohort described by a validated ``data`` dict (see app.config)."""
    if data["name"] == "synthetic_images":
        x, durations, events = make_synthetic_images(data["n"], data["size"], data["seed"])
        label = f"synthetic_images(n={data['n']}, size={data['size']}, seed={data['seed']})"
        fr = (1.0 - data["val_fraction"] - data["test_fraction"], data["val_fraction"], data["test_fraction"])
        tr, va, te = _split(events, fr, data["split_seed"], label)
        return Cohort(_tensors(x, durations, events, tr), _tensors(x, durations, events, va),
                      _tensors(x, durations, events, te), ["image"], label, label)

    path = str(data["path"])
    table = load_csv(path, data["duration_col"], data["event_col"], data["feature_cols"])
    test_path = data.get("test_path")
    if test_path:
        resolve_path(test_path, "data.test_path")
        test_table = load_csv(test_path, data["duration_col"], data["event_col"], data["feature_cols"],
                              categories=table.categories)
        if test_table.feature_names != table.feature_names:
            missing = sorted(set(table.feature_names) - set(test_table.feature_names))
            extra = sorted(set(test_table.feature_names) - set(table.feature_names))
            raise DataError(f"{test_path}: feature columns differ from {path} (missing: {missing}, extra: {extra})")
        fr = (1.0 - data["val_fraction"], data["val_fraction"], 0.0)
        tr, va, _ = _split(table.events, fr, data["split_seed"], path)
        if test_table.events.sum() == 0:
            raise DataError(f"{test_path}: no events; the C-index needs events")
    else:
        test_table = table
        fr = (1.0 - data["val_fraction"] - data["test_fraction"], data["val_fraction"], data["test_fraction"])
        tr, va, te = _split(table.events, fr, data["split_seed"], path)
    scaler = Standardizer().fit(table.x[tr])
    x, x_test = scaler.transform(table.x), scaler.transform(test_table.x)
    test = (_tensors(x_test, test_table.durations, test_table.events) if test_path
            else _tensors(x, table.durations, table.events, te))
    return Cohort(_tensors(x, table.durations, table.events, tr), _tensors(x, table.durations, table.events, va),
                  test, list(table.feature_names), path, str(test_path or path), scaler)
