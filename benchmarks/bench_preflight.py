"""The pre-flight's cost: ``survopt_hydra.app.preflight.preflight()`` for the default command.

Each probe is a fresh interpreter that first imports what the run imports anyway (torch,
Hydra, the app's modules incl. the trainer: ``import_s``, not counted), then times one
``preflight(["hydra.run.dir=<fresh tmp dir>"])``, split into:

* ``compose``: Hydra's composition of ``train.yaml``, which the pre-flight hands over to
  ``hydra.main`` (``recompose_s`` times hydra.main's composition afterwards in the same
  process, through Hydra's own ``load_configuration``: ~0 when the hand-over works);
* ``data``: loading and checking the cohort, which the trainer takes over from the
  pre-flight (``take_cohort``), so the run does not pay it twice;
* the rest: schema and cross-group checks, the run-length check on a dummy optimizer and
  scheduler, run dir, resume and lock.

``preflight_s`` is the median over ``repeats`` probes of the whole call; ``preflight_extra_s``
the median of the rest plus ``recompose_s``: what the pre-flight adds to a run, since the run
would compose the config and load the data without it too.
``dynamo_imported`` / ``fsdp_imported``: whether ``torch._dynamo`` / ``torch.distributed.fsdp``
were in ``sys.modules`` afterwards (both must be false: they cost seconds).

Usage: ``python benchmarks/bench_preflight.py [--quick] [--repeats N]``; ``run(quick)`` returns the dict.
On a shared machine every figure moves with the load; the runner records how busy it was.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

_PROBE = r"""
import json, sys, tempfile, time
t0 = time.perf_counter()
import torch, hydra, omegaconf
import survopt_hydra.app.train, survopt_hydra.app.trainer, survopt_hydra.app.preflight as P
import survopt_hydra.app.rules as R
t1 = time.perf_counter()
spent = {"compose": 0.0, "data": 0.0}
def timed(mod, name, part):
    fn = getattr(mod, name)
    def wrapper(*args, **kwargs):
        tic = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            spent[part] += time.perf_counter() - tic
    setattr(mod, name, wrapper)
timed(P, "_compose", "compose")
timed(P, "load_cohort_once", "data")
run_dir = tempfile.mkdtemp() + "/run"
tic = time.perf_counter()
P.preflight([f"hydra.run.dir={run_dir}"])
total = time.perf_counter() - tic
parts = dict(spent)  # the second composition below is not the pre-flight's
tic = time.perf_counter()
P._compose(P._loader(None), P.CONFIG_NAME, [f"hydra.run.dir={run_dir}"])
recompose = time.perf_counter() - tic
print(json.dumps({"import": t1 - t0, "total": total, "recompose": recompose, **parts,
                  "dynamo": "torch._dynamo" in sys.modules, "fsdp": "torch.distributed.fsdp" in sys.modules}))
"""


def probe() -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-c", _PROBE], cwd=REPO, check=True, capture_output=True, text=True,
                         timeout=600)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(quick: bool = False, repeats: int | None = None) -> dict[str, Any]:
    repeats = repeats or (3 if quick else 7)
    probes = [probe() for _ in range(repeats)]

    def median(key: str) -> float:
        return round(statistics.median(p[key] for p in probes), 4)

    return {
        "preflight_s": median("total"),
        "preflight_extra_s": round(statistics.median(p["total"] - p["data"] - p["compose"] + p["recompose"]
                                                     for p in probes), 4),
        "preflight_compose_s": median("compose"),
        "preflight_data_s": median("data"),
        "recompose_s": median("recompose"),
        "import_s": median("import"),
        "dynamo_imported": any(p["dynamo"] for p in probes),
        "fsdp_imported": any(p["fsdp"] for p in probes),
        "repeats": repeats,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int)
    args = parser.parse_args()
    print(json.dumps(run(args.quick, args.repeats), indent=2))


if __name__ == "__main__":
    main()
