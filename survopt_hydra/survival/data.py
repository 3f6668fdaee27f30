"""Tabular survival data (CSV, Parquet, Arrow tables) read into a checked float32 matrix.

Everything that can be wrong in a user's file is reported as a one-line
:class:`DataError` naming the file, the column and the 1-based data row, so a
bad file fails before training starts instead of as a NaN loss later.

Files are read column-wise through Apache Arrow, one batch of rows at a time
(:mod:`.readers`, :mod:`.cells`): memory grows with the float32 feature matrix, not with
the cells. pyarrow comes with the ``app`` extra and is imported only to read a file.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .cells import NUMBER, TEXT, Cells, cell_error, shown
from .readers import (  # noqa: F401 (check_header, csv_rows, find_columns re-exported: the data layer's names)
    check_header, csv_rows, find_columns, open_source,
)
from .schema import (  # noqa: F401 (DataError, MISSING_TOKENS re-exported: the data layer's names)
    MISSING_POLICIES, MISSING_TOKENS, UNSEEN_POLICIES, Buffer, ColumnSpec, ColumnSummary, DataError, FeatureSchema,
    Problems, count_missing, infer_schema, missing_summary,
)

log = logging.getLogger(__name__)


@dataclass
class Table:
    """A survival cohort: features, durations and event indicators (1 = event, 0 = censored).

    ``x`` holds NaN for missing numbers under ``data.missing=impute`` until the app fills
    them with the training rows' medians (:meth:`FeatureSchema.fill_missing`)."""

    x: np.ndarray  # float32 (n, p)
    durations: np.ndarray  # float32 (n,)
    events: np.ndarray  # float32 (n,)
    feature_names: list[str]
    categories: dict[str, list[str]] = field(default_factory=dict)  # levels per one-hot column
    schema: FeatureSchema | None = None
    rows: np.ndarray | None = None  # 1-based data row numbers of the file (after data.missing=drop_rows)

    def __len__(self) -> int:
        return int(self.durations.shape[0])


def resolve_path(path: str | Path, key: str = "data.path") -> Path:
    """Turn a config path into a file path; ``pkg://<package>/<rel>`` points inside an installed package.

    The package is located with ``importlib.util.find_spec`` and never imported,
    so shipping a default data set inside e.g. lifelines costs no import time. The
    resolved file must lie inside the package (no ``..`` or symlink escapes it).
    ``key`` is the config key reported in errors.
    """
    text = str(path)
    if text.startswith("pkg://"):
        package, _, rel = text[len("pkg://") :].partition("/")
        if ".." in Path(rel).parts or rel.startswith(("/", "\\")):
            raise DataError(f"{key}: {text} leaves the package {package!r}; pkg:// paths must stay inside it")
        try:
            spec = importlib.util.find_spec(package) if package and "." not in package else None
        except (ImportError, ValueError):
            spec = None
        for root in (spec.submodule_search_locations or []) if spec else []:
            candidate = Path(root) / rel
            if rel and candidate.is_file():
                if not candidate.resolve().is_relative_to(Path(root).resolve()):
                    raise DataError(f"{key}: {text} leaves the package {package!r}; pkg:// paths must stay inside it")
                return candidate
        if spec:
            why = "no such file in the package"
        else:
            from ..errors import pip_command

            why = f"package {package!r} is not installed: {pip_command(package)}"
        raise DataError(f"{key}: file not found: {text} ({why})")
    resolved = Path(text).expanduser()
    if not resolved.is_file():
        if resolved.exists():  # a directory, a FIFO (reading would block), a device (/dev/zero never ends)
            raise DataError(f"{key}: {text} is not a regular file (a directory, FIFO or device); give a CSV or "
                            "Parquet file")
        raise DataError(f"{key}: file not found: {text}")
    return resolved


