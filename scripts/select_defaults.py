"""Choose the app's default hyper-parameters without looking at any test set.

    python scripts/select_defaults.py                     # the built-in candidate grid
    python scripts/select_defaults.py --candidate "optimizer.lr=3e-3" --candidate "model.hidden=[32]"
    python scripts/select_defaults.py --splits 1 2 3 4 5 --seeds 0 1 --out selection.md
    python scripts/select_defaults.py --data csv data.path=my.csv   # another cohort (default: gbsg2)

Each candidate (a list of Hydra overrides on top of ``conf/train.yaml`` and ``--data``,
default ``gbsg2``: the defaults were chosen there) trains on every
``data.split_seed`` x ``trainer.seed`` pair and is scored by its mean **validation**
C-index. The default split (``data.split_seed=0``) is left out of the selection by
default, so the README's figure for the main command is a genuine hold-out. Test
C-indices are printed for information only and never used to rank. Runs are in-process
(one interpreter, no Hydra run dirs kept), so a grid of 30 candidates x 10 runs takes a
few minutes on two cores.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import logging
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

GRID: list[str] = [
    "",  # the current defaults
    "optimizer.lr=3e-3",
    "optimizer.lr=3e-2",
    "optimizer.weight_decay=0.1",
    "optimizer.weight_decay=1e-3",
    "model.hidden=[32]",
    "model.hidden=[32,32]",
    "model.hidden=[8]",
    "model.dropout=0.3",
    "model.dropout=0.0",
    "model.norm=none",
    "model.norm=layer",
    "model.activation=relu",
    "model.activation=selu",
    "trainer.ties=efron",
    "trainer.monitor=val_loss",
    "trainer.early_stopping_patience=10",
    "trainer.early_stopping_patience=40",
    "trainer.max_epochs=200",
    "trainer.batch_size=128",
    "trainer.batch_size=64",
    "scheduler=warmup_cosine",
    "scheduler=none",
    "optimizer=adam",
    "optimizer=sgd optimizer.lr=0.1",
    "model=linear",
]


def run_once(overrides: list[str]) -> dict[str, Any]:
    """Train one config in-process in a throw-away run dir; returns its metrics."""
    from survopt_hydra.app.compose import compose_train
    from survopt_hydra.app.trainer import train

    cfg = compose_train([*overrides, "trainer.progress_bar=false", "trainer.resume=false"])
    with tempfile.TemporaryDirectory() as run_dir, contextlib.redirect_stdout(io.StringIO()):
        return train(cfg, Path(run_dir))


def score(candidate: str, splits: list[int], seeds: list[int], data: list[str] = ("data=gbsg2",)) -> dict[str, Any]:
    base = [*data, *candidate.split()]
    vals, tests = [], []
    for split in splits:
        for seed in seeds:
            m = run_once([*base, f"data.split_seed={split}", f"trainer.seed={seed}"])
            vals.append(m["val_cindex"])
            tests.append(m["test_cindex"])
    return {"candidate": candidate or "(current defaults)", "val_mean": statistics.fmean(vals),
            "val_sd": statistics.stdev(vals) if len(vals) > 1 else 0.0, "test_mean": statistics.fmean(tests),
            "runs": len(vals)}


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| candidate | mean val C-index (ranked) | sd | mean test C-index (not used) | runs |",
             "|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: -r["val_mean"]):
        lines.append(f"| `{r['candidate']}` | {r['val_mean']:.4f} | {r['val_sd']:.4f} | {r['test_mean']:.4f} "
                     f"| {r['runs']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidate", action="append", help="space-separated overrides; repeatable")
    parser.add_argument("--splits", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--out", help="also write the Markdown table here")
    parser.add_argument("--data", nargs="+", default=["gbsg2"], metavar="OPTION [OVERRIDE ...]",
                        help="data option and its overrides; needs an internal split (no data.test_path)")
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)  # the app's per-epoch log lines; errors still surface
    from survopt_hydra.app.outputs import tool_file_path, write_tool_output
    from survopt_hydra.errors import ConfigError
    from survopt_hydra.survival.data import DataError

    try:
        if not (1 <= len(args.splits) <= 100 and 1 <= len(args.seeds) <= 100
                and all(0 <= v < 2**32 for v in [*args.splits, *args.seeds])):
            raise ConfigError("--splits/--seeds", "1..100 values each, in [0, 2**32)")
        if args.out:
            tool_file_path(Path(args.out), "--out")
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    rows = []
    for candidate in args.candidate or GRID:
        try:
            rows.append(score(candidate, args.splits, args.seeds, [f"data={args.data[0]}", *args.data[1:]]))
        except (ConfigError, DataError) as exc:
            print(f"error: candidate {candidate!r}: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
        r = rows[-1]
        print(f"{r['val_mean']:.4f} +- {r['val_sd']:.4f}  (test {r['test_mean']:.4f})  {r['candidate']}",
              file=sys.stderr, flush=True)
    report = table(rows)
    print(report)
    if args.out:
        try:
            write_tool_output(Path(args.out), report + "\n")
        except ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None


if __name__ == "__main__":
    main()
