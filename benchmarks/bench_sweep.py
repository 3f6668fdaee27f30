"""Whole-process times of the app: the default run, and a 6-job LR sweep sequential vs parallel.

* ``default_run_wall_s``: ``python scripts/train.py hydra.run.dir=<tmp>`` (fresh dir), whole
  process, median of ``repeats``; ``default_run_train_s`` its ``train_seconds``.
* ``torch_floor_s``: what any torch training script pays before its first epoch, measured the
  same way: a fresh ``python -c`` that imports torch, builds an AdamW and takes one step. Then
  ``default_run_overhead_s`` = wall - floor - train: what the app adds (issue 16: <= ~0.5 s).
  ``torch_import_s``: a fresh ``python -c "import torch"``; the rest of the floor is torch
  building its first optimizer: ``Optimizer.add_param_group`` is wrapped by
  ``torch._disable_dynamo``, which imports ``torch._dynamo`` (sympy, FSDP, inductor config) on
  its first call. ``default_run_beyond_import_s`` = wall - import - train is the issue's
  "beyond importing torch and training", that import included.
* ``sweep6_sequential_wall_s`` / ``sweep6_parallel_wall_s``: ``python scripts/train.py -m
  data=gbsg2 optimizer.lr=<6 values>`` with Hydra's basic (in-process, sequential) launcher and
  with ``hydra/launcher=survopt_parallel`` (joblib, one process per core), whole process, median
  of ``repeats``, the two interleaved; ``parallel_sweep_speedup`` = sequential / parallel.
* ``sweep_job_overhead_s``: in the sequential sweep, each job's share of the wall clock beyond its
  training: (end of job i - end of job i-1) - train_seconds of job i, for jobs 2..6 (so the one-off
  process start-up is excluded and the next job's config composition is included); median.
  A Hydra callback (``hydra_callbacks/job_timing.py``) stamps the job ends.
  ``sweep_job_overhead_parallel_s``: the same from the parallel sweep's per-job start/end stamps
  (job end - job start - train_seconds: the worker's own start-up is excluded).

Usage: ``python benchmarks/bench_sweep.py [--quick] [--repeats N]``; ``run(quick)`` returns the dict.
On a shared machine every figure moves with the load; the runner records how busy it was.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
LRS = "optimizer.lr=1e-3,2e-3,3e-3,5e-3,1e-2,3e-2"


def _train(args: list[str]) -> float:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(HERE / "hydra_callbacks"),
                                                                     os.environ.get("PYTHONPATH")])))
    tic = time.perf_counter()
    subprocess.run([sys.executable, "scripts/train.py", *args, "trainer.progress_bar=false"], cwd=REPO, env=env,
                   check=True, capture_output=True, text=True, timeout=900)
    return time.perf_counter() - tic


FLOOR = ("import torch; p = torch.nn.Parameter(torch.zeros(3)); o = torch.optim.AdamW([p]); "
         "p.sum().backward(); o.step()")


def _floor(code: str = FLOOR) -> float:
    tic = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=300)
    return time.perf_counter() - tic


def _jobs(sweep: Path) -> list[dict[str, Any]]:
    jobs = []
    for d in sorted((p for p in sweep.iterdir() if p.is_dir()), key=lambda p: int(p.name)):
        jobs.append({**json.loads((d / "job_timing.json").read_text()),
                     "train_seconds": json.loads((d / "metrics.json").read_text())["train_seconds"]})
    return jobs


def sweep(tmp: Path, name: str, parallel: bool, extra: list[str]) -> dict[str, Any]:
    out = tmp / name
    args = ["-m", "data=gbsg2", LRS, f"hydra.sweep.dir={out}", "+hydra.callbacks.timing._target_=job_timing.JobTiming",
            *extra]
    wall = _train(args + (["hydra/launcher=survopt_parallel"] if parallel else []))
    jobs = _jobs(out)
    if parallel:
        over = [j["end"] - j["start"] - j["train_seconds"] for j in jobs]
    else:
        over = [b["end"] - a["end"] - b["train_seconds"] for a, b in zip(jobs, jobs[1:])]
    return {"wall": wall, "overhead": statistics.median(over), "train": sum(j["train_seconds"] for j in jobs)}


def run(quick: bool = False, repeats: int | None = None) -> dict[str, Any]:
    repeats = repeats or (1 if quick else 5)
    extra = ["trainer.max_epochs=3"] if quick else []
    default, seq, par = [], [], []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for i in range(repeats):
            run_dir = tmp / f"default{i}"
            floor, imported = _floor(), _floor("import torch")
            wall = _train([f"hydra.run.dir={run_dir}", *extra])
            train = json.loads((run_dir / "metrics.json").read_text())["train_seconds"]
            default.append({"wall": wall, "train": train, "floor": floor, "overhead": wall - floor - train,
                            "import": imported, "beyond_import": wall - imported - train})
            seq.append(sweep(tmp, f"seq{i}", False, extra))
            par.append(sweep(tmp, f"par{i}", True, extra))

    def med(runs: list[dict[str, Any]], key: str) -> float:
        return round(statistics.median(r[key] for r in runs), 3)

    return {
        "benchmark": "sweep",
        "repeats": repeats,
        "cores": os.cpu_count(),
        "default_run_wall_s": med(default, "wall"),
        "default_run_train_s": med(default, "train"),
        "torch_floor_s": med(default, "floor"),
        "default_run_overhead_s": med(default, "overhead"),
        "torch_import_s": med(default, "import"),
        "default_run_beyond_import_s": med(default, "beyond_import"),
        "sweep6_sequential_wall_s": med(seq, "wall"),
        "sweep6_parallel_wall_s": med(par, "wall"),
        "parallel_sweep_speedup": round(med(seq, "wall") / med(par, "wall"), 3),
        "sweep6_train_s_sum": med(seq, "train"),
        "sweep_job_overhead_s": med(seq, "overhead"),
        "sweep_job_overhead_parallel_s": med(par, "overhead"),
        "runs": {"default": default, "sequential": seq, "parallel": par},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int)
    args = parser.parse_args()
    res = run(args.quick, args.repeats)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