def load_csv(
    path: str | Path,
    duration_col: str,
    event_col: str,
    feature_cols: Sequence[str] | None = None,
    categories: dict[str, list[str]] | None = None,
    key: str = "data.path",
    *,
    schema: FeatureSchema | None = None,
    missing: str = "refuse",
    unseen: str = "refuse",
    max_levels: int = 50,
    indicator: bool = False,
    causes: int = 1,
) -> Table:
    """Load and validate a survival table: a CSV file, or Parquet (by suffix or magic bytes).

    Without ``schema`` (a training file) the feature columns are typed by
    :func:`~.schema.infer_schema`: numbers, categories one-hot encoded over their sorted
    levels as ``col=level``, constant columns dropped. With the training table's
    ``schema`` (a test file, new patients) its columns are looked up by name (any order)
    and encoded exactly as in training. ``categories`` (levels per categorical column,
    every other feature numeric) is the older spelling of a schema.

    Missing cells (empty, NA, N/A, NaN, null; a Parquet null or NaN) follow ``missing``:
    ``refuse`` names every affected column with its count, ``drop_rows`` drops those rows
    (one log line), ``impute`` leaves NaN for the caller's training-row medians and a
    "missing" level for categories (plus a 0/1 indicator per number column with
    ``indicator``). Rows in errors are 1-based data rows of the file (blank lines skipped).
    ``key`` is the config key reported when the file does not exist (e.g. "data.test_path").
    ``causes``: the event column holds 0 (censored) or 1 (event), or with ``causes`` K > 1 the
    code 1..K of the competing cause (``data.causes``; only DeepHit models several causes).
    The file is read once, in batches, column-wise (:mod:`.readers`); a problem is reported
    after the whole file is read, so it is the same one whichever batch it sits in.
    """
    label = str(path)
    _check_options(label, duration_col, event_col, schema, missing, unseen)
    return load_source(open_source(resolve_path(path, key), label), duration_col, event_col, feature_cols, categories,
                       schema=schema, missing=missing, unseen=unseen, max_levels=max_levels, indicator=indicator,
                       causes=causes)


def load_arrow(table: Any, duration_col: str, event_col: str, feature_cols: Sequence[str] | None = None,
               label: str = "table", *, schema: FeatureSchema | None = None, missing: str = "refuse",
               unseen: str = "refuse", max_levels: int = 50, indicator: bool = False, causes: int = 1) -> Table:
    """:func:`load_csv` for an Arrow table in memory (:func:`.frames.arrow_table` makes one of a
    DataFrame): the same typing, encoding and checks, its rows numbered from 1; ``label`` names it."""
    from .readers import TableSource

    _check_options(label, duration_col, event_col, schema, missing, unseen)
    return load_source(TableSource(table, label), duration_col, event_col, feature_cols, schema=schema,
                       missing=missing, unseen=unseen, max_levels=max_levels, indicator=indicator, causes=causes)


def _check_options(label: str, duration_col: str, event_col: str, schema: FeatureSchema | None, missing: str,
                   unseen: str) -> None:
    if duration_col == event_col:
        raise DataError(f"{label}: data.duration_col and data.event_col are both {duration_col!r}; they must name "
                        "two different columns")
    if schema is not None:
        missing, unseen = schema.missing, schema.unseen
    for name, value, allowed in (("missing", missing, MISSING_POLICIES), ("unseen", unseen, UNSEEN_POLICIES)):
        if value not in allowed:
            raise ValueError(f"load_csv: {name} must be one of {', '.join(allowed)}, got {value!r}")


def load_source(source: Any, duration_col: str, event_col: str, feature_cols: Sequence[str] | None = None,
                categories: dict[str, list[str]] | None = None, *, schema: FeatureSchema | None = None,
                missing: str = "refuse", unseen: str = "refuse", max_levels: int = 50, indicator: bool = False,
                causes: int = 1) -> Table:
    """A table from an opened source (:mod:`.readers`: a file, or an Arrow table in memory); see :func:`load_csv`."""
    label = source.label
    if schema is not None:
        missing, unseen = schema.missing, schema.unseen
    try:
        features = _features(label, source.header, duration_col, event_col, feature_cols, categories, schema)
        find_columns(label, [duration_col, event_col, *features], source.header)
    except DataError:
        source.check()  # a problem of the file itself is reported first, as it always was
        raise
    if schema is None and categories is not None:
        schema = FeatureSchema(duration_col, event_col, [
            ColumnSpec(name, "category", list(categories[name])) if name in categories else ColumnSpec(name, "number")
            for name in features], missing, unseen)
    return _Loader(label, source, duration_col, event_col, features, schema, missing, unseen, causes).run(
        max_levels, indicator)


def _release_arrow_memory() -> None:
    """Hand Arrow's freed batches back to the system: its allocator (mimalloc) keeps them otherwise, about
    60 MB after a 10^6-row file, on top of the matrices built next (peak RSS, issue 27)."""
    import sys

    pa = sys.modules.get("pyarrow")
    if pa is not None:
        pa.default_memory_pool().release_unused()


def _features(label: str, header: list[str], duration_col: str, event_col: str, feature_cols: Sequence[str] | None,
              categories: dict[str, list[str]] | None, schema: FeatureSchema | None) -> list[str]:
    if schema is not None:
        features = [c.name for c in schema.columns]
    elif feature_cols is None:
        features = [c for c in header if c not in (duration_col, event_col)]
    else:
        features = list(feature_cols)
    if not features:
        raise DataError(f"{label}: no feature columns to use")
    counts = Counter(features)
    for name in features:
        if counts[name] > 1 or name in (duration_col, event_col):
            raise DataError(f"{label}: feature column {name!r} is repeated or is the duration/event column")
    for name in (categories or {}):
        if name not in counts:
            raise DataError(f"{label}: categorical column {name!r} from the training data is not a feature")
    return features


