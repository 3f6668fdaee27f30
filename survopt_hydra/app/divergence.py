"""When a run has gone wrong beyond saving: its three divergence rules, in one place.

* an epoch's training loss over ``trainer.max_loss_ratio`` times the first finite epoch's (a loss
  that exploded may still score a C-index, but no sweep may take it for a result);
* ``trainer.max_nonfinite_steps`` optimizer steps in a row with a non-finite loss or gradient (the
  streak is counted by :class:`~survopt_hydra.engine.StepEngine`, whose state resumes with it);
* an epoch in which no batch held a comparable pair (an event and a row still at risk): nothing
  was learnt.

Each ends the run with :class:`TrainingError`: one line that says what to change and which
checkpoint still holds the last good state. ``survopt-train`` exits 1 with it, a sweep job is
marked failed, ``survopt-tune`` fails the trial and goes on.
"""
from __future__ import annotations

import logging
import math
from typing import Any, Sequence

log = logging.getLogger(__name__)


class TrainingError(RuntimeError):
    """Training cannot go on (diverged, nothing to select); the message is one line."""


def _kept(saved_epoch: int) -> str:
    return f"last.pt keeps the last good state (epoch {saved_epoch}); " if saved_epoch else ""


def check_loss(epoch: int, loss: float, history: Sequence[dict[str, Any]], ratio: float | None,
               saved_epoch: int) -> None:
    """Raise if epoch ``epoch`` (0-based) trained to a loss over ``ratio`` x the first finite epoch's.
    A non-finite loss is left to the non-finite streak."""
    if ratio is None or not math.isfinite(loss):
        return
    first = next((r["train_loss"] for r in history if math.isfinite(r["train_loss"])), loss)
    if abs(loss) > ratio * max(abs(first), 1.0):
        raise TrainingError(f"training diverged: epoch {epoch + 1}'s training loss {loss:.4g} is over "
                            f"{ratio:g} x the first epoch's ({first:.4g}); " + _kept(saved_epoch)
                            + "lower optimizer.lr, use clipping=norm, or raise trainer.max_loss_ratio")


def check_nonfinite(engine: Any, epoch: int, batch: int, limit: int, saved_epoch: int) -> None:
    """The accumulation window just ended had a non-finite loss or gradient (its step skipped): warn,
    and raise once ``limit`` such windows came in a row (``engine.diverged``)."""
    log.warning("epoch %d, batch %d: non-finite loss or gradient, optimizer step skipped (%d in a row, limit "
                "trainer.max_nonfinite_steps=%d)", epoch + 1, batch, engine.consecutive_nonfinite, limit)
    if engine.diverged:
        raise TrainingError(f"training diverged: {limit} optimizer steps in a row had a non-finite loss or "
                            "gradient; " + _kept(saved_epoch)
                            + "lower optimizer.lr, use clipping=norm, or raise trainer.max_nonfinite_steps and rerun")


def check_learnt(epoch: int, empty_everywhere: bool, n_batches: int) -> None:
    """Raise when no training batch of the epoch held a comparable pair (``empty_everywhere``: agreed by every
    rank, so all stop together)."""
    if empty_everywhere:
        raise TrainingError(f"epoch {epoch + 1}: none of the {n_batches} training batches held a comparable "
                            "pair (an event and a row still at risk): nothing was learnt; raise "
                            "trainer.batch_size or check data.event_col")
