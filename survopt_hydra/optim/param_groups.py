"""Parameter groups: who gets weight decay, and which parameters get a smaller LR.

Decaying biases and normalization weights hurts (timm, BERT practice), so 1-D parameters
and the names a model lists in ``no_weight_decay()`` / ``no_weight_decay_keywords()``
(timm's convention) get none. Fine-tuning wants a smaller LR for a pretrained backbone
(``lr_mult`` patterns) or one that shrinks with depth from the head (``layer_decay``,
timm's layer-wise LR decay). Groups carry a ``name`` (logs and monitors say which group
is which) and ``lr_mult`` (schedulers that set absolute LRs, onecycle's ``max_lr``, keep
the ratio). A pattern that matches no parameter is refused (a typo), unless it starts
with ``?`` (``"?backbone.*"``: only where the model has one, as the finetune preset says).
"""
from __future__ import annotations

import fnmatch
import re
from typing import Any, Iterable, Mapping, Sequence

import torch
from torch import nn

from ..errors import ConfigError


def _is_group_list(params: list) -> bool:
    return bool(params) and all(isinstance(p, Mapping) for p in params)


def _named(params: nn.Module | Iterable[Any]) -> tuple[list[tuple[str | None, torch.Tensor]], set[str]]:
    """Trainable ``(name, tensor)`` pairs (name None when unknown) and the model's no-decay names."""
    if isinstance(params, nn.Module):
        named = [(n, p) for n, p in params.named_parameters() if p.requires_grad]
        return named, _no_decay_names(params, [n for n, _ in named])
    items = [(it[0], it[1]) if isinstance(it, tuple) else (None, it) for it in params]
    return [(n, p) for n, p in items if p.requires_grad], set()


def _no_decay_names(model: nn.Module, names: list[str]) -> set[str]:
    """timm's convention: ``no_weight_decay()`` names exact parameters (or prefixes of them),
    ``no_weight_decay_keywords()`` substrings."""
    exact = set(model.no_weight_decay()) if hasattr(model, "no_weight_decay") else set()
    words = set(model.no_weight_decay_keywords()) if hasattr(model, "no_weight_decay_keywords") else set()
    return {n for n in names if n in exact or any(n.startswith(e + ".") for e in exact) or any(w in n for w in words)}


def _no_match(key: str, pattern: str, names: Sequence[str]) -> ConfigError:
    sample = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
    return ConfigError(key, f"pattern '{pattern}' matches no parameter; parameter names look like: {sample}")


def layer_ids(names: Sequence[str], patterns: Sequence[str] | None = None, key: str = "optimizer.layers") -> dict[str, int]:
    """Depth of each parameter, 0 at the input, for layer-wise LR decay.

    With ``patterns`` a parameter's depth is the index of the first pattern that matches it.
    Otherwise the blocks come from the names: the numbered container with the most entries
    (``blocks.3.attn.qkv.weight``, ``layers.0.weight``, ``0.weight`` of a Sequential) holds
    blocks 1..N in order; parameters before it (embeddings, stem) are layer 0, after it
    (final norm, head) layer N+1.
    """
    if patterns:
        for pattern in patterns:
            if not any(fnmatch.fnmatchcase(n, pattern) for n in names):
                raise _no_match(key, pattern, names)
        ids = {}
        for n in names:
            hit = next((i for i, pat in enumerate(patterns) if fnmatch.fnmatchcase(n, pat)), None)
            if hit is None:
                raise ConfigError(key, f"parameter '{n}' matches none of the {len(patterns)} layer patterns; "
                                       "add a pattern for it (e.g. '*')")
            ids[n] = hit
        return ids
    found: dict[str, list[int]] = {}
    for n in names:
        m = re.match(r"^((?:[^.]+\.)*?)(\d+)\.", n)
        if m:
            found.setdefault(m.group(1), []).append(int(m.group(2)))
    if not found:
        return {n: 0 for n in names}
    prefix = max(found, key=lambda p: len(set(found[p])))
    rank = {idx: r + 1 for r, idx in enumerate(sorted(set(found[prefix])))}
    ids, seen_block = {}, False
    for n in names:
        m = re.match(rf"^{re.escape(prefix)}(\d+)\.", n)
        if m:
            ids[n], seen_block = rank[int(m.group(1))], True
        else:
            ids[n] = len(rank) + 1 if seen_block else 0
    return ids


