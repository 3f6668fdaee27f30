"""Turn the validated ``data`` group into train/val/test tensors.

Shared by the app and the tools (baseline, LR finder, schedule plot) so every one of
them sees exactly the same split and features. The split is stratified by event and
seeded by ``data.split_seed`` alone (not ``trainer.seed``), so changing the model seed
never changes which patients are in the test set. Features are standardized with
statistics of the training rows only.
"""
from __future__ import annotations

from dataclasses import dataclass, field
import logging
from typing import Any, Mapping

import numpy as np
import torch

from ..survival.data import DataError, load_arrow, load_csv, resolve_path
from ..survival.splits import fold_indices, split_indices
from ..survival.standardize import Standardizer
from ..survival.synthetic_images import make_synthetic_images
from ..survival.metrics import comparable_pairs

log = logging.getLogger(__name__)


#: Rows per forward pass when a split is scored (the trainer's validation, the final metrics, predict):
#: one size everywhere, so a predictor scores a run's rows to the same floats as the run did.
EVAL_ROWS = 4096


@dataclass
class Split:
    """One part of a cohort as tensors: inputs, durations and events (0 = censored, 1 = event, or with
    competing risks (``data.causes`` > 1) the cause 1..K; ``events > 0`` is "had an event").

    ``rows``: under torchrun, the rows of the split this rank holds inputs for (:meth:`shard`): ``x``
    has those rows only, in that order, while durations and events stay whole (8 bytes a row, and
    every rank computes the same metrics from the gathered risks). None: ``x`` holds every row."""

    x: torch.Tensor
    durations: torch.Tensor
    events: torch.Tensor
    rows: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.durations.shape[0])

    def to(self, device: torch.device | str) -> "Split":
        rows = self.rows.to(device) if self.rows is not None else None
        return Split(self.x.to(device), self.durations.to(device), self.events.to(device), rows)

    def shard(self, rows: torch.Tensor) -> "Split":
        """The split with inputs for ``rows`` only (a copy: the whole ``x`` can be freed)."""
        return Split(self.x.index_select(0, rows.to(self.x.device)), self.durations, self.events, rows)

    def local(self) -> "Split":
        """The rows ``x`` holds as a split of their own (durations and events picked to match)."""
        if self.rows is None:
            return self
        return Split(self.x, self.durations[self.rows], self.events[self.rows])

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])


@dataclass
class Cohort:
    train: Split  # or an image_data.ImageSplit (data=images): the same interface, images read per batch
    val: Split
    test: Split
    feature_names: list[str]
    source: str
    test_source: str
    standardizer: Standardizer | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.train.input_shape

    @property
    def covariates(self) -> int:
        """Covariates the model gets beside each image (data=images with data.covariate_cols), else 0."""
        images = self.extra.get("images")
        return len(images.manifest.covariate_names) if images is not None else 0

    def to(self, device: torch.device | str) -> "Cohort":
        return Cohort(self.train.to(device), self.val.to(device), self.test.to(device), self.feature_names,
                      self.source, self.test_source, self.standardizer, self.extra)

    def sharded(self, ctx: Any, seed: int) -> "Cohort":
        """This rank's inputs only (torchrun): memory per rank falls with the world size.

        Training rows: a fixed random shard, ``DistributedSampler``'s draw for epoch 0 seeded by
        ``seed`` (``trainer.seed``), sorted; the trainer reshuffles it every epoch. Validation and test
        rows: the strided share each rank scores (:func:`~survopt_hydra.distributed.eval_indices`).
        Every shard has ``ceil(n / world)`` rows (a few repeated), as collectives need."""
        from ..distributed import eval_indices, shard_indices

        train = self.train.shard(torch.sort(shard_indices(len(self.train), 0, seed, ctx)).values)
        val, test = (s.shard(eval_indices(len(s), ctx)) for s in (self.val, self.test))
        return Cohort(train, val, test, self.feature_names, self.source, self.test_source, self.standardizer,
                      self.extra)

    def describe(self) -> str:
        def part(name: str, s: Split) -> str:
            return f"{name} {len(s)} ({int((s.events > 0).sum())} events)"

        return ", ".join([part("train", self.train), part("val", self.val), part("test", self.test)])


def _split(events: np.ndarray, fractions: tuple[float, float, float], seed: int, label: str):
    try:
        return split_indices(events, fractions, seed)
    except ValueError as exc:  # too few events for a stratified split
        raise DataError(f"{label}: {str(exc).removeprefix('split_indices: ')}") from None


