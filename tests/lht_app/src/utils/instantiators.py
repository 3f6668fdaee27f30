"""Callbacks and loggers from their config groups (each entry with a _target_ is one object)."""
from __future__ import annotations

import logging

import hydra
from omegaconf import DictConfig

log = logging.getLogger(__name__)


def _instantiate_all(cfg: DictConfig | None, what: str) -> list:
    if not cfg:
        log.warning("No %s configs found, skipping", what)
        return []
    if not isinstance(cfg, DictConfig):
        raise TypeError(f"{what} config must be a DictConfig")
    return [hydra.utils.instantiate(node) for node in cfg.values()
            if isinstance(node, DictConfig) and "_target_" in node]


def instantiate_callbacks(callbacks_cfg: DictConfig | None) -> list:
    return _instantiate_all(callbacks_cfg, "callback")


def instantiate_loggers(logger_cfg: DictConfig | None) -> list:
    return _instantiate_all(logger_cfg, "logger")
