"""Validate a composed config's library nodes before anything is built, run or written.

Composition already refuses a misspelt key (Hydra's struct mode) or option name; this adds
types, ranges and cross-group checks (warmup longer than the run, a
scheduler that needs a run length) by running the same validators and builders the
real run will use, on a two-parameter dummy optimizer: no second copy of any rule
(torch's own constructor checks included). The dummy is built without importing
``torch._dynamo`` (:func:`dynamo_free`), which would cost seconds (it pulls in sympy
and FSDP) for an object that is never stepped.
"""
from __future__ import annotations

import contextlib
import sys
from typing import Any, Iterator, Mapping

from ..schemas import GROUPS
from ..schemas.checks import plain_values, schema_fields, validate
from ..errors import ConfigError, unknown_name


def _name_field(options: Mapping[str, type]) -> str:
    """The field that names the option (``name``, ``mode``, ``dtype``, ``strategy``)."""
    first = next(iter(options.values()))
    for field in schema_fields(first):
        if all(getattr(schema(), field, None) == name for name, schema in options.items()):
            return field
    raise AssertionError(f"no name field in {sorted(options)}")  # pragma: no cover


#: Hydra's own keys a library node may carry (the builders take keyword arguments only: no ``_args_``).
HYDRA_KEYS = ("_target_", "_partial_", "_convert_", "_recursive_")
#: The field that names the option within each group's node, read off the schemas.
NAME_FIELDS = {group: _name_field(options) for group, options in GROUPS.items()}


def validate_groups(cfg: Mapping[str, Any], epochs: int | None = None,
                    steps_per_epoch: int | None = None) -> dict[str, dict[str, Any]]:
    """Check every library group present in ``cfg`` (at the top level) before anything is built.

    The one call a Hydra app makes up front: each node against its option's schema (names,
    ranges, unknown keys; ``_partial_`` and hydra-zen nodes alike), a ``_target_`` of the wrong
    kind, and the cross-group rules; with ``epochs`` (and ``steps_per_epoch`` for step
    schedules) also :func:`check_run_length`. Raises a one-line ConfigError naming the key;
    returns each group's checked, coerced values. For nodes elsewhere (``cfg.model.optimizer``)
    pass a mapping: ``validate_groups({"optimizer": cfg.model.optimizer, ...})``.
    """
    checked: dict[str, dict[str, Any]] = {}
    for group, options in GROUPS.items():
        node = cfg.get(group)
        if node is None:
            continue
        special = [k for k in node.keys() if str(k).startswith("_") and k not in HYDRA_KEYS]
        if special:  # _args_: positional arguments the builders do not take; anything else is a typo
            raise ConfigError(f"{group}.{special[0]}", f"not a key Hydra or the library reads here; allowed: "
                                                      f"{', '.join(HYDRA_KEYS)} and the option's fields")
        values = plain_values(node)
        field = NAME_FIELDS[group]
        name = values.get(field)
        if name is None:
            raise ConfigError(group, f"no option selected; add {group}=<option>; allowed: {', '.join(sorted(options))}")
        if name not in options:
            raise unknown_name(f"{group}.{field}", str(name), options)
        checked[group] = validate(options[name], values, group)
        check_target(group, node, options[name])
    _check_ema_strategy(cfg)
    if epochs is not None:
        check_run_length(cfg, epochs, steps_per_epoch)
    return checked


def check_run_length(cfg: Mapping[str, Any], epochs: int, steps_per_epoch: int | None = None) -> None:
    """The checks that need the run length (a warmup longer than the run, a cosine floor above the LR,
    a schedule that needs ``epochs``): the scheduler is built on a throwaway two-parameter optimizer
    with the config's settings, by the builders the run will use - no second copy of any rule."""
    if cfg.get("optimizer") is None or cfg.get("scheduler") is None:
        return
    import torch

    from ..optim.optimizer import build_optimizer
    from ..optim.scheduler import build_scheduler

    opt_values = plain_values(cfg["optimizer"])
    for key in ("lr_mult", "layer_decay", "layers"):  # patterns and depths need real parameter names
        opt_values.pop(key, None)
    with dynamo_free():
        dummy = build_optimizer(torch.nn.Sequential(torch.nn.Linear(1, 1), torch.nn.Linear(1, 1)), **opt_values)
        build_scheduler(dummy, epochs=epochs, steps_per_epoch=steps_per_epoch, **plain_values(cfg["scheduler"]))


