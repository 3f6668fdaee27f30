"""Full model / optimizer / engine state dicts whatever the strategy.

Split out from the checkpoint files because an app that writes its own files needs
only these: every function returns (or takes) plain, unwrapped state with no
``module.`` / FSDP prefixes, consolidated from ZeRO shards or gathered from FSDP on
rank 0, so a state from any strategy loads into any other and into a plain model.
"""
from __future__ import annotations

from typing import Any, Mapping

from torch import nn
from torch.optim import Optimizer

from ..errors import ConfigError
from .context import DistContext
from .optim import is_zero
from ..engine.step_engine import unwrap_model
from .wrap import is_fsdp


def _state_options(**kw: Any):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(**kw)


def consolidated_optimizer_state(optimizer: Optimizer, ctx: DistContext, model: nn.Module | None = None) -> dict | None:
    """The full optimizer state on rank 0 (``None`` on other ranks). Collective.

    ZeRO: ``consolidate_state_dict(to=0)`` then ``state_dict()`` (torch's int-keyed
    format, loadable into a plain optimizer). FSDP (pass ``model``): DCP's full
    optimizer state dict, keyed by parameter name. Otherwise the plain state dict.
    """
    if is_zero(optimizer):
        optimizer.consolidate_state_dict(to=0)
        return optimizer.state_dict() if ctx.is_main else None
    if model is not None and is_fsdp(model):
        from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

        state = get_optimizer_state_dict(model, optimizer, options=_state_options(full_state_dict=True, cpu_offload=True))
        return state if ctx.is_main else None
    return optimizer.state_dict() if ctx.is_main else None


def load_optimizer_state(optimizer: Optimizer, state: Mapping | None, ctx: DistContext, model: nn.Module | None = None) -> None:
    """Inverse of :func:`consolidated_optimizer_state`; call on every rank.

    ``state`` must be given on every rank, except for FSDP where only rank 0's is read
    (``broadcast_from_rank0``). A name-keyed (FSDP) state loads into a plain/ZeRO
    optimizer and an int-keyed one into FSDP, provided the param groups match.
    """
    if model is not None and is_fsdp(model):
        from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

        full = _to_fqn_state(state, optimizer, model) if ctx.is_main and state is not None else {}
        set_optimizer_state_dict(
            model, optimizer, full,
            options=_state_options(full_state_dict=True, broadcast_from_rank0=ctx.world_size > 1, strict=True),
        )
        return
    if state is None:
        raise ConfigError("checkpoint", f"rank {ctx.rank} got no optimizer state to load")
    optimizer.load_state_dict(_to_index_state(state, optimizer, model))


def _param_names(optimizer: Optimizer, model: nn.Module | None) -> list[str] | None:
    """Name of each parameter in the optimizer's global (int) order."""
    if model is None:
        return None
    name_of = {id(p): n for n, p in unwrap_model(model).named_parameters()}
    names = [name_of.get(id(p)) for g in optimizer.param_groups for p in g["params"]]
    return None if any(n is None for n in names) else names  # type: ignore[return-value]


def _is_fqn_state(state: Mapping) -> bool:
    groups = state.get("param_groups") or []
    return any(isinstance(p, str) for g in groups for p in g.get("params", []))


def _to_index_state(state: Mapping, optimizer: Optimizer, model: nn.Module | None) -> dict:
    if not _is_fqn_state(state):
        return dict(state)
    names = _param_names(optimizer, model)
    if names is None:
        raise ConfigError("checkpoint", "the optimizer state is keyed by parameter name (an FSDP checkpoint); "
                          "pass model= so names can be matched to parameters")
    index = {n: i for i, n in enumerate(names)}
    return {
        "state": {index[k]: v for k, v in state["state"].items()},
        "param_groups": [dict(g, params=[index[p] for p in g["params"]]) for g in state["param_groups"]],
    }


