"""``survopt-train``: the Hydra entry point (``python scripts/train.py key=value ...``).

Exit status (see ``docs/failure_modes.md``):

* 0 - finished (or stopped by ``trainer.stop_after_epochs``; rerun to resume);
* 2 - bad input: config, data file, incompatible or unusable checkpoint. One line
  ``error: <key or file>: <problem>`` on stderr, no traceback, and - thanks to the
  pre-flight (:mod:`survopt_hydra.app.preflight`, a Hydra callback that builds the run
  before Hydra creates its dir) - nothing written, not even ``.hydra/`` or ``train.log``;
* 1 - training failed (diverged: ``trainer.max_nonfinite_steps`` non-finite steps in a row);
* 143 / 130 - stopped by SIGTERM / SIGINT (Ctrl-C) at a safe point with ``last.pt`` saved;
  rerun the same command to resume.

A ``-m`` sweep runs every job even when some fail: each job dir gets ``status.json``
(``{"status": "ok"}`` or ``{"status": "failed", "exit_code": N, "error": "<one line>"}``),
and the sweep ends with one line naming the failed jobs and the exit status of the first.

``trainer.debug=true`` or ``HYDRA_FULL_ERROR=1`` show the full traceback instead.
"""
from __future__ import annotations

import contextlib
import errno
import gc
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Iterator

import hydra
from omegaconf import DictConfig

EXIT_USAGE = 2  # bad config or data: the user can fix the command
EXIT_FAILED = 1  # training itself failed (diverged)
EXIT_SIGINT = 130  # 128 + SIGINT
#: Failed jobs of this process's ``-m`` sweep: (job number, its overrides, exit status, one line).
_FAILED_JOBS: list[tuple[int, str, int, str]] = []
_JOBS_RUN = [0]
log = logging.getLogger(__name__)


def _user_error(exc: BaseException) -> BaseException | None:
    """The ConfigError/DataError behind ``exc`` (Hydra wraps errors raised in a _target_)."""
    from omegaconf.errors import OmegaConfBaseException

    from survopt_hydra.engine.clipping import ClippingConfigError
    from survopt_hydra.errors import ConfigError
    from survopt_hydra.survival.data import DataError

    while exc is not None:
        if isinstance(exc, (ConfigError, DataError, ClippingConfigError, OmegaConfBaseException)):
            return exc
        exc = exc.__cause__  # type: ignore[assignment]
    return None


def _fail(message: str, code: int, prefix: str = "error: ") -> None:
    print(prefix + " ".join(str(message).split()), file=sys.stderr, flush=True)
    sys.exit(code)


def _io_error(exc: BaseException, run_dir: Path) -> str | None:
    """One line for a file the run could not write (a full disk above all); None if not such an error."""
    while exc is not None and not isinstance(exc, OSError):
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    if exc is None or (exc.filename is None and exc.errno not in (errno.ENOSPC, errno.EDQUOT)):
        return None
    where = str(exc.filename) if exc.filename is not None else str(run_dir)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return (f"{where}: disk full ({exc.strerror}); the checkpoints already written are intact - free space "
                "and rerun the same command to resume")
    return f"{where}: cannot write ({exc.strerror or exc}); fix the directory and rerun the same command to resume"


def _classify(exc: Exception, run_dir: Path) -> tuple[int, str] | None:
    """(exit status, one line) for an error the user can act on; None for a bug (a traceback)."""
    from survopt_hydra.app.divergence import TrainingError

    user = _user_error(exc)
    if user is not None:
        return EXIT_USAGE, str(user)
    if isinstance(exc, TrainingError):
        return EXIT_FAILED, str(exc)
    io = _io_error(exc, run_dir)
    return (EXIT_USAGE, io) if io is not None else None


def _job_status(run_dir: Path, status: dict[str, Any]) -> None:
    """``<job dir>/status.json`` of a sweep job (read by ``scripts/sweep_report.py``)."""
    from survopt_hydra.app.checkpoint import write_text_atomic

    try:
        write_text_atomic(json.dumps(status) + "\n", run_dir / "status.json")
    except OSError as exc:  # e.g. the disk that failed the job is still full
        log.warning("could not write %s: %s", run_dir / "status.json", exc)