def _parts(events: np.ndarray, data: Mapping[str, Any], label: str, test_in_file: bool):
    """Train/val/test row indices. The test rows are split off by ``data.split_seed`` (none when
    the test rows come from ``data.test_path``); with ``data.folds`` the other rows form K
    event-stratified folds (same seed) and fold ``data.fold`` validates, so moving the fold
    never moves a test row."""
    test = data["test_fraction"] if test_in_file else 0.0
    val = data["val_fraction"]
    tr, va, te = _split(events, (1.0 - val - test, val, test), data["split_seed"], label)
    if data.get("folds"):
        rest = np.sort(np.concatenate([tr, va]))
        try:
            folds = fold_indices(events[rest], data["folds"], data["split_seed"])
        except ValueError as exc:
            raise DataError(f"{label}: data.folds={data['folds']}: {str(exc).removeprefix('fold_indices: ')}; "
                            "lower data.folds") from None
        va = rest[folds[data["fold"]]]
        tr = rest[np.sort(np.concatenate([f for k, f in enumerate(folds) if k != data["fold"]]))]
    return tr, va, te


#: Rows gathered per block when a split's rows are copied out of the cohort's matrix.
GATHER_ROWS = 8192


def _tensors(x: np.ndarray, durations: np.ndarray, events: np.ndarray, idx: np.ndarray | None = None) -> Split:
    """The rows ``idx`` (default: all) as a Split of row-major float32 tensors. A block of rows at a time
    into the result: ``x`` may be column-major (the loader's), and a 10^6-row split gets no temporary copy."""
    as_t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731
    if idx is None:
        return Split(as_t(x), as_t(durations), as_t(events))
    rows = np.empty((len(idx), *x.shape[1:]), dtype=np.float32)
    for a in range(0, len(idx), GATHER_ROWS):
        rows[a : a + GATHER_ROWS] = x[idx[a : a + GATHER_ROWS]]
    return Split(torch.from_numpy(rows), as_t(durations[idx]), as_t(events[idx]))


#: A validation or test split ranks at least this many events over this many comparable pairs: with
#: fewer its C-index takes a handful of values (one pair: 0 or 1), so model selection picks on noise.
MIN_EVENTS_TO_RANK, MIN_PAIRS_TO_RANK = 2, 3


def check_scorable(label: str, name: str, split: Split, hint: str, rank: bool = False,
                   column: str = "durations") -> None:
    """Refuse a split whose C-index (and Cox loss) is undefined whatever the model; with ``rank`` (a
    validation or test split) also one with too few events or pairs to rank (:data:`MIN_EVENTS_TO_RANK`);
    and one whose durations have no spread (:func:`check_spread`).

    Found at load time, i.e. by the pre-flight before anything is written, not after training. The
    pairs are counted (O(n log n)) only when an O(n) bound does not already show enough of them."""
    n, e = len(split), int((split.events > 0).sum())
    if e >= MIN_EVENTS_TO_RANK and _pairs_at_least(split) >= MIN_PAIRS_TO_RANK:
        check_spread(label, name, split, column)
        return
    pairs = comparable_pairs(split.durations, split.events)
    if pairs == 0:
        raise DataError(f"{label}: the {name} split has {n} row(s) and {e} event(s) but no comparable pair (an event "
                        f"before another row's exit), so it cannot be scored; {hint}")
    if rank and (e < MIN_EVENTS_TO_RANK or pairs < MIN_PAIRS_TO_RANK):
        raise DataError(f"{label}: the {name} split has {n} row(s), {e} event(s) and {pairs} comparable pair(s): too "
                        f"few to rank (at least {MIN_EVENTS_TO_RANK} events and {MIN_PAIRS_TO_RANK} pairs; its C-index "
                        f"could take only a few values); {hint}")
    check_spread(label, name, split, column)


def _first_event(split: Split) -> tuple[np.ndarray, float]:
    """(durations as numpy, the earliest event time or inf): a masked min in numpy, 5x torch's on a CPU."""
    t = split.durations.detach().cpu().numpy()
    return t, float(np.min(t, where=split.events.detach().cpu().numpy() > 0, initial=np.inf))


def _pairs_at_least(split: Split) -> int:
    """A lower bound on the comparable pairs: the first event pairs with every row that exits after it."""
    t, first = _first_event(split)
    return int(np.count_nonzero(t > first))


