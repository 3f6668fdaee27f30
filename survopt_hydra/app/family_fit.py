"""A run's model family fitted to its training rows, and the network head that family needs.

Separate from :mod:`.families` (the training and scoring seam) so that the model builders in
:mod:`.components` (``load_best``, ``model_from_artifact``) can size a network's head without
importing the trainer's side. ``family=cox`` is ``None`` here: the app's Cox path, one risk per
row from a bias-free layer, exactly as before the families existed.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Mapping

from ..survival.schema import DataError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Head:
    """What the network's last layer gives: ``outputs`` per row, with or without a ``bias``, and whether
    the time is an extra input column (Cox-Time)."""

    outputs: int = 1
    bias: bool = False
    time_input: bool = False

    def input_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The network's input shape for data rows of ``shape`` (Cox-Time: one more column, the time)."""
        return (shape[0] + 1, *shape[1:]) if self.time_input else tuple(shape)


COX_HEAD = Head()


def head_of(family: Any) -> Head:
    """The head a fitted library family needs (``None``: the Cox head). Cox-Time's relative risk, like
    Cox's, ignores a constant, so it has no bias; the other families' likelihoods do not."""
    if family is None:
        return COX_HEAD
    return Head(int(family.n_outputs), bias=not family.time_input, time_input=bool(family.time_input))


def family_options(family: Mapping[str, Any], data: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """(library name, options) of the checked ``family`` settings; DeepHit's causes are ``data.causes``."""
    options = {k: v for k, v in family.items() if k != "name"}
    if family["name"] == "deephit":
        options["risks"] = int(data.get("causes", 1))
    return str(family["name"]), options


def fit_family(settings: Mapping[str, Any], cohort: Any) -> Any:
    """The fitted library family of ``settings`` (``None`` for cox) on the cohort's training rows.

    The training rows' labels go through the family's transform here, so a label the family cannot
    take (a duration of 0 for an AFT family's log time, a grid that cannot be built) is one DataError
    naming the data, found by the pre-flight before anything is written. Validation and test rows
    need the transform only for their loss: one the family cannot score (an AFT family and a duration
    of 0: a likelihood of 0) leaves that split's loss undefined (null, one warning) while its C-index
    and curves stand; with ``trainer.monitor=val_loss`` the validation rows must be scorable."""
    if settings["family"]["name"] == "cox":
        return None
    from ..survival.families import make_family

    name, options = family_options(settings["family"], settings["data"])
    label = getattr(cohort, "source", "data")
    try:
        family = make_family(name, **options).fit(cohort.train.durations, cohort.train.events)
        family.transform(cohort.train.durations, cohort.train.events)
    except ValueError as exc:
        raise DataError(f"{label}: family={name} cannot use the training rows: {exc}") from None
    for split in ("val", "test"):
        part = getattr(cohort, split)
        try:
            family.transform(part.durations, part.events)
        except ValueError as exc:
            if split == "val" and settings["trainer"].get("monitor") == "val_loss":
                raise DataError(f"{label}: family={name} cannot score the validation rows' loss "
                                f"(trainer.monitor=val_loss): {exc}") from None
            log.warning("%s: family=%s: the %s rows' loss is undefined (%s); %s_loss is null, the C-index and the "
                        "curves are not affected", label, name, split, exc, split)
    return family
