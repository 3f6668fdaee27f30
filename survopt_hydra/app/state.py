"""Early-stopping and history state of a run, kept apart so it can be checkpointed whole.

Everything a resumed run needs to continue *exactly* - the best score so far, the
epochs without improvement, the best weights, the per-epoch and per-step logs - lives
in :class:`Progress` and goes into ``last.pt``.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import torch
from torch import nn

# Trainer keys that change how a run is operated, not what it computes: a rerun that
# differs only in these still resumes (e.g. without the stop_after_epochs of the first try).
OPERATIONAL_KEYS = ("trainer.stop_after_epochs", "trainer.progress_bar", "trainer.debug", "trainer.resume")


class Progress:
    """Epoch counter, early stopping on the monitored metric, best weights and logs."""

    def __init__(self) -> None:
        self.epoch = 0  # epochs completed
        self.best_score = -math.inf  # the monitored metric, oriented so that higher is better
        self.best_epoch = 0
        self.best_val_cindex = math.nan
        self.bad_epochs = 0
        self.nonfinite_streak = 0  # optimizer windows in a row with a non-finite loss/gradient
        self.done = False
        self.stopped_early = False
        self.improved_last = False
        self.train_seconds = 0.0
        self.history: list[dict[str, Any]] = []
        self.lr_steps: list[dict[str, Any]] = []
        self.best_weights: dict[str, torch.Tensor] | None = None

    def record(self, row: dict[str, Any], monitor: str, model: nn.Module, patience: int | None, seconds: float) -> None:
        """Account for a finished epoch (``row`` as written to epochs.csv)."""
        self.epoch = int(row["epoch"])
        self.history.append(row)
        self.train_seconds += seconds
        score = row["val_cindex"] if monitor == "val_cindex" else -row["val_loss"]
        self.improved_last = math.isfinite(score) and score > self.best_score
        if self.improved_last:
            self.best_score, self.best_epoch, self.best_val_cindex = score, self.epoch, row["val_cindex"]
            self.best_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
            self.bad_epochs = 0
        else:
            self.bad_epochs += 1
            if patience is not None and self.bad_epochs > patience:
                self.done = self.stopped_early = True

    _FIELDS = ("epoch", "best_score", "best_epoch", "best_val_cindex", "bad_epochs", "nonfinite_streak", "done",
               "stopped_early", "train_seconds", "history", "lr_steps", "best_weights")

    def state_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self._FIELDS}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for name in self._FIELDS:
            setattr(self, name, state[name])


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, Mapping):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out or {prefix[:-1]: {}}
    return {prefix[:-1]: node}


def config_difference(saved: Mapping[str, Any], current: Mapping[str, Any]) -> str:
    """``"key: old -> new"`` for the first computation-relevant difference, else ``""``."""
    a, b = _flatten(saved), _flatten(current)
    for key in sorted(set(a) | set(b)):
        if key in OPERATIONAL_KEYS:
            continue
        if a.get(key, "<unset>") != b.get(key, "<unset>"):
            return f"{key}: {a.get(key, '<unset>')!r} -> {b.get(key, '<unset>')!r}"
    return ""
