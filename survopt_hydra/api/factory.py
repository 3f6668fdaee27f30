"""The seed ``optimizers`` API (``create_optimizer``, ``create_scheduler``,
``create_optimizer_and_scheduler``, ``OptimizerFactory``) as a thin layer.

Seed code passes its own spellings (``optimizer_type``, ``learning_rate``, ``max_epochs``)
as kwargs, flat dicts, nested ``{optimizer:, scheduler:, gradient_clipping:}`` dicts or a
YAML ``training:`` block. This module only maps them onto schema fields and calls
``build_optimizer`` / ``build_scheduler``, so defaults, coercion (``'1e-4'``) and range
checks live in :mod:`survopt_hydra.schemas` alone. Decisions: no optimizer name means the
schema default (``adamw``), no scheduler name means ``none``; two spellings of one
setting with different values are an error; a key starting with ``_`` (``_target_``) is
refused at any depth, so a plain dict never instantiates anything. ``config=`` may carry
keys other components read (``gradient_clipping``, ``max_grad_norm``, ``amp``,
``compile``; siblings of ``training:``), which are skipped here.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Optional

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from ..schemas.checks import coerce, schema_fields, validate
from ..schemas.clipping import CLIPPING
from ..schemas.optimizer import OptimizerConfig
from ..schemas.scheduler import SchedulerConfig
from ..errors import ConfigError, did_you_mean, unknown_name
from ..optim.optimizer import build_optimizer, optimizer_options
from ..optim.scheduler import build_scheduler, scheduler_options

if TYPE_CHECKING:
    from ..engine.clipping import GradientClipper

__all__ = ["create_optimizer", "create_scheduler", "create_optimizer_and_scheduler", "OptimizerFactory"]

_OPT = {"name": ("optimizer_name", "optimizer_type", "type", "name"), "lr": ("lr", "learning_rate")}
_SCHED = {"name": ("scheduler_name", "scheduler_type", "type", "name"), "epochs": ("epochs", "max_epochs")}
_FLAT = {  # flat keys name their section
    "optimizer.name": ("optimizer", "optimizer_name", "optimizer_type"),
    "scheduler.name": ("scheduler", "scheduler_name", "scheduler_type"),
    "optimizer.lr": _OPT["lr"],
    "scheduler.epochs": _SCHED["epochs"],
}
_RUN = ("epochs", "steps_per_epoch")  # the run length: builder arguments, not schema fields
_ELSEWHERE = ("gradient_clipping", "max_grad_norm", "amp", "compile")
_CLIP_KEYS = {"enabled", "adaptive"}.union(*(schema_fields(s) for s in CLIPPING.values()))


def _plain(value: Any, key: str) -> Any:
    """Copy user data to plain dicts/lists, refusing ``_`` keys (``_target_``) at any depth."""
    if type(value).__name__ in ("DictConfig", "ListConfig"):
        from omegaconf import OmegaConf

        value = OmegaConf.to_container(value, resolve=True)
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            full = f"{key}.{k}" if key else str(k)
            if str(k).startswith("_"):
                raise ConfigError(full, "keys starting with '_' (such as _target_) are refused: a plain dict "
                                  "never instantiates anything; allowed: names and schema fields")
            out[str(k)] = _plain(v, full)
        return out
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{key}[{i}]") for i, v in enumerate(value)]
    return value


def _mapping(config: Any, key: str) -> dict:
    cfg = _plain({} if config is None else config, key)
    if not isinstance(cfg, dict):
        raise ConfigError(key or "config", f"must be a mapping (dict, YAML or OmegaConf), got {config!r}")
    return cfg


def _put(dst: dict, key: str, value: Any, prefix: str) -> None:
    """Set ``dst[key]``; a second, different value (``'1e-4'`` equals ``1e-4``) is an error."""
    try:
        same = key not in dst or dst[key] == value or float(dst[key]) == float(value)
    except (TypeError, ValueError):
        same = False
    if not same:
        raise ConfigError(f"{prefix}{key}", f"given twice with different values ({dst[key]!r} and {value!r}); "
                          "allowed: one value, under one spelling")
    dst[key] = value


def _canon(values: Mapping[str, Any], aliases: Mapping[str, tuple], prefix: str) -> dict[str, Any]:
    """Rename alias spellings (``learning_rate`` -> ``lr``) onto one key each."""
    out: dict[str, Any] = {}
    for k, v in values.items():
        _put(out, next((c for c, names in aliases.items() if k in names), k), v, prefix)
    return out


def _name(value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(key, f"must be a name (string), got {value!r}")
    return value


def _split(cfg: Mapping[str, Any], prefix: str) -> tuple[dict, dict]:
    """Flat and/or nested config -> (optimizer options, scheduler options), canonical keys."""
    nested = {k: isinstance(cfg.get(k), Mapping) for k in ("optimizer", "scheduler")}
    opt = _canon(cfg["optimizer"], _OPT, "optimizer.") if nested["optimizer"] else {}
    sched = _canon(cfg["scheduler"], _SCHED, "scheduler.") if nested["scheduler"] else {}
    flat = _canon({k: v for k, v in cfg.items() if not nested.get(k)}, _FLAT, "")
    for sec, dst in (("optimizer", opt), ("scheduler", sched)):
        if f"{sec}.name" in flat:
            _put(dst, "name", flat.pop(f"{sec}.name"), f"{sec}.")
    o_name = _name(opt.get("name", OptimizerConfig.name), "optimizer.name")
    s_name = _name(sched.get("name", SchedulerConfig.name), "scheduler.name")
    o_fields = set(schema_fields(optimizer_options(o_name))) - {"name"}
    s_fields = (set(schema_fields(scheduler_options(s_name))) - {"name"}) | set(_RUN)
    for k, v in flat.items():
        sec, _, field = k.rpartition(".")
        if k in _ELSEWHERE:
            continue
        if sec == "optimizer" or (not sec and field in o_fields):
            _put(opt, field, v, "optimizer.")
        elif sec == "scheduler" or (not sec and field in s_fields):
            _put(sched, field, v, "scheduler.")
        elif k in ("type", "name"):
            raise ConfigError(prefix + k, "is ambiguous in a flat config; allowed: optimizer_name / "
                              "scheduler_name, or nested optimizer: {type: ...}")
        else:
            hint = did_you_mean(k, o_fields.union(s_fields, *_FLAT.values()))
            raise ConfigError(prefix + k, f"unknown key{hint}; allowed: optimizer '{o_name}': "
                              f"{', '.join(sorted(o_fields))}; scheduler '{s_name}': {', '.join(sorted(s_fields))}")
    return opt, sched


def _sections(config: Any, kwargs: Mapping[str, Any]) -> tuple[dict, dict]:
    cfg, prefix = _mapping(config, ""), ""
    if isinstance(cfg.get("training"), Mapping):
        cfg, prefix = cfg["training"], "training."
    for k, v in _plain(kwargs, "").items():
        _put(cfg, k, v, prefix)
    return _split(cfg, prefix)


def _section(config: Any, kw: Mapping[str, Any], aliases: Mapping[str, tuple], prefix: str, which: int) -> dict:
    """One section for the factory: ``config`` is ``{type: ..., ...}`` itself, else split; plus ``kw``."""
    cfg = _mapping(config, prefix[:-1])
    if ("type" in cfg or "name" in cfg) and not {"optimizer", "scheduler", "training"} & set(cfg):
        out = _canon(cfg, aliases, prefix)
    else:
        out = _sections(cfg, {})[which]
    for k, v in _canon(_plain(kw, prefix[:-1]), aliases, prefix).items():
        _put(out, k, v, prefix)
    return out


def _run(epochs: Optional[int], steps_per_epoch: Optional[int]) -> dict[str, int]:
    return {k: v for k, v in (("epochs", epochs), ("steps_per_epoch", steps_per_epoch)) if v is not None}


def _params(params: Any, model: Any) -> Any:
    if (params is None) == (model is None):
        raise ConfigError("optimizer.params", "pass exactly one of: the parameters (model.parameters(), "
                          "named parameters, param-group dicts, a module) or model=")
    return model if params is None else params


def _optimizer(params: Any, opts: Mapping[str, Any]) -> Optimizer:
    opts = dict(opts)
    return build_optimizer(params, _name(opts.pop("name", OptimizerConfig.name), "optimizer.name"), **opts)


def _scheduler(optimizer: Optimizer, opts: Mapping[str, Any]) -> LRScheduler:
    opts = dict(opts)
    name = _name(opts.pop("name", SchedulerConfig.name), "scheduler.name")
    run = {k: coerce(f"scheduler.{k}", opts.pop(k), Optional[int]) for k in _RUN if k in opts}
    return build_scheduler(optimizer, name=name, **run, **opts)


def seed_optimizer_options(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The seed's optimizer keywords (any spelling: ``optimizer_type``, ``learning_rate`` ...) as
    the ``optimizer`` group's fields; ConfigError naming the key for a bad or conflicting one.
    Shared with :class:`survopt_hydra.api.distributed_optimizer.DistributedOptimizer`."""
    return _canon(_plain(kwargs, "optimizer"), _OPT, "optimizer.")