@contextlib.contextmanager
def dynamo_free() -> Iterator[None]:
    """Build throwaway optimizers without the first-call ``import torch._dynamo`` (~1-3 s).

    torch wraps ``Optimizer.add_param_group`` (called by every optimizer's constructor) in
    ``torch._disable_dynamo``, which imports dynamo on its first call and caches
    ``torch._dynamo.disable(fn)`` on ``fn.__dynamo_disable``. Inside this block that cache
    holds the plain function, so the constructor runs unchanged (all of torch's checks) and
    nothing is imported; the cache is cleared on exit, so the real optimizer a run builds
    later gets dynamo's wrapper as usual. Only for objects that are never compiled or stepped.
    """
    import torch

    raw = getattr(torch.optim.Optimizer.add_param_group, "__wrapped__", None)
    if raw is None or "torch._dynamo" in sys.modules or hasattr(raw, "__dynamo_disable"):
        yield  # another torch, or dynamo already paid for: nothing to save
        return
    setattr(raw, "__dynamo_disable", raw)
    try:
        yield
    finally:
        delattr(raw, "__dynamo_disable")


#: What a ``_target_`` override of each group may name besides the schema's own target: a
#: subclass of this (dotted path), so Hydra never calls an arbitrary callable from a config.
TARGET_KINDS = {
    "optimizer": ("torch.optim.Optimizer", "a torch.optim.Optimizer subclass"),
    "clipping": ("survopt_hydra.engine.GradientClipper", "survopt_hydra.engine.GradientClipper"),
    "amp": ("survopt_hydra.engine.AmpSettings", "survopt_hydra.engine.AmpSettings"),
    "ema": ("survopt_hydra.engine.WeightAverager", "survopt_hydra.engine.WeightAverager"),
    "distributed": ("survopt_hydra.distributed.DistributedSettings", "survopt_hydra.distributed.DistributedSettings"),
}


def check_target(group: str, node: Any, schema: type) -> None:
    """Refuse a ``<group>._target_`` override that is not the right kind, without calling it.

    Only a changed target is imported (so the usual check stays torch-free); an optimizer
    class is then built by :func:`~survopt_hydra.optim.build_optimizer` with the
    option's settings.
    """
    target = node.get("_target_") if hasattr(node, "get") else None
    default = schema._target_ if hasattr(schema, "_target_") else None
    if target is None or target == default:
        return
    from ..optim.optimizer import import_object as get_object
    from ..optim.optimizer import locate_class

    if group == "scheduler" and target != default:
        # Hydra calls a scheduler target with this option's fields (name, interval, warmup ...), which no torch
        # class accepts: the library builder is the only target that can honour the node
        raise ConfigError("scheduler._target_", f"'{target}' cannot take this option's fields (name, interval, "
                          f"warmup_epochs ...); choose scheduler=<option> instead; allowed: {default}")
    base_path, what = TARGET_KINDS[group]
    base = get_object(base_path)
    allowed = f"allowed: {default} or {what}" if what != default else f"allowed: {default} or a subclass"
    locate_class(f"{group}._target_", str(target), base, what, allowed)


def check_no_closure(cfg: Mapping[str, Any]) -> None:
    """For loops that step once per batch without a closure (the StepEngine, the app): a closure-driven
    optimizer (LBFGS) is refused in one line. Not part of :func:`validate_groups`: in an app's own
    ``step(closure)`` loop it is the right optimizer."""
    node = cfg.get("optimizer")
    if node is None:
        return
    from ..schemas.optimizer import OPTIM_INFO

    info = OPTIM_INFO.get(plain_values(node).get("name"))
    if info is not None and info.closure:
        raise ConfigError("optimizer.name", f"{info.name} is closure-driven (step(closure) re-evaluates the loss "
                          "several times); the StepEngine and the app step once per batch without a closure. "
                          "Use it with instantiate() in your own loop; here allowed: any other optimizer")


def _check_ema_strategy(cfg: Mapping[str, Any]) -> None:
    """A weight average copies whole parameters, which FSDP shards across ranks."""
    if cfg.get("ema") is None or cfg.get("distributed") is None:
        return
    if plain_values(cfg["ema"]).get("mode") == "ema" and plain_values(cfg["distributed"]).get("strategy") == "fsdp":
        raise ConfigError("ema.mode", "'ema' averages whole parameters, but distributed=fsdp shards them across ranks; "
                                      "use distributed=ddp or zero with ema=ema, or ema=none with fsdp")


__all__ = ["validate_groups", "check_run_length", "check_no_closure", "plain_values", "check_target", "ConfigError", "NAME_FIELDS"]
