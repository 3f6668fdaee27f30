"""Survival-analysis building blocks: Cox losses, the C-index, data loading and models.

Kept free of any config/training logic so each piece can be tested against an
independent reference (lifelines, plain numpy) on its own.
"""

from survopt_hydra.survival.data import (
    DataError,
    Standardizer,
    Table,
    load_csv,
    make_synthetic_images,
    resolve_path,
    split_indices,
)
from survopt_hydra.survival.losses import CoxPHLoss, cox_ph_loss
from survopt_hydra.survival.metrics import concordance_index
from survopt_hydra.survival.models import MLP, LinearCox, SmallCNN

__all__ = [
    "CoxPHLoss",
    "DataError",
    "LinearCox",
    "MLP",
    "SmallCNN",
    "Standardizer",
    "Table",
    "concordance_index",
    "cox_ph_loss",
    "load_csv",
    "make_synthetic_images",
    "resolve_path",
    "split_indices",
]
