"""Build a real ``torch.optim`` optimizer from a validated optimizer config.

``build_optimizer`` is the ``_target_`` of every ``optimizer`` option, so Hydra's
``instantiate(cfg.optimizer, params=model)`` returns e.g. a plain ``torch.optim.AdamW``
(not a wrapper), with param groups from :mod:`survopt_hydra.optim.param_groups` and the
fastest implementation torch supports. Which class an option builds, and what it
accepts, is its record in :mod:`survopt_hydra.schemas.optimizer`.

A ``_target_`` override naming an optimizer class (``optimizer._target_=torch.optim.Adamax``)
is honoured by the builder like ``optimizer=custom``; any other target is refused before
it is called (:func:`check_target`).
"""
from __future__ import annotations

import inspect
from typing import Any, Callable, Iterable, NamedTuple

import torch
from torch import nn

from ..schemas.checks import schema_fields, validate
from ..schemas.optimizer import BUILDER, OPTIM_INFO, OPTIMIZERS, CustomConfig
from ..errors import ConfigError, did_you_mean, unknown_name
from .param_groups import build_param_groups

#: option name -> torch.optim class name (read off the records).
TORCH_CLASSES: dict[str, str] = {name: info.cls for name, info in OPTIM_INFO.items()}
#: Schema fields that shape the param groups or pick the kernel, not keywords of the torch class.
_GROUPING = ("name", "lr", "weight_decay", "no_weight_decay_1d", "lr_mult", "layer_decay", "layers",
             "implementation", "if_supported", "foreach", "fused", "aux_lr", "aux_betas", "aux_weight_decay",
             "aux_patterns")


def optimizer_options(name: str, key: str = "optimizer.name") -> type:
    """The schema dataclass of an optimizer name, or a ConfigError listing the names."""
    if name in OPTIMIZERS:
        return OPTIMIZERS[name]
    raise unknown_name(key, name, OPTIMIZERS)


def import_object(path: str) -> Any:
    """The object at dotted ``path``: the longest importable module prefix, then attributes."""
    import importlib

    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            if cut == 1:
                raise
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ValueError(f"empty path {path!r}")


def locate_class(key: str, path: str, base: type, what: str, allowed: str) -> type:
    """Import the class at dotted ``path`` without calling anything; it must subclass ``base``."""
    try:
        obj = import_object(str(path))
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigError(key, f"cannot import '{path}' ({type(exc).__name__}: {exc}); {allowed}") from None
    if not (isinstance(obj, type) and issubclass(obj, base)):  # base may be a tuple of classes
        raise ConfigError(key, f"'{path}' is not {what}; {allowed}")
    return obj


def check_target(target: Any, key: str = "optimizer._target_") -> type | None:
    """None for the library builder, else the optimizer class ``target`` names (refused if it is not one)."""
    if target in (None, BUILDER):
        return None
    return locate_class(key, target, torch.optim.Optimizer, "a torch.optim.Optimizer subclass",
                        f"allowed: {BUILDER} or a torch.optim.Optimizer subclass (e.g. torch.optim.Adamax)")