def check_spread(label: str, name: str, split: Split, column: str) -> None:
    """Refuse a split in which no event comes strictly before another row's exit.

    Harrell's C also pairs an event with a row censored at the same time, so a split whose
    durations are all equal (all 0, or 1e-45) still has pairs: an event-versus-censored ranking,
    with no time in it (issue 25: "test C-index 0.66, horizons [0.0]"). Everything that makes it
    survival needs one event before another row's exit, in float32 as the model sees the times:
    Uno's C counts only such pairs, the time-dependent AUC needs cases at a horizon and controls
    still at risk after it, the Brier score a time grid inside the follow-up."""
    t, first = _first_event(split)  # float32, as the model sees them: compared exactly
    if first == np.inf or first < float(t.max()):
        return
    t, events = split.durations, split.events > 0
    low, high = float(t.min()), float(t.max())
    what = (f"all {len(split)} durations are {high:g}" if low == high else
            f"every event is at or after the last exit ({float(t[events].min()):g}, durations {low:g} to {high:g})")
    raise DataError(f"{label}: column {column!r}: the {name} split's durations have no spread in time: {what}; "
                    "survival needs an event before another row's exit (durations all 0? the wrong "
                    "data.duration_col?)")


def _check_splits(label: str, cohort: "Cohort", data: Mapping[str, Any], holdout: bool = True) -> None:
    times = "events at distinct times (all at time 0? data.duration_col and data.event_col swapped?)"
    column = data.get("duration_col", "durations")
    check_scorable(label, "training", cohort.train, f"the data needs more {times}", column=column)
    more = (f"lower data.folds (now {data['folds']})" if data.get("folds")
            else f"raise data.val_fraction (now {data['val_fraction']:g})")
    check_scorable(label, "validation", cohort.val, more + (f" or data.n (now {data['n']})" if "n" in data else ""),
                   rank=True, column=column)
    if not holdout:
        return  # the test split is the validation split
    if data.get("test_path"):
        check_scorable(str(data["test_path"]), "test", cohort.test, f"the test file needs more {times}", rank=True,
                       column=column)
    else:
        check_scorable(label, "test", cohort.test, f"raise data.test_fraction (now {data['test_fraction']:g})"
                       + (f" or data.n (now {data['n']})" if "n" in data else ""), rank=True, column=column)


def _finite(label: str, x: np.ndarray, names: list[str]) -> np.ndarray:
    """Standardized features must be finite in float32 (an extreme value can overflow the z-score).

    Column by column (a column-major matrix's columns are contiguous; no n x p mask); the row reported
    is the first bad one, and of its bad columns the first."""
    first = None
    for col in range(x.shape[1]):
        bad = ~np.isfinite(x[:, col])
        if bad.any() and (first is None or int(np.argmax(bad)) < first[0]):
            first = (int(np.argmax(bad)), col)
    if first is not None:
        row, col = first
        raise DataError(f"{label}: column {names[col]!r} at row {row + 1} is not finite in float32 after "
                        "standardization (an extreme value); rescale or clip the column")
    return x


def read_options(data: Mapping[str, Any]) -> dict[str, Any]:
    """How the ``data`` group reads a table: the columns and the missing/unseen/levels policies."""
    return {"duration_col": data["duration_col"], "event_col": data["event_col"], "feature_cols": data["feature_cols"],
            "missing": data.get("missing", "refuse"), "unseen": data.get("unseen", "refuse"),
            "max_levels": data.get("max_levels", 50), "indicator": data.get("missing_indicator", False),
            "causes": data.get("causes", 1)}


def load_table(data: Mapping[str, Any], path: str, key: str, schema: Any = None) -> Any:
    """One data file (CSV or Parquet) of the ``data`` group, typed by ``schema`` when given (the training file's)."""
    return load_csv(path, key=key, schema=schema, **read_options(data))


def load_cohort(data: Mapping[str, Any]) -> Cohort:
    """Load and split the cohort described by a validated ``data`` dict (see app.config).

    Refuses (DataError) a split that cannot be scored. ``data.missing=impute`` fills
    missing numbers with medians of the training rows only; the standardization is fitted
    on the training rows only; both live in the cohort's schema/standardizer, which the
    run's predictor artefact stores."""
    if data["name"] == "synthetic_images":
        x, durations, events = make_synthetic_images(data["n"], data["size"], data["seed"], signal=data["signal"])
        label = f"synthetic_images(n={data['n']}, size={data['size']}, seed={data['seed']}, signal={data['signal']})"
        tr, va, te = _parts(events, data, label, test_in_file=True)
        cohort = Cohort(_tensors(x, durations, events, tr), _tensors(x, durations, events, va),
                        _tensors(x, durations, events, te), ["image"], label, label)
        _check_splits(label, cohort, data)
        return cohort
    if data["name"] == "competing":
        return _competing_cohort(data)
    if data["name"] == "images":  # image files from a manifest, read per batch (app/image_data.py)
        from .image_data import ImageSet

        images = ImageSet(data)
        train, val, test = images.splits(_parts(images.events, data, images.label, test_in_file=True))
        cohort = Cohort(train, val, test, images.feature_names, images.label, images.label,  # type: ignore[arg-type]
                        images.standardizer, {"images": images})
        _check_splits(images.label, cohort, data)
        if data["verify"] == "full":
            images.verify()
        return cohort

    path = str(data["path"])
    table = load_table(data, path, "data.path")
    test_path = data.get("test_path")
    if test_path:
        if resolve_path(test_path, "data.test_path").resolve() == resolve_path(path).resolve():
            log.warning("data.test_path is the training file %s: the test rows are training rows, so the test "
                        "C-index is not a held-out figure", path)
        return _table_cohort(data, table, path, lambda schema: load_table(data, test_path, "data.test_path", schema),
                             str(test_path))
    return _table_cohort(data, table, path)