@hydra.main(config_path="pkg://survopt_hydra.app.train_conf", config_name="train", version_base=None)
def _main(cfg: DictConfig) -> Any:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from survopt_hydra.app.preflight import PREPARED, wants_traceback
    from survopt_hydra.app.state import RunInterrupted
    from survopt_hydra.app.trainer import train

    _training_gc()
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    sweep = hydra_cfg.mode == RunMode.MULTIRUN
    logging.raiseExceptions = False  # a log file on a full disk must not print "--- Logging error ---" tracebacks
    _JOBS_RUN[0] += 1
    try:
        # a single run's trainer was built by the pre-flight, before Hydra wrote anything; a sweep job builds its
        # own. Both read relative paths from where the command was started, also under hydra.job.chdir=true (the
        # app writes only into the absolute run dir, so the working directory means nothing else to it).
        with _in_dir(hydra_cfg.runtime.cwd):
            metrics = train(cfg, run_dir, PREPARED.pop() if PREPARED else None)
    except RunInterrupted as exc:  # not a failure: the checkpoint is saved, the rerun resumes (a sweep stops too)
        _fail(str(exc), exc.exit_code, prefix="stopped: ")
    except Exception as exc:
        if wants_traceback(cfg):
            raise
        known = _classify(exc, run_dir)
        if not sweep:
            if known is None:
                raise
            _fail(known[1], known[0])
        if known is None:  # a bug: the traceback goes to the job's log, the sweep goes on
            log.exception("job failed")
            known = (EXIT_FAILED, f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]} (traceback in "
                                  f"{run_dir / (hydra_cfg.job.name + '.log')})")
        code, line = known[0], " ".join(known[1].split())
        log.error("error: %s", line)
        _job_status(run_dir, {"status": "failed", "exit_code": code, "error": line})
        _FAILED_JOBS.append((int(hydra_cfg.job.num), " ".join(hydra_cfg.overrides.task), code, line))
        return None
    if sweep:
        _job_status(run_dir, {"status": "ok"})
    return sweep_value(metrics)


@contextlib.contextmanager
def _in_dir(path: str) -> Iterator[None]:
    """Run the block in ``path`` (the directory the command was started in), then come back."""
    here = os.getcwd()
    if os.path.realpath(path) == os.path.realpath(here):
        yield
        return
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(here)


def _sweep_summary() -> None:
    """After a ``-m`` sweep: one line naming the failed jobs, and a non-zero exit, if any failed."""
    if not _FAILED_JOBS:
        return
    jobs = "; ".join(f"#{num} ({overrides or 'no overrides'}): {line}" for num, overrides, _, line in _FAILED_JOBS)
    _fail(f"{len(_FAILED_JOBS)} of {_JOBS_RUN[0]} sweep jobs failed (status.json in each job dir): {jobs}",
          _FAILED_JOBS[0][2])


def sweep_value(metrics: dict[str, Any] | None) -> float | None:
    """What a sweeper (Optuna, Nevergrad ...) optimizes: the validation figure the run selected its
    best epoch on (``trainer.monitor``: val_cindex, or val_loss), never a test figure - model
    selection must not see test rows. The test figures stay in ``metrics.json``."""
    if not metrics:
        return None
    return metrics[metrics.get("monitor", "val_cindex")]


def _quiet_rank(argv: list[str]) -> list[str]:
    """On torchrun ranks other than 0, Hydra writes neither ``.hydra/`` nor ``train.log`` (rank 0 does);
    their warnings still reach the console."""
    try:
        rank = int(os.environ.get("RANK", "0"))
    except ValueError:  # the trainer reports a malformed launcher environment
        return argv
    if rank <= 0 or any(a.startswith(("hydra.output_subdir=", "hydra/job_logging=")) for a in argv):
        return argv
    return [*argv, "hydra.output_subdir=null", "hydra/job_logging=stdout"]


def _training_gc() -> None:
    """Cyclic garbage collection back on for training, with what start-up built frozen.

    :func:`main` starts without collection: importing torch, composing the config and building
    the run leave ~10^6 long-lived objects, and every full collection rescans all of them (5
    passes, ~1 s of a default run here), while start-up makes little cyclic garbage (peak memory
    is lower, not higher, without those passes). ``gc.freeze`` moves start-up's objects to the
    permanent generation, which later collections skip.
    """
    gc.freeze()
    gc.enable()


def main() -> None:
    """Console-script entry point (``survopt-train``): Hydra, with the pre-flight as its callback."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from survopt_hydra.app.preflight import composition_errors_raised, wants_traceback, yaml_infinity

    sys.argv[1:] = yaml_infinity(_quiet_rank(sys.argv[1:]))
    gc.disable()  # start-up: see _training_gc
    try:
        with composition_errors_raised():
            _main()
        _sweep_summary()
    except (HydraException, OmegaConfBaseException) as exc:  # composing failed: nothing was written
        if wants_traceback(argv=sys.argv[1:]):
            raise
        from survopt_hydra.app.hydra_errors import explain

        _fail(str(explain(exc)), EXIT_USAGE)
    except KeyboardInterrupt:  # Ctrl-C before training started, or twice: nothing half-written to keep
        if wants_traceback(argv=sys.argv[1:]):
            raise
        _fail("interrupted (SIGINT); last.pt, if any, is the last complete checkpoint", EXIT_SIGINT,
              prefix="stopped: ")
    finally:
        gc.enable()


if __name__ == "__main__":
    main()
