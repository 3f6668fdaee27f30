"""Schemas of the app's ``family`` group: what the network's outputs mean, its loss, its survival curve
(docs/families.md). Rendered to ``train_conf/family/<option>.yaml`` with the other app groups
(:mod:`.schemas`); the defaults equal the library's (survival/families; tests/test_app_families.py
keeps them equal)."""
from __future__ import annotations

from dataclasses import dataclass

from ..schemas.checks import between, fld, ge, one_of


@dataclass
class FamilyConfig:
    """Cox proportional hazards: one risk per row, partial likelihood (trainer.ties), Breslow baseline."""

    name: str = "cox"


@dataclass
class GridFamilyConfig(FamilyConfig):
    n_cuts: int = fld(20, between(2, 1000), "time-grid cut points, the first at 0 (one network output each)")
    scheme: str = fld("quantiles", one_of("quantiles", "equidistant"), "quantiles: equal steps of the training "
                      "Kaplan-Meier curve; equidistant: equal times")
    interpolation: str = fld("const_pdf", one_of("const_pdf", "const_hazard", "step"), "S(t) between cuts: linear, "
                             "log-linear or a step")


@dataclass
class LogisticHazardFamilyConfig(GridFamilyConfig):
    """Logistic-Hazard (nnet-survival): a discrete hazard per grid interval."""

    name: str = "logistic_hazard"


@dataclass
class PMFFamilyConfig(GridFamilyConfig):
    """PMF: a probability mass per grid time (Kvamme & Borgan)."""

    name: str = "pmf"


@dataclass
class DeepHitFamilyConfig(GridFamilyConfig):
    """DeepHit: joint PMF over (cause, grid time) with a ranking loss; data.causes competing causes."""

    name: str = "deephit"
    alpha: float = fld(1.0, ge(0), "weight of the ranking loss (loss = likelihood + alpha x ranking / n^2)")
    sigma: float = fld(0.1, ge(0.02), "scale of the ranking loss's exp(-diff / sigma)")


@dataclass
class CoxTimeFamilyConfig(FamilyConfig):
    """Cox-Time: a relative risk g(t, x) that changes with time; the time is an input column (tables only)."""

    name: str = "cox_time"
    n_control: int = fld(1, between(1, 100), "controls sampled per event from the batch's risk set")
    log_time: bool = fld(False, doc="standardise log1p(t) instead of t as the network's time input")


@dataclass
class WeibullAFTFamilyConfig(FamilyConfig):
    """Weibull accelerated failure time: location and scale per row, censored likelihood (durations > 0)."""

    name: str = "weibull_aft"


@dataclass
class LogNormalAFTFamilyConfig(FamilyConfig):
    """Log-normal accelerated failure time: location and scale per row, censored likelihood (durations > 0)."""

    name: str = "lognormal_aft"


FAMILIES: dict[str, type] = {"cox": FamilyConfig, "logistic_hazard": LogisticHazardFamilyConfig,
                              "pmf": PMFFamilyConfig, "deephit": DeepHitFamilyConfig, "cox_time": CoxTimeFamilyConfig,
                              "weibull_aft": WeibullAFTFamilyConfig, "lognormal_aft": LogNormalAFTFamilyConfig}
