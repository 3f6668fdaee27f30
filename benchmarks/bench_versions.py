"""Whole-process time of two checkouts side by side: the default run, a 6-job sweep, a refused value.

    python benchmarks/bench_versions.py --old ../old-checkout --new . [--repeats 3]

Each checkout runs ``scripts/train.py`` with its own ``.venv``, alternately (old, new, old, new ...)
so load changes hit both alike; prints the medians and the new/old ratios as JSON. Used for the
"public-API pre-flight" figures in docs/benchmarks.md (a worktree of the commit before the change
with a copy of the venv and an editable install of that worktree).
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

LRS = "optimizer.lr=1e-3,2e-3,3e-3,5e-3,1e-2,3e-2"


def _timed(tree: Path, args: list[str], check: bool = True) -> float:
    tic = time.perf_counter()
    proc = subprocess.run([str(tree / ".venv" / "bin" / "python"), "scripts/train.py", *args,
                           "trainer.progress_bar=false"], cwd=tree, capture_output=True, text=True, timeout=900)
    if check and proc.returncode != 0:
        raise SystemExit(f"error: {tree}: {' '.join(args)} failed: {proc.stderr[-500:]}")
    return time.perf_counter() - tic


def run(trees: dict[str, Path], repeats: int) -> dict:
    samples = {name: {"default": [], "sweep6": [], "refuse": []} for name in trees}
    for _ in range(repeats):
        for name, tree in trees.items():
            with tempfile.TemporaryDirectory() as tmp:
                samples[name]["default"].append(_timed(tree, [f"hydra.run.dir={tmp}/run"]))
                samples[name]["sweep6"].append(_timed(tree, ["-m", "data=gbsg2", LRS, f"hydra.sweep.dir={tmp}/sw"]))
                samples[name]["refuse"].append(_timed(tree, [f"hydra.run.dir={tmp}/bad", "optimizer.lr=-1"], False))
    medians = {name: {k: round(statistics.median(v), 2) for k, v in s.items()} for name, s in samples.items()}
    medians["new_over_old"] = {k: round(medians["new"][k] / medians["old"][k], 2) for k in medians["new"]}
    return medians


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old", type=Path, required=True)
    parser.add_argument("--new", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if not 1 <= args.repeats <= 50:
        raise SystemExit("error: --repeats: must be in 1..50")
    print(json.dumps(run({"old": args.old.resolve(), "new": args.new.resolve()}, args.repeats), indent=1))


if __name__ == "__main__":
    main()