def build_param_groups(
    params: nn.Module | Iterable[Any],
    lr: float,
    weight_decay: float,
    no_weight_decay_1d: bool = True,
    lr_mult: Mapping[str, float] | None = None,
    layer_decay: float | None = None,
    layers: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """Split parameters into named groups with their own ``lr`` and ``weight_decay``.

    ``params`` may be a module (names are known: patterns, ``no_weight_decay()`` and
    ``layer_decay`` apply), an iterable of tensors or ``(name, tensor)`` pairs, or a list
    of param-group dicts (kept as given, 1-D parameters split off into a ``/no_decay``
    twin unless ``no_weight_decay_1d`` is false; missing ``lr``/``weight_decay``/``name``
    filled in).
    """
    lr_mult = dict(lr_mult or {})
    for pattern, mult in lr_mult.items():
        if not isinstance(mult, (int, float)) or mult <= 0:
            raise ConfigError(f"optimizer.lr_mult.{pattern}", f"must be a number > 0, got {mult!r}")
    items = params if isinstance(params, nn.Module) else list(params)
    if not isinstance(items, nn.Module) and _is_group_list(items):
        groups = [_fill_group(dict(g), i, lr, weight_decay) for i, g in enumerate(items)]
        return [part for g in groups for part in _split_group(g, no_weight_decay_1d)]
    named, no_decay = _named(items)
    if not named:
        raise ConfigError("optimizer.params", "no trainable parameters were given")
    names = [n for n, _ in named]
    if (lr_mult or layer_decay is not None) and any(n is None for n in names):
        key = "optimizer.lr_mult" if lr_mult else "optimizer.layer_decay"
        raise ConfigError(key, "needs parameter names: pass the model or model.named_parameters()")
    optional = {p for p in lr_mult if p.startswith("?")}  # "?backbone.*": only if the model has one (presets)
    lr_mult = {p.lstrip("?"): m for p, m in lr_mult.items()}
    for pattern in lr_mult:
        if f"?{pattern}" not in optional and not any(fnmatch.fnmatchcase(n, pattern) for n in names):
            raise _no_match(f"optimizer.lr_mult.{pattern}", pattern, names)
    depth = layer_ids(names, layers) if layer_decay is not None else {}
    top = max(depth.values(), default=0)

    groups: dict[tuple[str, bool, int], dict[str, Any]] = {}
    for name, p in named:
        pattern = next((pat for pat in lr_mult if name and fnmatch.fnmatchcase(name, pat)), None)
        decay = not (no_weight_decay_1d and (p.ndim <= 1 or name in no_decay))
        layer = depth.get(name, top)
        gkey = (pattern or "default", decay, layer)
        if gkey not in groups:
            mult = (float(lr_mult[pattern]) if pattern else 1.0) * (layer_decay ** (top - layer) if depth else 1.0)
            label = gkey[0] + (f"/layer{layer}" if depth else "") + ("" if decay else "/no_decay")
            groups[gkey] = {"name": label, "params": [], "lr": lr * mult, "lr_mult": mult,
                            "weight_decay": weight_decay if decay else 0.0}
        groups[gkey]["params"].append(p)
    return list(groups.values())


def _fill_group(group: dict[str, Any], index: int, lr: float, weight_decay: float) -> dict[str, Any]:
    group["params"] = list(group["params"]) if not isinstance(group["params"], torch.Tensor) else [group["params"]]
    group.setdefault("name", f"group{index}")
    mult = group.setdefault("lr_mult", group["lr"] / lr if "lr" in group else 1.0)
    group.setdefault("lr", lr * mult)
    group.setdefault("weight_decay", weight_decay)
    return group


def _split_group(group: dict[str, Any], split: bool) -> list[dict[str, Any]]:
    """A user's group and, when it holds 1-D parameters that would be decayed, its no-decay twin."""
    flat = [p for p in group["params"] if p.ndim <= 1]
    if not (split and flat and group["weight_decay"]):
        return [group]
    keep = [p for p in group["params"] if p.ndim > 1]
    if not keep:
        return [{**group, "weight_decay": 0.0}]
    twin = {**group, "name": f"{group['name']}/no_decay", "params": flat, "weight_decay": 0.0}
    return [{**group, "params": keep}, twin]