def create_optimizer(params: Any = None, *, model: Any = None, **kwargs: Any) -> Optimizer:
    """``create_optimizer(model.parameters() | model=model, optimizer_name='adamw', lr=1e-4)``;
    name: ``optimizer_name|optimizer_type|type|name``, LR: ``lr|learning_rate``."""
    return _optimizer(_params(params, model), seed_optimizer_options(kwargs))


def create_scheduler(optimizer: Optimizer, **kwargs: Any) -> LRScheduler:
    """``create_scheduler(optimizer, scheduler_name='cosine', epochs=100, eta_min=1e-7)``;
    name: ``scheduler_name|scheduler_type|type|name``, run length: ``epochs|max_epochs``."""
    return _scheduler(optimizer, _canon(_plain(kwargs, "scheduler"), _SCHED, "scheduler."))


def create_optimizer_and_scheduler(
    params: Any = None, *, model: Any = None, config: Any = None, **kwargs: Any
) -> tuple[Optimizer, LRScheduler]:
    """Both from flat kwargs and/or ``config`` (flat, nested or a ``training:`` block);
    flat keys go to the optimizer or the scheduler by schema field name."""
    opt, sched = _sections(config, kwargs)
    optimizer = _optimizer(_params(params, model), opt)
    return optimizer, _scheduler(optimizer, sched)


