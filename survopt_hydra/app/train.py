"""``survopt-train``: the Hydra entry point (``python scripts/train.py key=value ...``).

Configuration problems and bad data files are user errors, not bugs: they are printed
as one line (``error: <key or file>: <problem>``) with exit status 2 and no traceback,
unless ``trainer.debug=true`` or ``HYDRA_FULL_ERROR=1`` asks for the full story.
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


def _fail(message: str, code: int) -> None:
    print("error: " + " ".join(str(message).split()), file=sys.stderr, flush=True)
    sys.exit(code)


@hydra.main(config_path="pkg://survopt_hydra.conf", config_name="train", version_base=None)
def _main(cfg: DictConfig) -> Any:
    from hydra.core.hydra_config import HydraConfig

    from survopt_hydra.app.trainer import TrainingError, train

    debug = os.environ.get("HYDRA_FULL_ERROR") == "1" or bool(cfg.get("trainer", {}).get("debug", False))
    try:
        metrics = train(cfg, Path(HydraConfig.get().runtime.output_dir))
    except Exception as exc:
        if debug:
            raise
        user = _user_error(exc)
        if user is not None:
            _fail(str(user), EXIT_USAGE)
        if isinstance(exc, TrainingError):
            _fail(str(exc), EXIT_FAILED)
        raise
    return metrics.get("test_cindex") if metrics else None  # the value an optuna-style sweeper optimizes


def main() -> None:
    """Console-script entry point (``survopt-train``)."""
    _main()


if __name__ == "__main__":
    main()
