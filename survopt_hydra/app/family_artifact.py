"""A family run's predictor file (format /3): what is checked before a family is rebuilt from it, and how its
curves are named and computed for ``survopt-predict`` (tables and image manifests alike)."""
from __future__ import annotations

import math
from typing import Any, Sequence

import torch

MAX_FAMILY_TIMES = 200_000


def curve_columns(causes: int, times: Sequence[float]) -> list[str]:
    """``S(t)`` per time for one cause, else ``CIF_k(t)`` per cause k then time."""
    if causes == 1:
        return [f"S({t:g})" for t in times]
    return [f"CIF_{k}({t:g})" for k in range(1, causes + 1) for t in times]


def family_predictions(family: Any, out: torch.Tensor, t50: float, times: Sequence[float]
                       ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(1 - S(t50 | x), the curves at ``times`` as :func:`curve_columns` names them) from a family's outputs."""
    risk = 1.0 - family.survival(out, [t50])[:, 0]
    if not times:
        return risk, None
    if family.n_risks == 1:
        return risk, family.survival(out, list(times))
    return risk, family.cif(out, list(times)).reshape(out.shape[0], -1)


def checked_family(art: dict[str, Any]) -> tuple[Any, float]:
    """(the fitted library family, its risk time) of a format-/3 predictor file; ValueError (one line) for
    anything a run could not have written: options outside the app's schema (``family`` group), fitted
    state the family refuses (:func:`..survival.families.family_from_dict` checks every value), a family
    that was never fitted, causes that disagree, a Cox-Time baseline over :data:`MAX_FAMILY_TIMES` times."""
    from ..errors import ConfigError
    from ..survival.families import FAMILIES, family_from_dict
    from .schemas import FAMILIES as APP_FAMILIES, MAX_CAUSES, check_group

    data = art["family"]
    if not isinstance(data, dict) or data.get("family") not in FAMILIES or data.get("family") not in APP_FAMILIES:
        raise ValueError(f"family: {str(data.get('family') if isinstance(data, dict) else data)[:60]!r} is not a "
                         f"family; allowed: {', '.join(FAMILIES)}")
    name = data["family"]
    try:
        check_group("family", {"name": name, **{k: v for k, v in data.items()
                                                if k in APP_FAMILIES[name].__dataclass_fields__ and k != "name"}})
    except ConfigError as exc:
        raise ValueError(str(exc)) from None
    causes, risks = art.get("causes"), data.get("risks", 1)
    if type(causes) is not int or type(risks) is not int or causes != risks or not 1 <= causes <= MAX_CAUSES:
        raise ValueError(f"causes: {causes!r} must be the family's risks ({risks!r}), 1..{MAX_CAUSES}")
    times = data.get("base_times")
    if isinstance(times, list) and len(times) > MAX_FAMILY_TIMES:
        raise ValueError(f"family.base_times: {len(times)} times; a predictor file holds at most {MAX_FAMILY_TIMES}")
    family = family_from_dict(data)
    unfitted = [k for k in ("cuts", "log_loc", "log_scale", "time_loc", "time_scale", "base_times")
                if k in data and data[k] is None]
    if unfitted:
        raise ValueError(f"family.{unfitted[0]}: the family was never fitted (null)")
    t50 = art["risk_time"]
    if type(t50) not in (int, float) or not math.isfinite(t50) or t50 < 0:
        raise ValueError(f"risk_time: {t50!r} is not a finite time >= 0")
    return family, float(t50)