def _class_kwargs(key: str, cls: type, kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` checked against ``cls``'s signature (unknown keys listed); torch checks the values."""
    params = inspect.signature(cls.__init__).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return kwargs
    allowed = [k for k in params if k not in ("self", "params")]
    for k in kwargs:
        if k not in allowed:
            from ..errors import did_you_mean

            raise ConfigError(f"{key}.{k}", f"not a keyword of {cls.__name__}{did_you_mean(k, allowed)}; "
                                            f"allowed: {', '.join(allowed)}")
    return kwargs


class OptimizerPlan(NamedTuple):
    """Everything :func:`build_optimizer` decides before constructing: the one place ZeRO reuses too."""

    cls: type
    groups: list
    lr: float
    weight_decay: float
    kwargs: dict
    implementation: str


def plan_optimizer(params: nn.Module | Iterable[Any], name: str = "adamw", **options: Any) -> OptimizerPlan:
    """Validate ``options`` against ``name``'s schema: the class, param groups and keywords to build.

    ``options`` may carry the node's ``_target_`` (a torch.optim.Optimizer subclass is
    built with this option's settings) and ``_partial_`` (ignored: Hydra handled it).
    """
    cfg, cls, kwargs, target = _resolve(name, options)
    if name != "custom" and OPTIM_INFO[name].recipe == "muon" and target is None:
        raise ConfigError("optimizer.name", "muon is two torch optimizers (Muon + AdamW); build it with "
                                            "build_optimizer, not as one class (e.g. under ZeRO)")
    decays = "weight_decay" in inspect.signature(cls.__init__).parameters  # no split where nothing decays (LBFGS)
    groups = build_param_groups(params, cfg["lr"], cfg["weight_decay"], cfg["no_weight_decay_1d"] and decays,
                                cfg["lr_mult"], cfg["layer_decay"], cfg["layers"])
    return OptimizerPlan(cls, groups, cfg["lr"], cfg["weight_decay"], kwargs, cfg["implementation"])


def build_optimizer(params: nn.Module | Iterable[Any], name: str = "adamw", **options: Any) -> torch.optim.Optimizer:
    """Validate ``options`` against ``name``'s schema and build the torch optimizer (see :func:`plan_optimizer`)."""
    if name in OPTIM_INFO and OPTIM_INFO[name].recipe == "muon" and options.get("_target_") in (None, BUILDER):
        cfg, _, kwargs, _ = _resolve(name, dict(options))
        return _build_muon(params, cfg, kwargs)
    return construct(plan_optimizer(params, name, **options))


def _resolve(name: str, options: dict[str, Any]) -> tuple[dict[str, Any], type, dict[str, Any], type | None]:
    """The validated settings, the class, its keyword arguments, and the ``_target_`` class if overridden."""
    target = check_target(options.pop("_target_", None))
    options.pop("_partial_", None)
    if name == "custom":
        cfg = validate(CustomConfig, options, "optimizer")
        cls = target or check_target(cfg["cls"], "optimizer.cls")
        kwargs = _class_kwargs("optimizer.kwargs", cls, dict(cfg["kwargs"]))
    else:
        schema = optimizer_options(name)
        cfg = validate(schema, options, "optimizer")
        cls = target or OPTIM_INFO[name].torch_class()
        kwargs = {k: v for k, v in cfg.items() if k not in _GROUPING}
        kwargs.update({k: cfg[k] for k in ("foreach", "fused") if cfg.get(k) is not None})
        defaults = schema()
        kwargs.update(_if_supported(cls, cfg, defaults))
        # the option's keywords the class lacks (an older torch, a _target_ class) are dropped while at their defaults
        accepted = inspect.signature(cls.__init__).parameters
        kwargs = {k: v for k, v in kwargs.items() if k in accepted or v != getattr(defaults, k, v)}
        kwargs = _class_kwargs("optimizer", cls, kwargs)
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}  # betas, etas: torch wants tuples
    return cfg, cls, kwargs, target


def _if_supported(cls: type, cfg: dict[str, Any], defaults: Any) -> dict[str, Any]:
    """``optimizer.if_supported``: each keyword the class takes and the config leaves at its default, checked
    like a direct setting; a keyword no optimizer has is refused (a typo), one this class lacks is skipped."""
    from ..schemas.optimizer import OPTIMIZERS

    wanted = cfg.get("if_supported") or {}
    if not wanted:
        return {}
    accepted = inspect.signature(cls.__init__).parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in accepted.values())
    known = {f for schema in OPTIMIZERS.values() for f in schema_fields(schema)}
    out: dict[str, Any] = {}
    for key, value in wanted.items():
        if key not in known:
            raise ConfigError(f"optimizer.if_supported.{key}", f"not a keyword of any optimizer{did_you_mean(key, known)}")
        if (key in accepted or takes_any) and cfg.get(key, value) == getattr(defaults, key, None) and key not in _GROUPING:
            schema = type(defaults)
            out[key] = validate(schema, {key: value}, "optimizer.if_supported")[key] if key in schema_fields(schema) \
                else value
    return out


def construct(plan: OptimizerPlan, factory: Callable[..., torch.optim.Optimizer] | None = None) -> torch.optim.Optimizer:
    """Build ``plan`` with ``factory`` (default: its class; ZeRO passes ``partial(ZeroRedundancyOptimizer,
    optimizer_class=plan.cls)``), picking fused > torch default; silent fallback where fused is unsupported.

    torch's CPU default is a per-parameter for-loop; fused kernels move each byte once
    (about 3.7x faster for AdamW on a 2-core CPU). ``foreach``/``for_loop`` are explicit;
    a ``foreach``/``fused`` keyword given directly wins over ``implementation``.
    """
    cls, groups, lr, wd, kwargs, impl = plan
    make = factory or cls
    accepted = inspect.signature(cls.__init__).parameters
    base = dict(lr=lr, **kwargs)
    if "weight_decay" in accepted or any(p.kind is p.VAR_KEYWORD for p in accepted.values()):
        base["weight_decay"] = wd
    elif wd:
        raise ConfigError("optimizer.weight_decay", f"{cls.__name__} has no weight decay; allowed: 0")
    if "foreach" in kwargs or "fused" in kwargs:
        impl = "given"
    try:
        if impl == "foreach" and "foreach" in accepted:
            return make(groups, foreach=True, **base)
        if impl == "for_loop" and "foreach" in accepted:
            return make(groups, foreach=False, **base)
        if impl in ("auto", "fused") and "fused" in accepted:
            try:
                return make(groups, fused=True, **base)
            except (RuntimeError, ValueError, TypeError) as exc:
                if impl == "fused":
                    raise ConfigError("optimizer.implementation",
                                      f"fused is not supported here ({exc}); allowed: auto, foreach, for_loop") from None
        elif impl == "fused":
            raise ConfigError("optimizer.implementation",
                              f"{cls.__name__} has no fused kernel; allowed: auto, foreach, for_loop")
        return make(groups, **base)
    except (ValueError, TypeError, RuntimeError) as exc:  # torch's own checks of the values
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError("optimizer", f"{cls.__name__} refused the settings: {str(exc).splitlines()[0]}") from None


def _build_muon(params: Any, cfg: dict[str, Any], kwargs: dict[str, Any]) -> torch.optim.Optimizer:
    """Muon's recipe: hidden 2-D matrices to Muon, the rest to AdamW, one param-group policy for both.

    The policy (no decay for biases, norms and ``no_weight_decay()`` names; ``lr_mult`` patterns;
    ``layer_decay``) is decided once for the whole model, then each group is split between the two
    optimizers, so both halves honour it the same way; the AdamW half uses ``aux_lr`` (x each group's
    multiplier) and ``aux_weight_decay`` where the policy decays."""
    from .muon import MuonWithAdamW, split_for_muon

    if not isinstance(params, nn.Module):
        raise ConfigError("optimizer.name", "muon splits the model between Muon and AdamW by parameter names and "
                                            "shapes: pass the model itself")
    muon_names, _ = split_for_muon(params, cfg["aux_patterns"])
    if not muon_names:
        raise ConfigError("optimizer.name", "muon found no hidden 2-D matrix in the model (all parameters would "
                                            "go to AdamW); use optimizer=adamw")
    named = dict(params.named_parameters())
    muon_ids = {id(named[n]) for n in muon_names}
    whole = build_param_groups(params, cfg["lr"], cfg["weight_decay"], cfg["no_weight_decay_1d"], cfg["lr_mult"],
                               cfg["layer_decay"], cfg["layers"])
    aux_lr = cfg["aux_lr"] or cfg["lr"]
    aux_wd = cfg["weight_decay"] if cfg["aux_weight_decay"] is None else cfg["aux_weight_decay"]
    muon_groups, aux_groups = [], []
    for g in whole:
        mine = [p for p in g["params"] if id(p) in muon_ids]
        rest = [p for p in g["params"] if id(p) not in muon_ids]
        if mine:
            muon_groups.append({**g, "params": mine, "name": f"muon/{g['name']}"})
        if rest:
            aux_groups.append({**g, "params": rest, "name": f"adamw/{g['name']}", "lr": aux_lr * g["lr_mult"],
                               "weight_decay": aux_wd if g["weight_decay"] else 0.0})
    adamw_kwargs = {"betas": tuple(cfg["aux_betas"]), "weight_decay": aux_wd}
    return MuonWithAdamW(muon_groups, aux_groups, dict(lr=cfg["lr"], weight_decay=cfg["weight_decay"], **kwargs),
                         adamw_kwargs)