class OptimizerFactory:
    """The seed's class API; stateless, every method delegates to the functions above."""

    def create_optimizer(self, model: Any = None, config: Any = None, params: Any = None, **kw: Any) -> Optimizer:
        return _optimizer(_params(params, model), _section(config, kw, _OPT, "optimizer.", 0))

    def create_scheduler(self, optimizer: Optimizer, config: Any = None, epochs: Optional[int] = None,
                         steps_per_epoch: Optional[int] = None, **kw: Any) -> LRScheduler:
        return _scheduler(optimizer, _section(config, {**kw, **_run(epochs, steps_per_epoch)}, _SCHED, "scheduler.", 1))

    def create_optimizer_and_scheduler(self, model: Any = None, config: Any = None, params: Any = None,
                                       epochs: Optional[int] = None,
                                       steps_per_epoch: Optional[int] = None) -> tuple[Optimizer, LRScheduler]:
        return create_optimizer_and_scheduler(params, model=model, config=config, **_run(epochs, steps_per_epoch))

    def create_gradient_clipper(self, config: Any = None) -> "GradientClipper":
        """From ``gradient_clipping: {enabled, max_norm, ...}``, a training block's
        ``max_grad_norm``, or the block itself; nothing configured means no clipping."""
        from ..engine.clipping import GradientClipper

        cfg, top = _mapping(config, ""), ""
        if isinstance(cfg.get("training"), Mapping):
            cfg, top = cfg["training"], "training."
        if isinstance(cfg.get("gradient_clipping"), Mapping):
            block, prefix = dict(cfg["gradient_clipping"]), f"{top}gradient_clipping"
        elif "max_grad_norm" in cfg:
            value, prefix = cfg["max_grad_norm"], f"{top}max_grad_norm"
            block = {"enabled": False} if value is None else {"max_norm": value}
        else:
            block, prefix = (dict(cfg) if cfg and set(cfg) <= _CLIP_KEYS else {"enabled": False}), "gradient_clipping"
        enabled = coerce(f"{prefix}.enabled", block.pop("enabled", True), bool)
        adaptive = coerce(f"{prefix}.adaptive", block.pop("adaptive", False), bool)
        mode = _name(block.pop("mode", "adaptive" if adaptive else "norm"), f"{prefix}.mode")
        if adaptive and mode != "adaptive":
            raise ConfigError(f"{prefix}.adaptive", f"conflicts with mode '{mode}'; allowed: mode adaptive")
        if mode not in CLIPPING:
            raise unknown_name(f"{prefix}.mode", mode, CLIPPING)
        try:
            values = validate(CLIPPING[mode], block, prefix)
        except ConfigError as err:  # name the user's key, not the schema field behind it
            if prefix.endswith("max_grad_norm"):
                raise ConfigError(prefix, str(err)[len(err.key) + 2:]) from None
            raise
        return GradientClipper(**(values if enabled else {"mode": "none"}))
