"""The template's run helpers (extras, task_wrapper, get_metric_value), plus the up-front check of
survopt-hydra's nodes."""
from __future__ import annotations

import logging
import math
import sys
import warnings
from typing import Any, Callable

from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


def extras(cfg: DictConfig) -> None:
    """What configs/extras asks for before the run."""
    if not cfg.get("extras"):
        return
    if cfg.extras.get("ignore_warnings"):
        warnings.filterwarnings("ignore")
    if cfg.extras.get("enforce_tags") and not cfg.get("tags"):
        raise ValueError("Specify tags for this run: tags=[...]")
    if cfg.extras.get("print_config"):
        log.info("Config:\n%s", OmegaConf.to_yaml(cfg, resolve=True))


def check_library_nodes(cfg: DictConfig) -> None:
    """survopt-hydra's nodes under model., checked before anything is built: one line and exit on a bad value."""
    from survopt_hydra import ConfigError, validate_groups

    steps = math.ceil(cfg.data.train_val_test_split[0] / cfg.data.batch_size)
    try:
        for scheduler in ("scheduler", "plateau"):
            if cfg.model.get(scheduler) is not None:
                validate_groups({"optimizer": cfg.model.optimizer, "scheduler": cfg.model[scheduler]},
                                epochs=cfg.trainer.max_epochs, steps_per_epoch=steps)
    except ConfigError as err:
        sys.exit(f"error: model.{err}")


def task_wrapper(task_func: Callable) -> Callable:
    """Log where the run wrote, also when the task fails."""
    def wrap(cfg: DictConfig) -> tuple[dict[str, Any], dict[str, Any]]:
        try:
            return task_func(cfg=cfg)
        except Exception:
            log.exception("")
            raise
        finally:
            log.info("Output dir: %s", cfg.paths.output_dir)

    return wrap


def get_metric_value(metric_dict: dict[str, Any], metric_name: str | None) -> float | None:
    """The metric a sweep optimizes (hparams_search's optimized_metric)."""
    if not metric_name:
        return None
    if metric_name not in metric_dict:
        raise KeyError(f"Metric {metric_name!r} was not logged; logged: {sorted(metric_dict)}")
    return metric_dict[metric_name].item()
