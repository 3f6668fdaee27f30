"""Every figure the README quotes for a command, regenerated: each flagship command and each preset on
its data, trained once (in-process, the same composed config and seed as ``scripts/train.py <overrides>``),
printed as one Markdown table with the machine and date.

    python benchmarks/readme_figures.py                 # all rows (~5-10 min on 2 cores)
    python benchmarks/readme_figures.py --only default gbsg2 --out figures.md
    python benchmarks/readme_figures.py --list          # the rows and their overrides

Columns: Harrell's test C-index (the summary line's figure), the validation C-index it was selected on,
the best epoch, and the time-dependent figures the run reports (Uno's C truncated at the last horizon,
the integrated Brier score, the mean cumulative/dynamic AUC; on the test rows), and the training seconds.
Nothing here chooses anything: the test figures are printed, never compared.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import io
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PRETRAINED = "pkg://survopt_hydra/app/pretrained/cnn_synthetic32.pt"
DEMO = ["data=synthetic_images", "data.signal=area", "data.n=400", "data.val_fraction=0.2", "data.test_fraction=0.6",
        "model=cnn"]
FINETUNE = ["+preset=finetune", f"model.pretrained={PRETRAINED}", "model.pretrained_head=true"]

#: name -> (what the README calls it, overrides). The README's command is `python scripts/train.py <overrides>`.
ROWS: dict[str, tuple[str, list[str]]] = {
    "default": ("defaults (SUPPORT, MLP)", []),
    "sgd": ("SGD example", ["optimizer=sgd", "optimizer.lr=0.01", "trainer.max_epochs=50"]),
    "gbsg2": ("GBSG2", ["data=gbsg2"]),
    "cnn": ("a CNN on synthetic scans", ["data=synthetic_images", "model=cnn"]),
    "large_model": ("preset large_model on the default data", ["+preset=large_model"]),
    "finetune_mlp": ("preset finetune on the default data (an MLP: nothing pretrained; warns)", ["+preset=finetune"]),
    "finetune_no_weights": ("preset finetune without model.pretrained (warns)",
                            ["+preset=finetune", "data=synthetic_images", "model=cnn"]),
    "ddp": ("2 processes, DDP (torchrun --standalone --nproc_per_node=2)", ["distributed=ddp"]),
    "zero": ("2 processes, ZeRO (torchrun --standalone --nproc_per_node=2)", ["distributed=zero"]),
    **{f"scratch_s{s}": (f"fine-tuning demo: from scratch, seed {s}", [*DEMO, f"trainer.seed={s}"]) for s in (0, 1, 2)},
    **{f"finetune_s{s}": (f"fine-tuning demo: preset finetune from the pretrained CNN, seed {s}",
                          [*DEMO, *FINETUNE, f"trainer.seed={s}"]) for s in (0, 1, 2)},
}


#: Rows the README runs under torchrun: a real 2-process launch, figures read from the run's metrics.json.
TORCHRUN = {"ddp", "zero"}


def run_torchrun(overrides: list[str]) -> dict[str, Any]:
    import json
    import subprocess

    repo = Path(__file__).resolve().parents[1]
    tic = time.perf_counter()
    with tempfile.TemporaryDirectory() as run_dir:
        subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                        "scripts/train.py", *overrides, f"hydra.run.dir={run_dir}", "trainer.progress_bar=false"],
                       cwd=repo, check=True, capture_output=True, timeout=900)
        metrics = json.loads((Path(run_dir) / "metrics.json").read_text())
    metrics["wall_s"] = time.perf_counter() - tic
    return metrics


def run_row(overrides: list[str]) -> dict[str, Any]:
    from survopt_hydra.app.compose import compose_train
    from survopt_hydra.app.rules import check_config
    from survopt_hydra.app.trainer import train

    cfg = compose_train([*overrides, "trainer.progress_bar=false", "trainer.resume=false"])
    check_config(cfg)  # what the CLI's pre-flight checks (and warns about) before training
    tic = time.perf_counter()
    with tempfile.TemporaryDirectory() as run_dir, contextlib.redirect_stdout(io.StringIO()):
        metrics = train(cfg, Path(run_dir))
    metrics["wall_s"] = time.perf_counter() - tic
    return metrics


def fmt(value: Any, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def machine() -> str:
    import torch
    from run import cpu_model

    return f"{cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}, Python {platform.python_version()}"


def table(results: dict[str, dict[str, Any]]) -> str:
    lines = [f"Machine: {machine()}; date: {_dt.date.today().isoformat()}; one run per row (seed 0 unless named).", "",
             "| row | `python scripts/train.py ...` | test C-index | val C-index | best epoch | Uno's C | IBS | "
             "td-AUC (mean) | train s |", "|---|---|---|---|---|---|---|---|---|"]
    for name, m in results.items():
        what, overrides = ROWS[name]
        cmd = " ".join(overrides) or "(defaults)"
        lines.append(f"| {what} | `{cmd}` | {fmt(m['test_cindex'])} | {fmt(m['val_cindex'])} | {m['best_epoch']} | "
                     f"{fmt(m.get('test_uno_cindex'))} | {fmt(m.get('test_ibs'))} | {fmt(m.get('test_td_auc_mean'))} "
                     f"| {m['train_seconds']:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=list(ROWS), help="these rows only")
    parser.add_argument("--list", action="store_true", help="print the rows and exit")
    parser.add_argument("--out", help="also write the table here")
    args = parser.parse_args(argv)
    if args.list:
        for name, (what, overrides) in ROWS.items():
            print(f"{name:22s} {what}: {' '.join(overrides) or '(defaults)'}")
        return
    logging.basicConfig(level=logging.WARNING, format="%(message)s")  # warnings (e.g. the finetune rule) stay visible
    logging.getLogger("survopt_hydra.app.trainer").setLevel(logging.ERROR)
    results = {}
    for name in args.only or list(ROWS):
        results[name] = m = (run_torchrun if name in TORCHRUN else run_row)(ROWS[name][1])
        print(f"{name}: test {m['test_cindex']:.4f} val {m['val_cindex']:.4f} (epoch {m['best_epoch']}, "
              f"{m['wall_s']:.1f} s)", file=sys.stderr, flush=True)
    report = table(results) + "\n"
    if args.out:
        Path(args.out).write_text(report, encoding="utf-8")
    sys.stdout.write(report)


if __name__ == "__main__":
    main()
