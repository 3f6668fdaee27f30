"""Test-set survival plots of a finished run (matplotlib, imported lazily, Agg backend).

* ``calibration.png`` - at each horizon, the test rows in quintiles of predicted S(h):
  mean predicted survival against the Kaplan-Meier survival observed in the quintile
  (on the diagonal = calibrated);
* ``risk_groups.png`` - Kaplan-Meier curves of the test rows split into risk tertiles
  (well separated curves = the ranking means something in time, not only in pairs).
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from ..survival.breslow import BreslowBaseline
from ..survival.timedep import kaplan_meier, step_at

log = logging.getLogger(__name__)


def _groups(score: torch.Tensor, k: int) -> list[torch.Tensor]:
    order = torch.argsort(score, stable=True)
    return [g for g in torch.tensor_split(order, k) if g.numel()]


def write_survival_plots(run_dir: Path, risk: torch.Tensor, durations: torch.Tensor, events: torch.Tensor,
                         base: BreslowBaseline, horizons: list[float]) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib unavailable; no survival plots")
        return
    risk, t, e = risk.detach().cpu().double(), durations.cpu().double(), events.cpu().double()
    fig, axes = plt.subplots(1, len(horizons), figsize=(4 * len(horizons), 4), squeeze=False)
    for ax, h in zip(axes[0], horizons):
        pred = base.survival(risk, [h])[:, 0]
        xs, ys = [], []
        for g in _groups(pred, 5):
            km_t, km_s = kaplan_meier(t[g], e[g])
            xs.append(float(pred[g].mean()))
            ys.append(float(step_at(km_t, km_s, torch.tensor([h], dtype=torch.float64))[0]))
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
        ax.plot(xs, ys, "o-")
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="predicted S(t)", ylabel="observed (Kaplan-Meier)",
               title=f"t = {h:g}")
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
