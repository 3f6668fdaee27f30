"""What a run's outputs cost: ``RunOutputs.finish`` and ``predictor.finish_run`` timed inside one
default app run (in-process, fresh interpreter), and which optional plotting modules it imported.

    python benchmarks/bench_outputs.py [override ...]      # e.g. trainer.plots=true trainer.tensorboard=true

Prints one JSON line: seconds in each, the run's train_seconds, the whole call's seconds, and
whether matplotlib / tensorboard were imported. Import torch happens before the clock starts.
"""
from __future__ import annotations

import contextlib
import io
import json
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str]) -> dict:
    import torch  # noqa: F401 (outside the clock, like the issue's "beyond importing torch")

    from survopt_hydra.app import outputs, predictor
    from survopt_hydra.app.compose import compose_train
    from survopt_hydra.app.trainer import train

    spent = {"finish_s": 0.0, "finish_run_s": 0.0}

    def timed(owner, name, key):
        fn = getattr(owner, name)

        def wrapper(*args, **kwargs):
            tic = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[key] += time.perf_counter() - tic
        setattr(owner, name, wrapper)

    timed(outputs.RunOutputs, "finish", "finish_s")
    timed(predictor, "finish_run", "finish_run_s")
    tic = time.perf_counter()
    cfg = compose_train(["trainer.progress_bar=false", *argv])
    with tempfile.TemporaryDirectory() as run_dir, contextlib.redirect_stdout(io.StringIO()):
        metrics = train(cfg, Path(run_dir))
    result = {k: round(v, 3) for k, v in spent.items()}
    result.update(train_seconds=metrics["train_seconds"], call_s=round(time.perf_counter() - tic, 3),
                  imported=[m for m in ("matplotlib", "tensorboard") if m in sys.modules], overrides=argv)
    return result


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:])))
