"""The default app end to end: ``python scripts/train.py hydra.run.dir=<tmp>``.

Each run is a fresh subprocess in a fresh run dir (so nothing resumes).  From the run
dir it reads:

* ``metrics.json``: ``train_seconds`` (the app's own timer over its epochs), the
  selected model's ``val_cindex`` and ``test_cindex``;
* ``epochs.csv``: per epoch ``val_cindex`` and ``seconds`` (train + validation time of
  the epoch, timed by the app).

``time_to_cindex_s`` is the cumulative ``seconds`` up to the first epoch whose
validation C-index is within 0.005 of the final one (the ``val_cindex`` of the model
the app returns, i.e. its best epoch after early stopping).  ``app_wall_s`` is the whole
subprocess (interpreter start, imports, data, training, plots, checkpoints).
One warm-up run, then the median of ``repeats`` runs.

Usage: ``python benchmarks/bench_app.py``; ``run(quick)`` returns the dict.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
APP = REPO / "scripts" / "train.py"
TOLERANCE = 0.005


def available() -> str | None:
    """None when the app can run, else why not."""
    if not APP.is_file():
        return "scripts/train.py not found"
    if not (REPO / "survopt_hydra" / "app" / "conf" / "train.yaml").is_file():
        return "survopt_hydra/app/train_conf/train.yaml not found"
    return None


def time_to_cindex(rows: list[dict], final: float, tol: float = TOLERANCE) -> tuple[float, int]:
    """(cumulative seconds, epoch) at the first epoch with |val_cindex - final| <= tol."""
    elapsed = 0.0
    for row in rows:
        elapsed += float(row["seconds"])
        c = float(row["val_cindex"])
        if math.isfinite(c) and abs(c - final) <= tol:
            return elapsed, int(row["epoch"])
    return math.nan, -1


def run_once(overrides: list[str] | None = None, timeout: float = 600) -> dict:
    with tempfile.TemporaryDirectory(prefix="survopt-bench-app-") as tmp:
        run_dir = Path(tmp) / "run"
        cmd = [sys.executable, str(APP), f"hydra.run.dir={run_dir}", "trainer.progress_bar=false",
               *(overrides or [])]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise RuntimeError(f"app exited with {proc.returncode}: {' | '.join(tail)}")
        metrics = json.loads((run_dir / "metrics.json").read_text())
        with (run_dir / "epochs.csv").open(newline="") as fh:
            rows = list(csv.DictReader(fh))
    final = float(metrics["val_cindex"])
    t_c, epoch_c = time_to_cindex(rows, final)
    return {
        "wall_s": wall,
        "train_seconds": float(metrics["train_seconds"]),
        "epochs_seconds_sum": sum(float(r["seconds"]) for r in rows),
        "time_to_cindex_s": t_c,
        "epoch_to_cindex": epoch_c,
        "epochs_run": int(metrics.get("epochs_run", len(rows))),
        "best_epoch": int(metrics.get("best_epoch", -1)),
        "val_cindex": final,
        "last_val_cindex": float(rows[-1]["val_cindex"]) if rows else math.nan,
        "test_cindex": float(metrics.get("test_cindex", math.nan)),
    }


def run(quick: bool = False, repeats: int = 3) -> dict:
    reason = available()
    if reason:
        return {"benchmark": "app", "skipped": f"skipped: app not available ({reason})"}
    repeats = 1 if quick else repeats
    if not quick:
        run_once()  # warm-up: file-system caches, .pyc files
    runs = [run_once() for _ in range(repeats)]

    def med(key: str) -> float:
        return statistics.median(r[key] for r in runs)

    return {
        "benchmark": "app",
        "command": "python scripts/train.py hydra.run.dir=<tmp> trainer.progress_bar=false",
        "repeats": repeats,
        "app_train_seconds": round(med("train_seconds"), 4),
        "time_to_cindex_s": round(med("time_to_cindex_s"), 4),
        "app_wall_s": round(med("wall_s"), 3),
        "epochs_seconds_sum": round(med("epochs_seconds_sum"), 4),
        "epoch_to_cindex": runs[0]["epoch_to_cindex"],
        "epochs_run": runs[0]["epochs_run"],
        "best_epoch": runs[0]["best_epoch"],
        "val_cindex": round(runs[0]["val_cindex"], 4),
        "last_val_cindex": round(runs[0]["last_val_cindex"], 4),
        "test_cindex": round(runs[0]["test_cindex"], 4),
        "cindex_tolerance": TOLERANCE,
        "deterministic": len({(r["best_epoch"], r["val_cindex"]) for r in runs}) == 1,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    res = run(parser.parse_args().quick)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
