"""Range checks attached to dataclass fields, so the schema is the one source of truth.

A field declared with :func:`fld` carries its check in ``metadata``; :func:`validate`
coerces and checks a mapping of values against a schema dataclass and raises
:class:`~survopt_hydra.errors.ConfigError` naming the full key.
"""
from __future__ import annotations

import dataclasses
import math
import typing
from typing import Any, Callable, Mapping, Optional

from ..errors import ConfigError, did_you_mean

Check = Callable[[Any], Optional[str]]  # returns a description of what is allowed when bad


def fld(default: Any, check: Check | None = None, doc: str = "", allow_inf: bool = False) -> Any:
    """A dataclass field with a default (lists are copied) and an optional range check.

    ``allow_inf``: ``inf`` (or ``.inf``) is a meaningful value (a norm's order), not a typo."""
    meta = {"check": check, "doc": doc, "allow_inf": allow_inf}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def gt(lo: float) -> Check:
    return lambda v: None if v > lo else f"must be > {lo:g}"


#: float32's smallest normal number: a positive setting below it (an LR of 1e-320) is 0 or denormal
#: once it meets float32 parameters, so the run would silently train nothing.
FLOAT32_TINY = 1.1754943508222875e-38


def positive_f32(v: float) -> str | None:
    if v <= 0:
        return "must be > 0"
    return None if v >= FLOAT32_TINY else f"must be >= {FLOAT32_TINY:.4g} (smaller underflows in float32: nothing trains)"


def between(lo: float, hi: float) -> Check:
    """A bounded count: a value the machine cannot honour is refused, not attempted."""
    return lambda v: None if lo <= v <= hi else f"must be in {lo:g}..{hi:g}"


def ge(lo: float) -> Check:
    return lambda v: None if v >= lo else f"must be >= {lo:g}"


def open_unit(v: float) -> str | None:
    return None if 0.0 < v < 1.0 else "must be in the open interval (0, 1)"


def unit_closed_open(v: float) -> str | None:
    return None if 0.0 <= v < 1.0 else "must be in [0, 1)"


def one_of(*allowed: str) -> Check:
    def check(v: Any) -> str | None:
        if v in allowed:
            return None
        return f"'{v}' is not allowed{did_you_mean(v, allowed)}; allowed: {', '.join(allowed)}"

    return check


def betas(v: Any) -> str | None:
    if len(v) != 2 or not all(0.0 <= b < 1.0 for b in v):
        return "must be two values, each in [0, 1)"
    return None


def optional(check: Check) -> Check:
    return lambda v: None if v is None else check(v)


def each(check: Check) -> Check:
    def run(values: Any) -> str | None:
        for v in values:
            msg = check(v)
            if msg:
                return f"every value {msg}"
        return None

    return run


def each_value(check: Check) -> Check:
    """``check`` on every value of a mapping, naming the key that fails."""
    def run(mapping: Any) -> str | None:
        for k, v in mapping.items():
            msg = check(v)
            if msg:
                return f"{k} {msg}"
        return None

    return run


#: How +infinity is written where a field allows it: Python/YAML spellings, as a number or as text
#: (Hydra hands ``norm_type=.inf`` from the command line over as the string ``'.inf'``).
INF_SPELLINGS = ("inf", ".inf", "+inf", "+.inf", "infinity", "+infinity")


def coerce(key: str, value: Any, tp: Any, allow_inf: bool = False) -> Any:
    """Coerce YAML/CLI values to the schema's type (``'1e-4'`` -> 1e-4), or refuse."""
    if tp is Any:
        return value
    origin = typing.get_origin(tp)
    if origin is typing.Union:  # Optional[X]
        if value is None:
            return None
        inner = [a for a in typing.get_args(tp) if a is not type(None)][0]
        return coerce(key, value, inner, allow_inf)
    if value is None:
        raise ConfigError(key, "must not be null")
    if origin in (list, tuple) or tp in (list, tuple):
        if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
            raise ConfigError(key, f"must be a list, got {value!r}")
        args = typing.get_args(tp)
        return [coerce(f"{key}[{i}]", v, args[0] if args else Any) for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(key, f"must be a mapping, got {value!r}")
        kt, vt = (typing.get_args(tp) or (Any, Any))
        return {str(k): coerce(f"{key}.{k}", v, vt) for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ConfigError(key, f"must be true or false, got {value!r}")
    if tp in (int, float):
        if isinstance(value, bool):
            raise ConfigError(key, f"must be a number, got {value!r}")
        if allow_inf and isinstance(value, str) and value.strip().lower() in INF_SPELLINGS:
            return math.inf
        try:
            num = float(value)
        except (TypeError, ValueError):
            raise ConfigError(key, f"must be {'an integer' if tp is int else 'a number'}, got {value!r}") from None
        if not math.isfinite(num) and not (allow_inf and num == math.inf):
            raise ConfigError(key, f"must be a finite number, got {value!r}")
        if tp is int:
            if num != int(num):
                raise ConfigError(key, f"must be an integer, got {value!r}")
            return int(num)
        return num
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(key, f"must be a string, got {value!r}")
        return value
    return value


def schema_fields(schema: type) -> dict[str, dataclasses.Field]:
    """Public fields of a schema dataclass (``_target_`` and friends excluded)."""
    return {f.name: f for f in dataclasses.fields(schema) if not f.name.startswith("_")}


def validate(schema: type, values: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """Fill defaults, coerce types and check ranges; unknown keys are refused.

    Returns a plain dict with one entry per public schema field.
    """
    fields = schema_fields(schema)
    hints = typing.get_type_hints(schema)
    for k in values:
        if k not in fields and not str(k).startswith("_"):
            raise ConfigError(
                f"{prefix}.{k}",
                f"unknown key{did_you_mean(k, fields)}; allowed: {', '.join(fields)}",
            )
    out: dict[str, Any] = {}
    defaults = schema()
    for name, f in fields.items():
        key = f"{prefix}.{name}"
        raw = values[name] if name in values else getattr(defaults, name)
        if hasattr(raw, "_content") or type(raw).__name__ in ("ListConfig", "DictConfig"):
            from omegaconf import OmegaConf  # only when handed OmegaConf nodes

            raw = OmegaConf.to_container(raw, resolve=True)
        value = coerce(key, raw, hints[name], f.metadata.get("allow_inf", False))
        check = f.metadata.get("check")
        if check is not None and value is not None:
            msg = check(value)
            if msg:
                raise ConfigError(key, f"{msg}, got {value!r}")
        out[name] = value
    return out


def plain_values(node: Any) -> dict[str, Any]:
    """A group node (OmegaConf or mapping) as a plain dict without ``_target_``-style keys."""
    if hasattr(node, "_metadata"):
        from omegaconf import OmegaConf

        node = OmegaConf.to_container(node, resolve=True)
    return {k: v for k, v in dict(node).items() if not str(k).startswith("_")}