class _Target:
    """The duration or event column, gathered batch by batch: float64 values and each check's first row."""

    def __init__(self, name: str, capacity: int, causes: int = 1) -> None:
        self.name, self.values, self.causes = name, Buffer(capacity, np.float64), causes
        self.refused: tuple[int, str, int] | None = None
        self.negative: tuple[int, str] | None = None
        self.not_binary: tuple[int, str] | None = None

    def add(self, cells: Cells, rows: np.ndarray) -> None:
        kind = cells.kind
        values = cells.values if cells.plain else np.where(kind == NUMBER, cells.values, np.nan)
        self.values.add(values)
        if self.refused is None and not cells.plain:
            found = _first(kind >= TEXT, rows, cells)  # text, NUL, inf, overflow
            self.refused = found and (*found, int(kind[np.argmax(kind >= TEXT)]))
        if self.negative is None:
            self.negative = _first(values < 0, rows, cells)
        if self.not_binary is None:
            bad = (values != 0) & (values != 1) if self.causes == 1 else \
                (values != np.floor(values)) | (values < 0) | (values > self.causes)
            self.not_binary = _first(bad & (kind == NUMBER), rows, cells)


def _first(bad: np.ndarray, rows: np.ndarray, cells: Cells) -> tuple[int, str] | None:
    """(row, cell) of the first ``bad`` cell of a batch, if any."""
    if not bad.any():
        return None
    i = int(np.argmax(bad))
    return int(rows[i]), cells.cell(i)


def _size(nbytes: int) -> str:
    return f"{nbytes / 2**30:.1f} GiB" if nbytes >= 2**30 else f"{nbytes / 2**20:.1f} MiB"


