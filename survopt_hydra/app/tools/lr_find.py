"""Learning-rate range test (Smith 2017, "Cyclical Learning Rates", section 3.3).

    survopt-lr-find [overrides ...] [--min-lr 1e-6] [--max-lr 1] [--steps 200] [--out DIR|FILE.png]
    python scripts/lr_find.py ...      # the same, from a checkout

Trains the configured model on the configured data (default: SUPPORT) for a few hundred
optimizer steps while the LR grows exponentially from ``--min-lr`` to ``--max-lr``
(param-group ``lr_mult`` ratios kept), records the Cox loss, smooths it with a
bias-corrected exponential moving average, and stops once the smoothed loss exceeds
``--diverge`` times its minimum. The suggested LR is where the smoothed loss falls
fastest (steepest negative slope against log LR), the usual pick; somewhat below the
LR of the minimum loss. The configured clipping applies, as in training; the
scheduler does not (the test *is* the schedule). Writes a plot and the curve as JSON: into
``--out`` (a ``.png`` file, or a directory), by default a fresh ``outputs/lr_find/<date>/<time>/``
next to the app's run dirs (never the current directory itself); the paths are printed and an
existing file is not overwritten unless ``--force``.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .plot_schedule import compose, output_path  # the same composition as the app


def lr_range_test(cfg: Any, min_lr: float = 1e-6, max_lr: float = 1.0, steps: int = 200,
                  beta: float = 0.9, diverge: float = 4.0) -> dict[str, Any]:
    """Run the test; returns ``lrs``, ``losses``, ``smoothed`` (lists) and ``suggested_lr``.

    ``beta`` of the moving average: fastai's 0.98 lags ~50 steps, i.e. 1.5 decades of LR
    over 200 steps, which moves the steepest point far to the right; 0.9 lags ~10 steps.
    """
    from hydra.utils import instantiate

    from survopt_hydra.app.checkpoint import seed_everything
    from survopt_hydra.app.schemas import check_app_config
    from survopt_hydra.app.data import load_cohort
    from survopt_hydra.app.image_data import ImageSplit
    from survopt_hydra.app.trainer import build_model, set_threads
    from survopt_hydra.survival import cox_ph_loss

    check_arguments(min_lr, max_lr, steps, beta, diverge)
    settings = check_app_config(cfg)
    t = settings["trainer"]
    cohort = load_cohort(settings["data"])
    set_threads(t, settings["data"], torch.device("cpu"))
    seed_everything(t["seed"])
    model = build_model(settings["model"], cohort.input_shape, cohort.covariates)
    optimizer = instantiate(cfg.optimizer, params=model)
    clipper = instantiate(cfg.clipping) if cfg.get("clipping") else None
    mults = [g.get("lr_mult", 1.0) for g in optimizer.param_groups]
    data, n = cohort.train, len(cohort.train)
    n_batches = math.ceil(n / t["batch_size"])
    batches: list[torch.Tensor] = []
    lrs, losses, smoothed = [], [], []
    avg, best = 0.0, math.inf
    model.train()
    for i in range(steps):
        lr = min_lr * (max_lr / min_lr) ** (i / (steps - 1))
        for group, mult in zip(optimizer.param_groups, mults):
            group["lr"] = lr * mult
        if not batches:
            batches = list(torch.tensor_split(torch.randperm(n), n_batches))
        idx = batches.pop()
        if isinstance(data, ImageSplit):  # data=images: this batch's files, augmented as in training
            inputs, durations, events = next(data.train_batches([idx], epoch_seed=i))
        else:
            inputs, durations, events = (data.x[idx],), data.durations[idx], data.events[idx]
        loss = cox_ph_loss(model(*inputs), durations, events, t["ties"])
        value = float(loss.detach())
        if not math.isfinite(value):
            break
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clipper is not None:
            clipper.clip_gradients(model.named_parameters())
        optimizer.step()
        avg = beta * avg + (1 - beta) * value
        smooth = avg / (1 - beta ** (i + 1))
        lrs.append(lr), losses.append(value), smoothed.append(smooth)
        best = min(best, smooth)
        if smooth > diverge * best and i > 10:
            break
    return {"lrs": lrs, "losses": losses, "smoothed": smoothed, "suggested_lr": suggest(lrs, smoothed)}


MAX_STEPS = 100_000  # optimizer steps of the test: a few hundred are the method; more is a typo


def check_arguments(min_lr: float, max_lr: float, steps: int, beta: float, diverge: float) -> None:
    """One-line ConfigError naming the flag for a range the test cannot run with."""
    from survopt_hydra.errors import ConfigError

    finite = all(math.isfinite(v) for v in (min_lr, max_lr))
    if not finite or not 0 < min_lr < max_lr:
        raise ConfigError("--min-lr/--max-lr", f"need finite 0 < min-lr < max-lr, got {min_lr:g} and {max_lr:g}")
    if not 10 <= steps <= MAX_STEPS:
        raise ConfigError("--steps", f"must be in 10..{MAX_STEPS}, got {steps}")
    if not 0 <= beta < 1:  # 1 - beta**(i+1) divides the bias correction
        raise ConfigError("--beta", f"the smoothing factor must be in [0, 1), got {beta:g}")
    if not (math.isfinite(diverge) and diverge > 1):
        raise ConfigError("--diverge", f"stop when the smoothed loss exceeds this multiple of its minimum; must be a "
                          f"finite number > 1, got {diverge:g}")


def suggest(lrs: list[float], smoothed: list[float], skip_start: int = 10, skip_end: int = 5) -> float:
    """LR at the steepest descent of the smoothed loss against log10(LR)."""
    if len(lrs) < skip_start + skip_end + 3:
        skip_start, skip_end = 0, 0
    x = np.log10(np.asarray(lrs))[skip_start : len(lrs) - skip_end]
    y = np.asarray(smoothed)[skip_start : len(lrs) - skip_end]
    if len(x) < 3:
        return float(lrs[int(np.argmin(smoothed))])
    return float(10 ** x[int(np.argmin(np.gradient(y, x)))])


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.8))
    ax.plot(result["lrs"], result["losses"], alpha=0.3, label="loss")
    ax.plot(result["lrs"], result["smoothed"], label="smoothed loss")
    ax.axvline(result["suggested_lr"], color="tab:red", linestyle=":", label=f"suggested {result['suggested_lr']:.2g}")
    ax.set_xscale("log")
    low = min(min(result["smoothed"]), min(result["losses"]))
    high = max(result["smoothed"][0], result["losses"][0])
    ax.set_ylim(low - 0.1 * (high - low) - 1e-3, high + 0.5 * (high - low) + 1e-3)
    ax.set(xlabel="learning rate", ylabel="Cox loss", title="LR range test")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="survopt-lr-find", description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, as for scripts/train.py")
    parser.add_argument("--min-lr", type=float, default=1e-6)
    parser.add_argument("--max-lr", type=float, default=1.0)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--diverge", type=float, default=4.0, help="stop when smoothed loss > this x its minimum")
    parser.add_argument("--beta", type=float, default=0.9, help="smoothing of the loss (EMA factor)")
    parser.add_argument("--out", type=Path, help="a .png file or a directory (default: a new "
                        "outputs/lr_find/<date>/<time>/)")
    parser.add_argument("--force", action="store_true", help="overwrite existing files")
    args = parser.parse_args(argv)
    from survopt_hydra.errors import ConfigError, require_package
    from survopt_hydra.survival.data import DataError

    from survopt_hydra.app.outputs import draw_tool_output, tool_sibling_path, write_tool_output

    try:
        require_package("matplotlib", "survopt-lr-find")  # before the test runs: its plot is the result
        check_arguments(args.min_lr, args.max_lr, args.steps, args.beta, args.diverge)
        png = output_path(args.out, "lr_find", "lr_find.png", args.force)
        curve = tool_sibling_path(png, ".json", args.force)
        result = lr_range_test(compose(args.overrides), args.min_lr, args.max_lr, args.steps, args.beta, args.diverge)
        if not result["lrs"]:
            raise ConfigError("--min-lr", f"the loss was not finite at the first step (LR {args.min_lr:g}); lower it")
        draw_tool_output(lambda path: plot(result, path), png)
        write_tool_output(curve, json.dumps(result, indent=1))
    except (ConfigError, DataError) as exc:
        print("error: " + " ".join(str(exc).split()), file=sys.stderr)
        return 2
    print(f"{len(result['lrs'])} steps from {result['lrs'][0]:.2g} to {result['lrs'][-1]:.2g}; wrote {png} and {curve}")
    print(f"suggested LR: {result['suggested_lr']:.3g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