def _to_fqn_state(state: Mapping, optimizer: Optimizer, model: nn.Module) -> dict:
    if _is_fqn_state(state):
        return dict(state)
    names = _param_names(optimizer, model)
    if names is None:  # pragma: no cover - FSDP keeps parameter identity
        raise ConfigError("checkpoint", "cannot match an index-keyed optimizer state to this FSDP model")
    return {
        "state": {names[int(k)]: v for k, v in state["state"].items()},
        "param_groups": [dict(g, params=[names[int(i)] for i in g["params"]]) for g in state["param_groups"]],
    }


def model_state_dict(model: nn.Module, ctx: DistContext, all_ranks: bool = False) -> dict | None:
    """The unwrapped model's full state dict (CPU copies) on rank 0, ``None`` elsewhere.

    ``all_ranks=True``: the full state on every rank (e.g. best-epoch weights every rank
    restores later). Collective for FSDP (parameters are all-gathered), so every rank
    must call it. Keys never carry ``module.`` or FSDP prefixes, so a checkpoint from
    any strategy loads into any other (and into a plain model).
    """
    if is_fsdp(model):
        from torch.distributed.checkpoint.state_dict import get_model_state_dict

        state = get_model_state_dict(model, options=_state_options(full_state_dict=True, cpu_offload=not all_ranks))
        if all_ranks:
            return {k: v.detach().cpu() for k, v in state.items()}
        return state if ctx.is_main else None
    if not (ctx.is_main or all_ranks):
        return None
    return {k: v.detach().cpu().clone() for k, v in unwrap_model(model).state_dict().items()}


def load_model_state_dict(model: nn.Module, state: Mapping | None, ctx: DistContext) -> None:
    """Inverse of :func:`model_state_dict`; call on every rank.

    FSDP: only rank 0's ``state`` is read (and broadcast); other strategies: every rank
    loads the ``state`` it is given (all must pass the same one).
    """
    if is_fsdp(model):
        from torch.distributed.checkpoint.state_dict import set_model_state_dict

        full = dict(state) if (ctx.is_main and state is not None) else {}
        set_model_state_dict(model, full, options=_state_options(full_state_dict=True, broadcast_from_rank0=ctx.world_size > 1))
        return
    if state is None:
        raise ConfigError("checkpoint", f"rank {ctx.rank} got no model state to load")
    unwrap_model(model).load_state_dict(state)


def engine_state_dict(engine: Any, ctx: DistContext, model: nn.Module | None = None) -> dict | None:
    """``engine.state_dict()`` with the full optimizer state, on rank 0 (``None`` elsewhere).

    Collective (ZeRO consolidates, FSDP gathers): every rank calls it. For an app that
    writes its own checkpoint files: save this and :func:`model_state_dict` from rank 0.
    """
    opt_sd = consolidated_optimizer_state(engine.optimizer, ctx, model)
    if not ctx.is_main:
        return None
    state = dict(engine.state_dict())
    state["optimizer"] = opt_sd
    return state


def load_engine_state(engine: Any, state: Mapping[str, Any], ctx: DistContext, model: nn.Module | None = None) -> None:
    """Inverse of :func:`engine_state_dict`; every rank calls it with the state.

    ZeRO ranks pick their shard from the full optimizer state; FSDP reads rank 0's
    optimizer entry only (``broadcast_from_rank0``); a name-keyed (FSDP) optimizer
    state loads into a plain or ZeRO optimizer and vice versa.
    """
    opt = engine.optimizer
    if model is not None and is_fsdp(model):
        full = state.get("optimizer") if ctx.is_main else None
        engine.load_state_dict(dict(state, optimizer=opt.state_dict()))  # scheduler, scaler, counters
        load_optimizer_state(opt, full, ctx, model)
        return
    if state.get("optimizer") is None:
        raise ConfigError("checkpoint", f"rank {ctx.rank} got no optimizer state to load")
    engine.load_state_dict(dict(state, optimizer=_to_index_state(state["optimizer"], opt, model)))
