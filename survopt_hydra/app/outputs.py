"""What a run leaves in its Hydra run dir, besides checkpoints.

* ``epochs.csv`` - one row per epoch (epoch, train_loss, val_cindex, val_loss, lr/<group>,
  seconds), rewritten atomically from the in-memory history each epoch, so it always
  matches ``last.pt`` and a resumed run's file equals an uninterrupted run's;
* ``lr_steps.csv`` - the LR of every param group at every applied optimizer step;
* ``metrics.json`` - the final figures; ``tb/`` - TensorBoard scalars (when installed);
* ``curves.png`` and ``lr_schedule.png`` - matplotlib (Agg) plots;
* the summary line, the last line the app prints to stdout.

matplotlib and tensorboard are imported lazily: they cost start-up time and are
optional for the training itself.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import math
from pathlib import Path
from typing import Any, Sequence

from .checkpoint import write_text_atomic

log = logging.getLogger(__name__)

Row = dict[str, Any]


def summary_line(metrics: dict[str, Any]) -> str:
    """``test C-index: 0.xxxx (best epoch N, val C-index 0.xxxx)``."""
    return (f"test C-index: {metrics['test_cindex']:.4f} (best epoch {metrics['best_epoch']}, "
            f"val C-index {metrics['val_cindex']:.4f})")


def _csv_text(rows: Sequence[Row]) -> str:
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (repr(v) if isinstance(v, float) else v) for k, v in row.items()})
    return buf.getvalue()


class RunOutputs:
    """Writes the per-epoch and final files of one run into ``run_dir``."""

    def __init__(self, run_dir: Path, tensorboard: bool = True, purge_epoch: int | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._tb = self._open_tensorboard(purge_epoch) if tensorboard else None

    def _open_tensorboard(self, purge_epoch: int | None) -> Any:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # optional: pip install tensorboard
            log.info("tensorboard not installed; no TensorBoard scalars")
            return None
        # purge_step drops events a killed run logged after its last checkpoint
        return SummaryWriter(str(self.run_dir / "tb"), purge_step=purge_epoch)

    def epoch_end(self, history: Sequence[Row]) -> None:
        write_text_atomic(_csv_text(history), self.run_dir / "epochs.csv", durable=False)
        if self._tb is not None and history:
            row = history[-1]
            for key, value in row.items():
                if key != "epoch" and isinstance(value, (int, float)) and math.isfinite(value):
                    self._tb.add_scalar(key, value, global_step=row["epoch"])

    def write_lr_steps(self, lr_steps: Sequence[Row]) -> None:
        write_text_atomic(_csv_text(lr_steps), self.run_dir / "lr_steps.csv", durable=False)

    def finish(self, metrics: dict[str, Any], history: Sequence[Row], lr_steps: Sequence[Row]) -> None:
        self.write_lr_steps(lr_steps)
        write_text_atomic(json.dumps(metrics, indent=2, sort_keys=True) + "\n", self.run_dir / "metrics.json")
        if self._tb is not None:
            self._tb.add_scalar("test_cindex", metrics["test_cindex"], global_step=metrics["best_epoch"])
        try:
            plot_curves(history, self.run_dir / "curves.png")
            plot_lr_steps(lr_steps, self.run_dir / "lr_schedule.png")
        except ImportError:  # matplotlib is a dependency, but keep training results if it is broken
            log.warning("matplotlib unavailable; no plots")

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None


#: What a run leaves in its run dir (besides Hydra's ``.hydra/`` and ``train.log``): moved aside
#: by :func:`archive_old_results` before a fresh start, so old results never sit beside new ones.
RESULT_FILES = ("last.pt", "last.prev.pt", "best.pt", "metrics.json", "epochs.csv", "lr_steps.csv", "monitors.csv",
                "curves.png", "lr_schedule.png", "tb", "status.json", "predictor.json", "calibration.png",
                "risk_groups.png")
RESULT_PATTERNS = ("last.pt.shards-*", "last.prev.pt.shards-*", ".*.pt.*.tmp")


def archive_old_results(run_dir: Path) -> Path | None:
    """Move an earlier run's results (``trainer.resume=false``, or no usable checkpoint left) into
    ``<run_dir>/replaced-<n>/`` - nothing is deleted - and return that folder (None: nothing to move)."""
    import os

    old = [run_dir / name for name in RESULT_FILES if os.path.lexists(run_dir / name)]
    old += [p for pattern in RESULT_PATTERNS for p in sorted(run_dir.glob(pattern))]
    if not old:
        return None
    n = 1
    while (run_dir / f"replaced-{n}").exists():
        n += 1
    target = run_dir / f"replaced-{n}"
    target.mkdir()
    for path in old:
        os.replace(path, target / path.name)
    log.warning("%s held results of an earlier run (%s); moved them to %s", run_dir,
                ", ".join(p.name for p in old[:4]) + (", ..." if len(old) > 4 else ""), target.name)
    return target


def best_problem(path: Path, weights: dict[str, Any], epoch: int) -> str | None:
    """Why ``best.pt`` at ``path`` does not hold ``weights`` of best epoch ``epoch`` (None: it does)."""
    import torch

    from .checkpoint import CheckpointError, file_kind, load_checkpoint

    if file_kind(path) == "missing":
        return f"{path}: missing"
    try:
        state = load_checkpoint(path)
    except CheckpointError as exc:
        return str(exc)
    model = state.get("model")
    if state.get("epoch") != epoch:
        return f"{path}: holds epoch {state.get('epoch')!r}, but the best epoch is {epoch}"
    if (not isinstance(model, dict) or model.keys() != weights.keys()
            or not all(torch.equal(model[k], weights[k].to(model[k].device)) for k in weights)):
        return f"{path}: its weights are not the best epoch's"
    return None


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(history: Sequence[Row], path: Path) -> None:
    """Train loss, validation loss and validation C-index against the epoch."""
    plt = _pyplot()
    epochs = [r["epoch"] for r in history]
    fig, (ax_loss, ax_c) = plt.subplots(1, 2, figsize=(10, 3.8))
    ax_loss.plot(epochs, [r["train_loss"] for r in history], label="train")
    ax_loss.plot(epochs, [r["val_loss"] for r in history], label="validation")
    ax_loss.set(xlabel="epoch", ylabel="Cox partial likelihood loss", title="Loss")
    ax_loss.legend()
    ax_c.plot(epochs, [r["val_cindex"] for r in history], color="tab:green")
    if history:
        best = max(history, key=lambda r: r["val_cindex"] if math.isfinite(r["val_cindex"]) else -1.0)
        ax_c.axvline(best["epoch"], color="grey", linestyle=":", label=f"best epoch {best['epoch']}")
        ax_c.legend()
    ax_c.set(xlabel="epoch", ylabel="C-index", title="Validation C-index")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_lr_steps(lr_steps: Sequence[Row], path: Path, title: str = "LR applied per optimizer step") -> None:
    """One line per param group: the LR each applied optimizer step used."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.8))
    groups = [k for k in (lr_steps[0] if lr_steps else {}) if k.startswith("lr/")]
    for key in groups:
        ax.plot([r["step"] for r in lr_steps], [r[key] for r in lr_steps], label=key[3:])
    ax.set(xlabel="optimizer step", ylabel="learning rate", title=title)
    if groups:
        ax.legend()
    if lr_steps and all(r[k] > 0 for r in lr_steps for k in groups):
        ax.set_yscale("log")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