def cohort_from_table(data: Mapping[str, Any], table: Any, label: str, holdout: bool = True) -> Cohort:
    """A cohort from an Arrow table in memory (:func:`..survival.frames.arrow_table` of a DataFrame),
    read, checked, split and standardized exactly as :func:`load_cohort` does a data file with those rows.

    ``holdout=False`` (the Python API, which is scored later on rows of the caller's): no test rows
    are split off (``data.test_fraction`` is unused), and the cohort's test split is its validation
    split, so the run's end-of-run figures are validation figures."""
    rows = load_arrow(table, label=label, **read_options(data))
    return _table_cohort(data, rows, label, holdout=holdout)


def _table_cohort(data: Mapping[str, Any], table: Any, path: str, load_test: Any = None, test_path: str | None = None,
                  holdout: bool = True) -> Cohort:
    """Split, impute, standardize and check a loaded training table; ``load_test(schema)`` reads the
    fixed test table (``data.test_path``), else the test rows are split off ``table`` (if ``holdout``)."""
    tr, va, te = _parts(table.events, data, path, test_in_file=load_test is None and holdout)
    schema = table.schema
    if schema.missing == "impute":
        schema.fit_fill(table.x[tr].astype(np.float64), path)
        table.x = schema.fill_missing(table.x)
    test_table = load_test(schema) if load_test is not None else table
    if load_test is not None:
        test_table.x = schema.fill_missing(test_table.x)
    scaler = Standardizer().fit(table.x, rows=tr)
    names = list(table.feature_names)
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is what _finite reports
        # in place: the loader's matrix is ours, and the peak stays this matrix plus the splits (issue 27)
        x = _finite(path, scaler.transform(table.x, out=table.x), names)
        x_test = (_finite(str(test_path), scaler.transform(test_table.x, out=test_table.x), names)
                  if load_test is not None else x)
    train, val = _tensors(x, table.durations, table.events, tr), _tensors(x, table.durations, table.events, va)
    if load_test is not None:
        test = _tensors(x_test, test_table.durations, test_table.events)
    else:
        test = _tensors(x, table.durations, table.events, te) if holdout else val
    cohort = Cohort(train, val, test, names, path, str(test_path or path) if holdout else f"{path} (validation rows)",
                    scaler, {"schema": schema})
    del x, x_test
    table.x = test_table.x = None  # the splits hold copies: the whole matrix goes before the checks run
    _check_splits(path, cohort, data, holdout)
    return cohort


def _competing_cohort(data: Mapping[str, Any]) -> Cohort:
    """``data=competing``: the synthetic competing-risks cohort (:mod:`..survival.competing`), split and
    standardized like a table with columns x0..x{p-1}, so its predictor scores a CSV of those columns."""
    from ..survival.competing import make_competing_risks
    from ..survival.schema import ColumnSpec, FeatureSchema

    drawn = make_competing_risks(data["n"], data["seed"], data["causes"], data["features"], data["censoring"],
                                 data["shape"])
    label = (f"competing(n={data['n']}, causes={data['causes']}, features={data['features']}, "
             f"censoring={data['censoring']:g}, shape={data['shape']:g}, seed={data['seed']})")
    names = [f"x{j}" for j in range(data["features"])]
    events = drawn.events.astype(np.float32)
    tr, va, te = _parts(events, data, label, test_in_file=True)
    scaler = Standardizer().fit(drawn.x[tr])
    x = scaler.transform(drawn.x).astype(np.float32)
    schema = FeatureSchema("time", "event", [ColumnSpec(name, "number") for name in names])
    cohort = Cohort(*(_tensors(x, drawn.durations, events, idx) for idx in (tr, va, te)), names, label, label,
                    scaler, {"schema": schema, "truth": drawn})
    _check_splits(label, cohort, data)
    return cohort
