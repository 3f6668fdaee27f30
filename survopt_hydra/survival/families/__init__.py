"""Survival model families beyond Cox: discrete-time, DeepHit, Cox-Time and parametric AFT.

Each family is a small frozen dataclass with one interface (:class:`SurvivalFamily`, see
``base.py`` for the order a trainer calls it in): ``n_outputs``, ``fit``, ``transform``,
``forward``, ``loss``, ``fit_baseline``, ``predict``, ``survival`` / ``cif``, ``to_dict``.
``make_family(name, **options)`` builds one by name; ``family_from_dict`` reads one back
from a predictor file (plain numbers only; every value is checked).
"""
from __future__ import annotations

import dataclasses
from typing import Any

from .aft import LogNormalAFT, WeibullAFT
from .base import SurvivalFamily, select
from .cox_time import CaseControl, CoxTime
from .deephit import DeepHit
from .logistic_hazard import LogisticHazard
from .metrics import antolini_cindex, cause_specific_brier, cause_specific_cindex, integrated_cause_specific_brier
from .pmf import PMF

FAMILIES: dict[str, type[SurvivalFamily]] = {
    cls.name: cls for cls in (LogisticHazard, PMF, DeepHit, CoxTime, WeibullAFT, LogNormalAFT)
}


def make_family(name: str, /, **options: Any) -> SurvivalFamily:
    """The family ``name`` with its options (unknown names or options: one-line ValueError)."""
    if name not in FAMILIES:
        raise ValueError(f"family: unknown {name!r}; allowed: {', '.join(FAMILIES)}")
    cls = FAMILIES[name]
    allowed = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"family {name}: unknown option(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}")
    return cls(**options)


def family_from_dict(data: Any) -> SurvivalFamily:
    """Inverse of ``SurvivalFamily.to_dict``: lists become tuples, everything else is checked by the family."""
    if not isinstance(data, dict) or not isinstance(data.get("family"), str):
        raise ValueError("family: expected a mapping with a 'family' name")
    options = {k: v for k, v in data.items() if k != "family"}
    for key, value in options.items():
        if isinstance(value, list):
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
                raise ValueError(f"family {data['family']}: {key} must be a list of numbers")
            options[key] = tuple(float(v) for v in value)
        elif value is not None and not isinstance(value, (bool, int, float, str)):
            raise ValueError(f"family {data['family']}: {key} must be a number, a string or a list of numbers")
    return make_family(data["family"], **options)


__all__ = [
    "FAMILIES",
    "CaseControl",
    "CoxTime",
    "DeepHit",
    "LogNormalAFT",
    "LogisticHazard",
    "PMF",
    "SurvivalFamily",
    "WeibullAFT",
    "antolini_cindex",
    "cause_specific_brier",
    "cause_specific_cindex",
    "family_from_dict",
    "integrated_cause_specific_brier",
    "make_family",
    "select",
]
