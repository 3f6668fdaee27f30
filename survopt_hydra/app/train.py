"""``survopt-train``: the Hydra entry point (``python scripts/train.py key=value ...``).

Exit status (see ``docs/failure_modes.md``):

* 0 - finished (or stopped by ``trainer.stop_after_epochs``; rerun to resume);
* 2 - bad input: config, data file, incompatible or unusable checkpoint. One line
  ``error: <key or file>: <problem>`` on stderr, no traceback, and - thanks to the
  pre-flight (:mod:`survopt_hydra.app.preflight`) that runs before ``hydra.main`` -
  nothing written, not even ``.hydra/`` or ``train.log``;
* 1 - training failed (diverged: ``trainer.max_nonfinite_steps`` non-finite steps in a row);
* 143 / 130 - stopped by SIGTERM / SIGINT (Ctrl-C) at a safe point with ``last.pt`` saved;
  rerun the same command to resume.

``trainer.debug=true`` or ``HYDRA_FULL_ERROR=1`` show the full traceback instead.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from survopt_hydra.app.config import register_app_configs
from survopt_hydra.config import register_configs

register_app_configs()
register_configs()

EXIT_USAGE = 2  # bad config or data: the user can fix the command
EXIT_FAILED = 1  # training itself failed (diverged)
EXIT_SIGINT = 130  # 128 + SIGINT


def _user_error(exc: BaseException) -> BaseException | None:
    """The ConfigError/DataError behind ``exc`` (Hydra wraps errors raised in a _target_)."""
    from omegaconf.errors import OmegaConfBaseException

    from survopt_hydra.clipping import ClippingConfigError
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


@hydra.main(config_path="pkg://survopt_hydra.app.conf", config_name="train", version_base=None)
def _main(cfg: DictConfig) -> Any:
    from hydra.core.hydra_config import HydraConfig

    from survopt_hydra.app.state import RunInterrupted
    from survopt_hydra.app.trainer import TrainingError, train

    debug = os.environ.get("HYDRA_FULL_ERROR") == "1" or bool(cfg.get("trainer", {}).get("debug", False))
    try:
        metrics = train(cfg, Path(HydraConfig.get().runtime.output_dir))
    except RunInterrupted as exc:  # not a failure: the checkpoint is saved, the rerun resumes
        _fail(str(exc), exc.exit_code, prefix="stopped: ")
    except Exception as exc:
        if debug:
            raise
        user = _user_error(exc)
        if user is not None:
            _fail(str(user), EXIT_USAGE)
        if isinstance(exc, TrainingError):
            _fail(str(exc), EXIT_FAILED)
        raise
    return sweep_value(metrics)


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


def main() -> None:
    """Console-script entry point (``survopt-train``): pre-flight, then Hydra."""
    from survopt_hydra.app.preflight import preflight

    sys.argv[1:] = _quiet_rank(sys.argv[1:])
    try:
        preflight()
        _main()
    except KeyboardInterrupt:  # Ctrl-C before training started, or twice: nothing half-written to keep
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        _fail("interrupted (SIGINT); last.pt, if any, is the last complete checkpoint", EXIT_SIGINT,
              prefix="stopped: ")


if __name__ == "__main__":
    main()
