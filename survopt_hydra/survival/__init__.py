"""Survival-analysis building blocks: Cox losses, the C-index and time-dependent metrics (with
bootstrap intervals), the Breslow baseline, data loading (one feature schema per cohort) and
models; the model families beyond Cox (``families``: Logistic-Hazard, PMF, DeepHit, Cox-Time,
Weibull and log-normal AFT) with their metrics, and a synthetic competing-risks cohort.

Kept free of any config/training logic so each piece can be tested against an
independent reference (lifelines, plain numpy) on its own.
"""

from survopt_hydra.survival.bootstrap import bootstrap_intervals, bootstrap_metrics
from survopt_hydra.survival.breslow import BreslowBaseline
from survopt_hydra.survival.competing import CompetingRisksCohort, make_competing_risks
from survopt_hydra.survival.data import DataError, Table, load_csv, resolve_path
from survopt_hydra.survival.splits import fold_indices, split_indices
from survopt_hydra.survival.standardize import Standardizer
from survopt_hydra.survival.synthetic_images import make_synthetic_images
from survopt_hydra.survival.families import (
    FAMILIES,
    SurvivalFamily,
    antolini_cindex,
    cause_specific_brier,
    cause_specific_cindex,
    family_from_dict,
    integrated_cause_specific_brier,
    make_family,
)
from survopt_hydra.survival.losses import CoxPHLoss, cox_ph_loss
from survopt_hydra.survival.metrics import ConcordanceCounts, comparable_pairs, concordance_index
from survopt_hydra.survival.schema import FeatureSchema
from survopt_hydra.survival.timedep import (
    brier_contributions,
    brier_scores,
    cumulative_dynamic_auc,
    integrated_brier_score,
    kaplan_meier,
    uno_cindex,
    uno_weights,
)
from survopt_hydra.survival.models import MLP, LinearCox, SmallCNN

__all__ = [
    "BreslowBaseline",
    "CompetingRisksCohort",
    "FAMILIES",
    "SurvivalFamily",
    "antolini_cindex",
    "cause_specific_brier",
    "cause_specific_cindex",
    "family_from_dict",
    "integrated_cause_specific_brier",
    "make_competing_risks",
    "make_family",
    "ConcordanceCounts",
    "bootstrap_intervals",
    "bootstrap_metrics",
    "brier_contributions",
    "uno_weights",
    "CoxPHLoss",
    "FeatureSchema",
    "brier_scores",
    "comparable_pairs",
    "cumulative_dynamic_auc",
    "integrated_brier_score",
    "kaplan_meier",
    "uno_cindex",
    "DataError",
    "LinearCox",
    "MLP",
    "SmallCNN",
    "Standardizer",
    "Table",
    "concordance_index",
    "cox_ph_loss",
    "fold_indices",
    "load_csv",
    "make_synthetic_images",
    "resolve_path",
    "split_indices",
]
