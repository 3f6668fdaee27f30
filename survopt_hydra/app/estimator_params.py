"""The estimator's parameters: each config group of the app as one scikit-learn parameter (None, an option
name, a dict or a config dataclass), read into what :func:`.compose.compose_train` composes, and changed one
key at a time (``set_params(optimizer__lr=...)``) as a new object."""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import ConfigError
from .compose import override_key

#: The config groups the estimator takes as parameters (``distributed``: one process; presets: ``overrides``).
GROUPS = ("model", "family", "optimizer", "scheduler", "clipping", "ema", "amp", "trainer", "data")
#: ``data`` keys that name files or the test split: the estimator's rows are ``X``, its test rows the caller's.
NOT_FOR_THE_ESTIMATOR = ("path", "test_path", "test_fraction")

def _option_key(group: str) -> str | None:
    """The key naming a group's option (``name``; ``mode`` for clipping and ema, ...); None for ``trainer``."""
    from ..api.validation import NAME_FIELDS

    return NAME_FIELDS.get(group, None if group == "trainer" else "name")


def _options(group: str) -> dict[str, type]:
    """The option dataclasses of a group (the app's and the library's schemas)."""
    from ..schemas import GROUPS as LIBRARY
    from .schemas import APP_GROUPS, APP_PLATEAU

    options = dict(APP_GROUPS.get(group) or LIBRARY.get(group) or {})
    return {**options, **APP_PLATEAU.get(group, {})} if group == "scheduler" else options


def _plain(value: Any) -> Any:
    """Values OmegaConf takes: numpy scalars (a grid search's candidates) as Python numbers, tuples as lists."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(v) for v in value]
    return value


def group_values(group: str, value: Any) -> tuple[str | None, dict[str, Any]]:
    """(option to compose, values to set on it) of one group parameter; ConfigError naming the group."""
    if value is None:
        return None, {}
    if isinstance(value, (str, np.str_)):
        return str(value), {}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        option = next((name for name, cls in _options(group).items() if type(value) is cls), None)
        if option is None:
            raise ConfigError(group, f"{type(value).__name__} is not an option of this group; allowed: "
                                     + ", ".join(sorted({c.__name__ for c in _options(group).values()})))
        values = _plain(dataclasses.asdict(value))
        if group == "data":  # its file and test-split fields are the CLI's: left at their defaults, left out
            values = {k: v for k, v in values.items()
                      if k not in NOT_FOR_THE_ESTIMATOR or v != type(value).__dataclass_fields__[k].default}
        return (None if group == "trainer" else option), values
    if isinstance(value, Mapping):
        key = _option_key(group)
        values = _plain(dict(value))
        return (values.get(key) if key else None), values
    raise ConfigError(group, f"expected None, an option name, a dict or a config dataclass, got {type(value).__name__}")


def with_values(group: str, value: Any, changes: dict[str, Any]) -> Any:
    """``value`` (a group parameter) with ``changes`` to its keys, as a new object (``optimizer__lr=...``)."""
    if value is None:
        return dict(changes)
    if isinstance(value, str):
        key = _option_key(group)
        return {key: value, **changes} if key else dict(changes)  # trainer's one option has no name key
    if isinstance(value, Mapping):
        return {**value, **changes}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name for f in dataclasses.fields(value)}
        unknown = sorted(set(changes) - fields)
        if unknown:
            raise ValueError(f"Invalid parameter {group}__{unknown[0]!s} for {type(value).__name__}; its fields: "
                             + ", ".join(sorted(fields)))
        return dataclasses.replace(value, **changes)
    raise ValueError(f"cannot set {group}__... on a {type(value).__name__}")


def check_data(option: str | None, data_values: Mapping[str, Any], overrides: Any) -> None:
    """Refuse another data option and the ``data`` keys that name files or the test split: the
    estimator's data are ``X`` and ``y``, read as the ``csv`` option reads a table."""
    if option not in (None, "csv"):
        raise ConfigError("data", f"{option!r}: the estimator's data are X and y (the csv option's reading); give "
                          "its keys instead, e.g. data={'val_fraction': 0.2}")
    given = [k for k in data_values if k in NOT_FOR_THE_ESTIMATOR]
    given += [override_key(o).removeprefix("data.") for o in overrides
              if override_key(o) in {f"data.{k}" for k in NOT_FOR_THE_ESTIMATOR}]
    if given:
        raise ConfigError(f"data.{given[0]}", "the estimator trains on fit(X, y) and is scored on the rows given to "
                          "score(X, y); it reads no file and splits off no test rows (only data.val_fraction or "
                          "data.folds)")
    for o in overrides:
        if override_key(o) == "data":
            raise ConfigError("data", f"{o!r}: the estimator's data are X and y (the csv option); set its keys, "
                              "e.g. data={'val_fraction': 0.2}")
