"""How ``survopt-tune`` runs the app: a trial's validation folds (only validation figures come back), the
kept final runs, side by side in worker processes."""
from __future__ import annotations

import contextlib
import io
import logging
import math
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

TRIAL_OVERRIDES = ["trainer.progress_bar=false", "trainer.resume=false"]


def fold_overrides(cfg: Any, folds: int) -> list[list[str]]:
    """The overrides of each validation fold a trial averages over (``[[]]``: the app's one split).

    K-fold (``data.folds``/``data.fold``) validates on every non-test row once, and the test rows
    stay those of ``data.split_seed`` whichever fold validates, with or without a test file.
    """
    from survopt_hydra.errors import ConfigError

    if folds < 1:
        raise ConfigError("--folds", f"must be >= 1, got {folds}")
    if cfg.data.get("folds") is not None:
        raise ConfigError("data.folds", "is set by scripts/tune.py (--folds); drop the override")
    return [[]] if folds == 1 else [[f"data.folds={folds}", f"data.fold={k}"] for k in range(folds)]


def _quiet_worker() -> None:
    logging.disable(logging.WARNING)  # the app's per-epoch log lines, as in the parent


@contextlib.contextmanager
def workers(jobs: int) -> Iterator[Callable[..., Iterator[Any]]]:
    """A ``map`` that runs trainings in ``jobs`` worker processes, or the builtin ``map`` for one.

    Why processes: a trial's validation folds and the final runs are independent trainings of
    a tiny single-threaded model (the app uses one intra-op thread for tables), so a second
    core is a second training, while threads would share one GIL. Workers are spawned (a fresh
    interpreter each pays the torch import once, then serves many runs). Each run is seeded and
    single-threaded, so its figures do not depend on the process it ran in (a test compares).
    """
    if jobs <= 1:
        yield map
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_quiet_worker) as pool:
        yield pool.map


def train_kept(overrides: list[str], run_dir: Path) -> dict[str, Any]:
    """One final run in a kept run dir (``load_best`` reads it afterwards); its metrics."""
    from survopt_hydra.app.compose import compose_train
    from survopt_hydra.app.trainer import train

    cfg = compose_train([*overrides, *TRIAL_OVERRIDES])
    with contextlib.redirect_stdout(io.StringIO()):
        return train(cfg, run_dir)


def run_validation_only(overrides: list[str]) -> dict[str, Any]:
    """One trial: the app in-process in a throw-away dir; returns only validation-side figures."""
    from survopt_hydra.app.compose import compose_train
    from survopt_hydra.app.divergence import TrainingError
    from survopt_hydra.app.trainer import train

    cfg = compose_train([*overrides, *TRIAL_OVERRIDES])  # last.pt on the default time cadence: at the end only
    tic = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory() as run_dir, contextlib.redirect_stdout(io.StringIO()):
            metrics = train(cfg, Path(run_dir))
    except TrainingError as exc:  # diverged, or learnt nothing: this config failed, the search goes on
        return {"monitor": str(cfg.trainer.monitor), "value": math.nan, "val_cindex": math.nan, "best_epoch": 0,
                "epochs_run": 0, "seconds": round(time.perf_counter() - tic, 3), "failed": str(exc).splitlines()[0]}
    monitor = metrics.get("monitor", "val_cindex")
    return {"monitor": monitor, "value": metrics[monitor], "val_cindex": metrics["val_cindex"],
            "best_epoch": metrics["best_epoch"], "epochs_run": metrics["epochs_run"],
            "seconds": round(time.perf_counter() - tic, 3), "failed": ""}  # every test_* figure is dropped, unread