class _Loader:
    """One pass over a file's batches, then the checks in the order the loader has always made them:
    missing cells, durations and events, feature types (or the training schema's encoding).

    Memory: every column goes into room reserved for a bound on the rows (pages are committed as
    written), and an inferred table's matrix is column-major, so each column is freed as it is
    copied: the peak is about one float32 matrix plus one batch, not two matrices."""

    def __init__(self, label: str, source: Any, duration_col: str, event_col: str, features: list[str],
                 schema: FeatureSchema | None, missing: str, unseen: str, causes: int = 1) -> None:
        self.label, self.source, self.schema = label, source, schema
        self.missing, self.unseen = missing, unseen
        self.names = [duration_col, event_col, *features]
        bound = source.rows_bound()
        need, memory = bound * (4 * len(features) + 24), os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        if need > memory:  # refused before any of it is reserved (a Parquet file's row count is its own claim)
            raise DataError(f"{label}: {bound:,} rows x {len(features)} feature columns need at least "
                            f"{_size(need)} as float32, more than this machine's {_size(memory)}")
        self.times, self.flags = _Target(duration_col, bound), _Target(event_col, bound, causes)
        self.summaries = [ColumnSummary(name, bound) for name in features] if schema is None else []
        self.problems = Problems()
        self.x = None if schema is None else np.empty((bound, len(schema.feature_names)), dtype=np.float32)
        self.holes: dict[str, tuple[int, int]] = {}
        self.rows = Buffer(bound, np.int64)
        self.total = self.dropped = 0

    def refusing(self) -> bool:
        """Missing cells that will be refused: from then on only count them."""
        targets = {self.times.name, self.flags.name} & self.holes.keys()
        return bool(self.holes) and (self.missing == "refuse" or (self.missing == "impute" and bool(targets)))

    def run(self, max_levels: int, indicator: bool) -> Table:
        for rows, cells in self.source.batches(self.names):
            self.total += len(rows)
            any_missing = count_missing(self.holes, cells, rows)
            if self.refusing():
                continue
            if self.missing == "drop_rows" and any_missing.any():
                self.dropped += int(any_missing.sum())
                keep = np.flatnonzero(~any_missing)
                rows, cells = rows[keep], {name: c.take(keep) for name, c in cells.items()}
            start = self.rows.n
            self.rows.add(rows)
            self.times.add(cells[self.times.name], rows)
            self.flags.add(cells[self.flags.name], rows)
            for summary in self.summaries:
                summary.add(cells[summary.name], rows)
            if self.schema is not None:
                x, problems = self.schema.encode_batch(cells, rows)
                self.problems.add(problems)
                if start + len(rows) > len(self.x):  # only if the bound was wrong
                    self.x = np.concatenate([self.x[:start], np.empty_like(self.x)])
                self.x[start : start + len(rows)] = x
        _release_arrow_memory()  # the batches are gone: before the matrix is assembled beside the columns
        self._check_missing()
        durations, events = self._targets()
        rows = self.rows.view().copy()
        self.rows = None
        if self.schema is None:
            self._reread(rows)
            self.schema = infer_schema(self.label, self.summaries, self.times.name, self.flags.name, self.missing,
                                       self.unseen, max_levels, indicator)
            x = self._assemble(len(rows))
        else:
            self.schema.raise_problems(self.label, self.problems)
            x, self.x = self.x, None
            x.resize((len(rows), x.shape[1]), refcheck=False)  # the leading rows: shrinks in place
        return Table(x, durations.astype(np.float32), events.astype(np.float32), self.schema.feature_names,
                     self.schema.categories, self.schema, rows)

    def _check_missing(self) -> None:
        holes = {name: self.holes[name] for name in self.names if name in self.holes}  # column order
        label = self.label
        if self.refusing():
            policy = "" if self.missing == "refuse" else " (durations and events cannot be imputed)"
            raise DataError(f"{label}: missing values{policy} in {len(holes)} column(s): {missing_summary(holes)}; "
                            "allowed: data.missing=drop_rows (drop those rows) or data.missing=impute")
        if holes and self.missing == "drop_rows":
            if self.dropped == self.total:
                raise DataError(f"{label}: data.missing=drop_rows drops every row ({missing_summary(holes)})")
            log.warning("%s: data.missing=drop_rows dropped %d of %d rows (missing: %s)", label, self.dropped,
                        self.total, missing_summary(holes))
        elif holes:
            log.warning("%s: data.missing=impute fills %d missing cell(s) in %d column(s): %s", label,
                        sum(count for count, _ in holes.values()), len(holes), missing_summary(holes))

    def _targets(self) -> tuple[np.ndarray, np.ndarray]:
        """Check the duration and event columns, in the loader's order of checks."""
        label, times, flags = self.label, self.times, self.flags
        for target, why in ((times, "durations must be numbers"),
                            (flags, "events must be 0 or 1" if flags.causes == 1 else "events must be cause codes")):
            if target.refused:
                row, cell, kind = target.refused
                raise cell_error(label, target.name, row, cell, kind, why)
        if times.negative:
            row, cell = times.negative
            raise DataError(f"{label}: negative duration {shown(cell)} in column {times.name!r} at row {row}")
        if flags.not_binary:
            row, cell = flags.not_binary
            if flags.causes > 1:
                raise DataError(f"{label}: event value {shown(cell)} in column {flags.name!r} at row {row}; allowed: 0 "
                                f"(censored) or a cause 1..{flags.causes} (data.causes={flags.causes})")
            try:
                code = float(cell)
            except (TypeError, ValueError):
                code = 0.0
            hint = (" (codes of competing causes need data.causes=<K> and family=deephit)"
                    if 1 < code <= 10**6 and code == int(code) else "")
            raise DataError(f"{label}: event value {shown(cell)} in column {flags.name!r} at row {row}; allowed: 0, "
                            f"1{hint}")
        events = flags.values.view()
        if events.sum() == 0:
            raise DataError(f"{label}: no events (column {flags.name!r} is all 0); the Cox likelihood needs events")
        return times.values.view(), events

    def _reread(self, rows: np.ndarray) -> None:
        """Read again a column whose text began after batches read as numbers, if it will be a category."""
        again = [s for s in self.summaries
                 if s.reread and not s.first_refused and s.text * 2 > s.cells - s.missing]
        if not again:
            return
        kept = np.zeros(self.total + 1, dtype=bool)
        kept[rows] = True
        for summary in again:
            summary.restart()
            for batch_rows, cells in self.source.batches([summary.name]):
                keep = np.flatnonzero(kept[batch_rows])
                summary.add(cells[summary.name].take(keep), batch_rows[keep], text_only=True)

    def _assemble(self, n: int) -> np.ndarray:
        """The (n, p) float32 matrix, column-major: each stored column is freed once copied."""
        by_name = {s.name: s for s in self.summaries}
        x = np.empty((n, len(self.schema.feature_names)), dtype=np.float32, order="F")
        j = 0
        for col in self.schema.columns:
            summary = by_name.pop(col.name)
            if col.kind == "number":
                x[:, j] = summary.numbers.view()
                if col.indicator:
                    x[:, j + 1] = np.isnan(x[:, j])
            else:
                block = x[:, j : j + len(col.levels)]
                block[:] = 0.0
                start = 0
                for level in summary.level_index(col.levels, self.missing == "impute"):
                    known = np.flatnonzero(level >= 0)
                    block[start + known, level[known]] = 1.0
                    start += len(level)
            summary.restart()
            j += len(col.feature_names())
        for summary in by_name.values():  # constant columns
            summary.restart()
        return x
