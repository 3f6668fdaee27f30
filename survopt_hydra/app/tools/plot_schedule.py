"""Plot the learning rate a config would apply, step by step, without training.

    survopt-schedule scheduler=onecycle trainer.max_epochs=50 --out lr.png   # or: python scripts/plot_schedule.py ...
    survopt-schedule +preset=finetune --steps-per-epoch 20
    # -> outputs/plot_schedule/<date>/<time>/lr_schedule.png (+ lr_schedule.csv); the path is printed

The config is composed exactly as ``scripts/train.py`` composes it (same overrides),
then a real :class:`~survopt_hydra.engine.StepEngine` is built for a dummy model with
a ``backbone`` and a ``head`` (so ``lr_mult`` patterns such as ``backbone.*`` and the
no-decay groups show up as separate lines) and driven through max_epochs x batches
micro-batches with zero loss: the scheduler advances exactly as in training
(per applied step, or per epoch, accumulation included). A plateau scheduler sees a
flat validation metric, i.e. the worst case in which it decays every patience+1 epochs.
By default the batches per epoch come from the configured data set and batch size.

Where the files go: ``--out FILE.png`` or ``--out DIR`` (then ``DIR/lr_schedule.png``); without
``--out`` a fresh ``outputs/plot_schedule/<date>/<time>/`` next to the app's own run dirs, never
the current directory itself. An existing file is never overwritten unless ``--force``.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn


class DummyModel(nn.Module):
    """Two named parts, each with a weight (decayed) and a bias (not decayed)."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Linear(2, 2)
        self.head = nn.Linear(2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x)).squeeze(-1)


def output_path(out: Path | None, tool: str, name: str, force: bool = False) -> Path:
    """Where a tool writes ``name``: ``out`` (a ``.png`` file, or a directory for ``out/name``), else a
    fresh ``outputs/<tool>/<date>/<time>/`` like the app's run dirs. An existing file, a directory or a
    link in its place, a missing or unwritable folder are refused in one line (ConfigError on ``--out``,
    :func:`survopt_hydra.app.outputs.tool_output_path`) before any work: nothing is lost silently."""
    from survopt_hydra.app.outputs import tool_output_path

    return tool_output_path(out, tool, name, force)


def compose(overrides: list[str]) -> Any:
    """The app's config with ``overrides`` (:func:`survopt_hydra.app.compose.compose_train`)."""
    from survopt_hydra.app.compose import compose_train

    return compose_train(overrides)


def batches_per_epoch(cfg: Any) -> int:
    """ceil(training rows / batch size) for the configured data, as the app computes it."""
    from survopt_hydra.app.schemas import check_app_config
    from survopt_hydra.app.data import load_cohort

    settings = check_app_config(cfg)
    return math.ceil(len(load_cohort(settings["data"]).train) / settings["trainer"]["batch_size"])


#: Micro-batches the dummy run may take (epochs x batches): ~0.5 ms each (20,000 in 9.2 s on the
#: shared 2-core EPYC, 2026-12-07), so ~45 s; a longer schedule is a typo (trainer.max_epochs=1e10)
#: or reads the same plotted for fewer batches per epoch.
MAX_MICRO_BATCHES = 100_000


def schedule(cfg: Any, batches: int, epochs: int | None = None) -> list[dict[str, float]]:
    """``[{"step", "epoch", "lr/<group>"...}]`` for every applied optimizer step."""
    from survopt_hydra.api.validation import validate_groups
    from survopt_hydra.engine.step_engine import StepEngine
    from survopt_hydra.errors import ConfigError

    epochs = epochs or int(cfg.trainer.max_epochs)
    if batches < 1 or epochs * batches > MAX_MICRO_BATCHES:
        raise ConfigError("--steps-per-epoch", f"{epochs} epochs x {batches} batches = {epochs * batches} "
                          f"micro-batches; allowed 1..{MAX_MICRO_BATCHES} (lower trainer.max_epochs or "
                          "--steps-per-epoch)")
    k = int(cfg.trainer.accumulate_grad_batches)
    validate_groups(cfg, epochs, math.ceil(batches / k))
    model = DummyModel()
    engine = StepEngine.from_config(cfg, model, batches, epochs, accumulate_grad_batches=k)
    x, rows = torch.zeros(1, 2), []
    for epoch in range(epochs):
        for _ in range(batches):
            with engine.autocast():
                loss = model(x).sum() * 0.0
            step, lrs = engine.global_step, engine.lrs()
            engine.backward(loss.float())
            if engine.step():
                rows.append({"step": step, "epoch": epoch + 1, **{f"lr/{g}": v for g, v in lrs.items()}})
        engine.end_epoch({"val_cindex": 0.5, "val_loss": 1.0, "train_loss": 1.0})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="survopt-schedule", description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, as for scripts/train.py")
    parser.add_argument("--steps-per-epoch", type=int, help="micro-batches per epoch (default: from the data)")
    parser.add_argument("--out", type=Path, help="a .png file or a directory (default: a new "
                        "outputs/plot_schedule/<date>/<time>/)")
    parser.add_argument("--csv", type=Path, help="the per-step LRs as CSV (default: next to the PNG)")
    parser.add_argument("--force", action="store_true", help="overwrite existing files")
    args = parser.parse_args(argv)
    from survopt_hydra.app.outputs import tool_sibling_path
    from survopt_hydra.errors import ConfigError, require_package
    from survopt_hydra.survival.data import DataError

    try:
        require_package("matplotlib", "survopt-schedule")
        if args.steps_per_epoch is not None and not 1 <= args.steps_per_epoch <= MAX_MICRO_BATCHES:
            raise ConfigError("--steps-per-epoch", f"must be in 1..{MAX_MICRO_BATCHES}, got {args.steps_per_epoch}")
        png = output_path(args.out, "plot_schedule", "lr_schedule.png", args.force)
        csv_path = (output_path(args.csv, "plot_schedule", "lr_schedule.csv", args.force) if args.csv
                    else tool_sibling_path(png, ".csv", args.force))
        cfg = compose(args.overrides)
        batches = args.steps_per_epoch if args.steps_per_epoch is not None else batches_per_epoch(cfg)
        rows = schedule(cfg, batches)
        from survopt_hydra.app.outputs import csv_text, draw_tool_output, plot_lr_steps, write_tool_output

        title = f"{cfg.scheduler.name} over {cfg.trainer.max_epochs} epochs x {batches} batches"
        draw_tool_output(lambda path: plot_lr_steps(rows, path, title=title), png)
        write_tool_output(csv_path, csv_text(rows))
    except (ConfigError, DataError) as exc:
        print("error: " + " ".join(str(exc).split()), file=sys.stderr)
        return 2
    for key in [k for k in rows[0] if k.startswith("lr/")] if rows else []:
        values = [r[key] for r in rows]
        print(f"{key[3:]:>20}: first {values[0]:.3g}, max {max(values):.3g}, last {values[-1]:.3g}")
    print(f"{len(rows)} optimizer steps; wrote {png} and {csv_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
