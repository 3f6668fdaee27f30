"""A run's PNG plots, rendered from the CSVs it leaves in its run dir (matplotlib, Agg, imported lazily).

* ``curves.png`` - train/validation loss and validation C-index per epoch (``epochs.csv``);
* ``lr_schedule.png`` - the LR every applied optimizer step used, per param group (``lr_steps.csv``);
* ``calibration.png`` - at each horizon, the test rows in quintiles of predicted S(h): mean
  predicted survival against the Kaplan-Meier survival observed in the quintile (on the
  diagonal = calibrated) (``test_predictions.csv``);
* ``risk_groups.png`` - Kaplan-Meier curves of the test rows split into risk tertiles (well
  separated curves = the ranking means something in time, not only in pairs).

Why from files: importing matplotlib and drawing cost ~3 s of a ~3 s training run, so a run
draws nothing unless asked (``trainer.plots=true``); ``scripts/plot_run.py <run dir>`` draws
the same PNGs afterwards from the same files, at any time, for a finished or running run.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any, Sequence

Row = dict[str, Any]
PREDICTIONS = "test_predictions.csv"
SURV_PREFIX = "surv@"  # test_predictions.csv: one column of predicted S(h | x) per horizon h


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def read_rows(path: Path) -> list[Row]:
    """A CSV the run wrote, numbers parsed (``repr`` floats round-trip exactly; empty cells -> NaN)."""
    def num(text: str) -> Any:
        try:
            return int(text)
        except ValueError:
            try:
                return float(text)
            except ValueError:
                return text if text else math.nan

    with Path(path).open(newline="", encoding="utf-8") as handle:
        return [{k: num(v) for k, v in row.items()} for row in csv.DictReader(handle)]


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


def _groups(score: Any, k: int) -> list[Any]:
    import torch

    order = torch.argsort(score, stable=True)
    return [g for g in torch.tensor_split(order, k) if g.numel()]


def plot_survival(rows: Sequence[Row], run_dir: Path) -> list[Path]:
    """``calibration.png`` and ``risk_groups.png`` from ``test_predictions.csv``'s rows."""
    import torch

    from ..survival.timedep import kaplan_meier, step_at

    plt = _pyplot()
    col = lambda key: torch.tensor([float(r[key]) for r in rows], dtype=torch.float64)  # noqa: E731
    t, e, risk = col("duration"), col("event"), col("risk")
    at = [k for k in (rows[0] if rows else {}) if k.startswith(SURV_PREFIX)]
    fig, axes = plt.subplots(1, max(len(at), 1), figsize=(4 * max(len(at), 1), 4), squeeze=False)
    for ax, key in zip(axes[0], at):
        h, pred = float(key[len(SURV_PREFIX):]), col(key)
        xs, ys = [], []
        for g in _groups(pred, 5):
            km_t, km_s = kaplan_meier(t[g], e[g])
            xs.append(float(pred[g].mean()))
            ys.append(float(step_at(km_t, km_s, torch.tensor([h], dtype=torch.float64))[0]))
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
        ax.plot(xs, ys, "o-")
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="predicted S(t)", ylabel="observed (Kaplan-Meier)", title=f"t = {h:g}")
    fig.suptitle("Calibration on the test set (quintiles of predicted survival)")
    fig.tight_layout()
    fig.savefig(run_dir / "calibration.png", dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, g in zip(("low", "middle", "high"), _groups(risk, 3)):
        km_t, km_s = kaplan_meier(t[g], e[g])
        ax.step(km_t[1:].numpy(), km_s[1:].numpy(), where="post", label=f"{name} risk (n={g.numel()})")
    ax.set(xlabel="time", ylabel="survival (Kaplan-Meier)", ylim=(0, 1.02), title="Test set by predicted risk tertile")
    ax.legend()
    fig.tight_layout()
    fig.savefig(run_dir / "risk_groups.png", dpi=100)
    plt.close(fig)
    return [run_dir / "calibration.png", run_dir / "risk_groups.png"]


def render_run(run_dir: str | Path) -> list[Path]:
    """Every plot whose CSV exists in ``run_dir``; returns the PNGs written (FileNotFoundError: no CSV)."""
    run_dir = Path(run_dir)
    written = []
    if (run_dir / "epochs.csv").is_file():
        plot_curves(read_rows(run_dir / "epochs.csv"), run_dir / "curves.png")
        written.append(run_dir / "curves.png")
    if (run_dir / "lr_steps.csv").is_file():
        plot_lr_steps(read_rows(run_dir / "lr_steps.csv"), run_dir / "lr_schedule.png")
        written.append(run_dir / "lr_schedule.png")
    if (run_dir / PREDICTIONS).is_file():
        written += plot_survival(read_rows(run_dir / PREDICTIONS), run_dir)
    if not written:
        raise FileNotFoundError(f"{run_dir}: no epochs.csv, lr_steps.csv or {PREDICTIONS}; pass a survopt-train "
                                "run directory")
    return written
