"""Validate a composed config before anything is built, run or written.

Hydra's structured configs already refuse unknown keys and wrong types at composition;
this adds the range checks and cross-group checks (warmup longer than the run, a
scheduler that needs a run length) by running the same validators and builders the
real run will use, on a one-parameter dummy optimizer: no second copy of any rule.
"""
from __future__ import annotations

from typing import Any, Mapping

from .config import GROUPS
from .config.checks import schema_fields, validate
from .errors import ConfigError, unknown_name


def _name_field(options: Mapping[str, type]) -> str:
    """The field that names the option (``name``, ``mode``, ``dtype``, ``strategy``)."""
    first = next(iter(options.values()))
    for field in schema_fields(first):
        if all(getattr(schema(), field, None) == name for name, schema in options.items()):
            return field
    raise AssertionError(f"no name field in {sorted(options)}")  # pragma: no cover


#: The field that names the option within each group's node, read off the schemas.
NAME_FIELDS = {group: _name_field(options) for group, options in GROUPS.items()}


def plain_values(node: Any) -> dict[str, Any]:
    """A group node (OmegaConf or mapping) as a plain dict without ``_target_``-style keys."""
    if hasattr(node, "_metadata"):
        from omegaconf import OmegaConf

        node = OmegaConf.to_container(node, resolve=True)
    return {k: v for k, v in dict(node).items() if not str(k).startswith("_")}


def validate_groups(cfg: Mapping[str, Any], epochs: int | None = None, steps_per_epoch: int | None = None) -> None:
    """Check every survopt group present in ``cfg``; raise ConfigError on the first problem.

    With ``epochs`` (and ``steps_per_epoch`` for step schedules) the scheduler is also
    built on a dummy optimizer, so run-length checks fire now rather than mid-run.
    """
    for group, options in GROUPS.items():
        node = cfg.get(group)
        if node is None:
            continue
        values = plain_values(node)
        field = NAME_FIELDS[group]
        name = values.get(field)
        if name is None:
            raise ConfigError(group, f"no option selected; add {group}=<option>; allowed: {', '.join(sorted(options))}")
        if name not in options:
            raise unknown_name(f"{group}.{field}", str(name), options)
        validate(options[name], values, group)
    _check_ema_strategy(cfg)
    if cfg.get("optimizer") is not None and cfg.get("scheduler") is not None and epochs is not None:
        import torch

        from .optimizer import build_optimizer
        from .scheduler import build_scheduler

        opt_values = plain_values(cfg["optimizer"])
        opt_values.pop("lr_mult", None)  # patterns need real parameter names
        dummy = build_optimizer([torch.nn.Parameter(torch.zeros(1))], **opt_values)
        build_scheduler(dummy, epochs=epochs, steps_per_epoch=steps_per_epoch, **plain_values(cfg["scheduler"]))


def _check_ema_strategy(cfg: Mapping[str, Any]) -> None:
    """A weight average copies whole parameters, which FSDP shards across ranks."""
    if cfg.get("ema") is None or cfg.get("distributed") is None:
        return
    if plain_values(cfg["ema"]).get("mode") == "ema" and plain_values(cfg["distributed"]).get("strategy") == "fsdp":
        raise ConfigError("ema.mode", "'ema' averages whole parameters, but distributed=fsdp shards them across ranks; "
                                      "use distributed=ddp or zero with ema=ema, or ema=none with fsdp")


__all__ = ["validate_groups", "plain_values", "ConfigError", "NAME_FIELDS"]
