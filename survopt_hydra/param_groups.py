"""Parameter groups: who gets weight decay and which modules get a lower LR.

Decaying biases and normalization weights hurts (timm, BERT practice); fine-tuning a
pretrained backbone wants a smaller LR than the new head. Groups carry a ``name`` so
monitors and logs can say which group is which, and ``lr_mult`` so schedulers that
set absolute LRs (onecycle's ``max_lr``) can keep the ratio.
"""
from __future__ import annotations

import fnmatch
from typing import Any, Iterable, Mapping

import torch
from torch import nn

from .errors import ConfigError


def _is_group_list(params: list) -> bool:
    return bool(params) and all(isinstance(p, Mapping) for p in params)


def build_param_groups(
    params: nn.Module | Iterable[Any],
    lr: float,
    weight_decay: float,
    no_weight_decay_1d: bool = True,
    lr_mult: Mapping[str, float] | None = None,
) -> list[dict[str, Any]]:
    """Split parameters into named groups with their own ``lr`` and ``weight_decay``.

    ``params`` may be a module (names are known: ``lr_mult`` patterns apply), an
    iterable of tensors or ``(name, tensor)`` pairs, or a list of param-group dicts
    (kept as given; missing ``lr``/``weight_decay``/``name`` are filled in).
    """
    lr_mult = dict(lr_mult or {})
    for pattern, mult in lr_mult.items():
        if not isinstance(mult, (int, float)) or mult <= 0:
            raise ConfigError(f"optimizer.lr_mult.{pattern}", f"must be a number > 0, got {mult!r}")

    if isinstance(params, nn.Module):
        named = [(n, p) for n, p in params.named_parameters() if p.requires_grad]
    else:
        items = list(params)
        if _is_group_list(items):
            return [_fill_group(dict(g), i, lr, weight_decay) for i, g in enumerate(items)]
        named = [
            (it[0], it[1]) if isinstance(it, tuple) else (None, it)
            for it in items
        ]
        named = [(n, p) for n, p in named if p.requires_grad]
    if not named:
        raise ConfigError("optimizer.params", "no trainable parameters were given")
    if lr_mult and any(n is None for n, _ in named):
        raise ConfigError(
            "optimizer.lr_mult", "needs parameter names: pass the model or model.named_parameters()"
        )

    groups: dict[tuple[str, bool], dict[str, Any]] = {}
    for name, p in named:
        pattern = next((pat for pat in lr_mult if name and fnmatch.fnmatchcase(name, pat)), None)
        decay = not (no_weight_decay_1d and p.ndim <= 1)
        gkey = (pattern or "default", decay)
        if gkey not in groups:
            mult = float(lr_mult[pattern]) if pattern else 1.0
            label = gkey[0] if decay else f"{gkey[0]}/no_decay"
            groups[gkey] = {
                "name": label,
                "params": [],
                "lr": lr * mult,
                "lr_mult": mult,
                "weight_decay": weight_decay if decay else 0.0,
            }
        groups[gkey]["params"].append(p)
    return list(groups.values())


def _fill_group(group: dict[str, Any], index: int, lr: float, weight_decay: float) -> dict[str, Any]:
    group["params"] = list(group["params"]) if not isinstance(group["params"], torch.Tensor) else [group["params"]]
    group.setdefault("name", f"group{index}")
    mult = group.setdefault("lr_mult", group["lr"] / lr if "lr" in group else 1.0)
    group.setdefault("lr", lr * mult)
    group.setdefault("weight_decay", weight_decay)
    return group
