"""How raw CSV cells become model features: one :class:`FeatureSchema`, inferred once.

The schema is inferred from the training file (which columns are numbers, which are
categories and their levels, which constant columns are dropped), completed by the
app with the fill values of ``data.missing=impute`` fitted on the training rows, and
then used unchanged for every other file: the fixed test file, and new patients at
prediction time. So a row is encoded exactly the same way wherever it comes from, and
the schema round-trips through plain JSON (:meth:`to_dict` / :meth:`from_dict`).

Every refusal is one line naming the file, the column and the 1-based data row.
"""
from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np

log = logging.getLogger(__name__)

# Cells that mean "missing" even though they are not empty; without this, a numeric
# column with "NA" in it would silently turn into a categorical one.
MISSING_TOKENS = frozenset({"", "na", "n/a", "nan", "null"})
MISSING_LEVEL = "missing"  # the category level a missing cell gets under data.missing=impute
FLOAT32_MAX = float(np.finfo(np.float32).max)  # the training dtype: anything larger becomes inf
MISSING_POLICIES = ("refuse", "drop_rows", "impute")
UNSEEN_POLICIES = ("refuse", "zero")
ID_MIN_ROWS = 20  # a text column unique per row is refused as an identifier from this many rows on


class DataError(ValueError):
    """A problem with an input data file; the message is one line naming the file."""


def is_missing(cell: str) -> bool:
    return cell.lower() in MISSING_TOKENS


def parse_number(label: str, column: str, row: int, cell: str) -> float | None:
    """float(cell) for a non-missing cell, None when it is not a number.

    Non-finite values and values outside float32's range (they would become inf in the
    training dtype) are refused here, so no NaN/inf ever reaches a loss or metrics.json."""
    if "\x00" in cell:
        raise DataError(f"{label}: NUL byte in column {column!r} at row {row} (binary data, or a UTF-16 file?); "
                        "save the file as UTF-8 text")
    try:
        value = float(cell)
    except ValueError:
        return None
    if not math.isfinite(value):
        raise DataError(f"{label}: non-finite value {cell!r} in column {column!r} at row {row}")
    if abs(value) > FLOAT32_MAX:
        raise DataError(f"{label}: value {cell!r} in column {column!r} at row {row} overflows float32, the "
                        f"training dtype (largest magnitude {FLOAT32_MAX:.4g}); rescale the column")
    return value


def fast_numbers(cells: Sequence[str]) -> np.ndarray | None:
    """The cells as float64 when every one is a finite float32-range number, else None.

    numpy's vectorized parse for the common all-numeric column; anything else (missing,
    text, overflow) takes the cell-by-cell path, which words the refusal."""
    try:
        values = np.asarray(cells, dtype=np.float64)
    except ValueError:
        return None
    ok = values.size and np.isfinite(values).all() and np.abs(values).max() <= FLOAT32_MAX
    return values if ok else None


def count_missing(column: dict[str, list[str]], names: Sequence[str], rows: Sequence[int]) -> dict[str, list[int]]:
    """Column -> data rows of its missing cells, for the columns that have any."""
    counts = {}
    for name in names:
        if any(is_missing(cell) for cell in set(column[name])):  # a column's distinct cells are few or numbers
            counts[name] = [rows[i] for i, cell in enumerate(column[name]) if is_missing(cell)]
    return counts


def missing_summary(counts: dict[str, list[int]]) -> str:
    """'col' N (first at row R), ... for every column with missing cells."""
    return ", ".join(f"{name!r}: {len(rows)} (first at row {rows[0]})" for name, rows in counts.items() if rows)


@dataclass
class ColumnSpec:
    """One raw feature column: ``kind`` "number" or "category" (one-hot over ``levels``)."""

    name: str
    kind: str
    levels: list[str] = field(default_factory=list)
    indicator: bool = False  # impute: add a 0/1 "<name>=missing" feature (numbers only)
    fill: float | None = None  # impute: the training rows' median (numbers only)

    def feature_names(self) -> list[str]:
        if self.kind == "category":
            return [f"{self.name}={level}" for level in self.levels]
        return [self.name] + ([f"{self.name}={MISSING_LEVEL}"] if self.indicator else [])


@dataclass
class FeatureSchema:
    """Feature columns in order, with how each is encoded; plus the target columns' names."""

    duration_col: str
    event_col: str
    columns: list[ColumnSpec]
    missing: str = "refuse"
    unseen: str = "refuse"
    dropped: list[str] = field(default_factory=list)  # constant columns left out

    @property
    def feature_names(self) -> list[str]:
        return [name for col in self.columns for name in col.feature_names()]

    @property
    def categories(self) -> dict[str, list[str]]:
        return {c.name: list(c.levels) for c in self.columns if c.kind == "category"}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FeatureSchema":
        columns = [ColumnSpec(**{k: c[k] for k in ("name", "kind", "levels", "indicator", "fill")})
                   for c in data["columns"]]
        for c in columns:
            if c.kind not in ("number", "category") or not isinstance(c.name, str):
                raise ValueError(f"bad column entry {c.name!r} ({c.kind!r})")
        return cls(str(data["duration_col"]), str(data["event_col"]), columns, str(data["missing"]),
                   str(data["unseen"]), list(data.get("dropped", [])))

    # -- encoding -------------------------------------------------------------------
    def encode(self, label: str, column: dict[str, list[str]], rows: Sequence[int]) -> np.ndarray:
        """(n, p) float64 features of the cells ``column[name]`` (data rows numbered ``rows``).

        Missing numbers become NaN (filled later by :meth:`fill_missing`), missing
        categories the "missing" level under impute, else all zeros: the caller has
        already refused or dropped such rows (:func:`count_missing`). Unseen category
        levels follow ``unseen``."""
        blocks = []
        for col in self.columns:
            cells = column[col.name]
            if col.kind == "number":
                fast = fast_numbers(cells)
                values = fast if fast is not None else np.full(len(cells), np.nan)
                for i, cell in enumerate(cells if fast is None else ()):
                    if not is_missing(cell):
                        value = parse_number(label, col.name, rows[i], cell)
                        if value is None:
                            raise DataError(f"{label}: non-numeric value {cell!r} in column {col.name!r} at row "
                                            f"{rows[i]} (numeric in the training data)")
                        values[i] = value
                blocks.append(values[:, None])
                if col.indicator:
                    blocks.append(np.isnan(values)[:, None].astype(np.float64))
                continue
            index = {level: k for k, level in enumerate(col.levels)}
            onehot = np.zeros((len(cells), len(col.levels)))
            unseen: list[int] = []
            for i, cell in enumerate(cells):
                if "\x00" in cell:
                    parse_number(label, col.name, rows[i], cell)  # the NUL refusal
                key = MISSING_LEVEL if is_missing(cell) and self.missing == "impute" else cell
                if is_missing(cell) and self.missing != "impute":
                    continue  # counted above; refused or dropped by the caller
                if key in index:
                    onehot[i, index[key]] = 1.0
                else:
                    unseen.append(i)
            if unseen:
                first = unseen[0]
                what = (f"{len(unseen)} row(s) of column {col.name!r} hold levels not seen in training, first "
                        f"{column[col.name][first]!r} at row {rows[first]} (training levels: "
                        f"{', '.join(col.levels[:10])}{', ...' if len(col.levels) > 10 else ''})")
                if self.unseen == "refuse":
                    raise DataError(f"{label}: {what}; data.unseen=zero encodes them as all zeros")
                log.warning("%s: %s; encoded as all zeros (data.unseen=zero)", label, what)
            blocks.append(onehot)
        return np.concatenate(blocks, axis=1) if blocks else np.zeros((len(rows), 0))

    def fill_missing(self, x: np.ndarray) -> np.ndarray:
        """Replace NaN (missing numbers) with each column's training median, in place."""
        j = 0
        for col in self.columns:
            width = len(col.feature_names())
            if col.kind == "number" and col.fill is not None:
                x[np.isnan(x[:, j]), j] = col.fill
            j += width
        return x

    def fit_fill(self, x_train: np.ndarray, label: str) -> None:
        """data.missing=impute: each number column's median over the training rows only."""
        j = 0
        for col in self.columns:
            if col.kind == "number":
                present = x_train[:, j][~np.isnan(x_train[:, j])]
                if present.size == 0 and np.isnan(x_train[:, j]).any():
                    raise DataError(f"{label}: column {col.name!r} has no value in the training rows to impute "
                                    "from; leave it out with data.feature_cols")
                col.fill = float(np.median(present)) if present.size else None
            j += len(col.feature_names())


def _column_spec(label: str, name: str, cells: list[str], rows: Sequence[int], has_missing: bool, missing: str,
                 max_levels: int, indicator: bool) -> tuple[ColumnSpec, int]:
    """One training column's spec and its number of distinct values (see :func:`infer_schema`)."""
    fast = fast_numbers(cells) if not has_missing else None
    if fast is not None:  # every cell a finite number, checked in numpy: no per-cell Python objects
        return ColumnSpec(name, "number"), len(np.unique(fast))
    present = ([(rows[i], cell) for i, cell in enumerate(cells) if not is_missing(cell)] if has_missing
               else list(zip(rows, cells)))
    if not present:
        raise DataError(f"{label}: column {name!r} has no values (all {len(cells)} cells missing); "
                        "leave it out with data.feature_cols")
    numbers = [parse_number(label, name, row, cell) for row, cell in present]
    bad = [(row, cell) for (row, cell), value in zip(present, numbers) if value is None]
    if not bad:
        return (ColumnSpec(name, "number", indicator=indicator and has_missing and missing == "impute"),
                len(set(numbers)))
    if len(bad) * 2 <= len(present):
        row, cell = bad[0]
        raise DataError(f"{label}: column {name!r} is numeric except for {len(bad)} of {len(present)} cells, "
                        f"first {cell!r} at row {row}; fix those cells, blank them (data.missing), or leave the "
                        "column out with data.feature_cols")
    levels = sorted({cell for _, cell in present})
    if len(levels) > max_levels or (len(levels) == len(present) >= ID_MIN_ROWS):
        why = "a different value in every row" if len(levels) == len(present) else f"{len(levels)} levels"
        raise DataError(f"{label}: text column {name!r} has {why} (limit data.max_levels={max_levels}): an "
                        "identifier or free text? leave it out with data.feature_cols=[...], or raise "
                        "data.max_levels")
    if has_missing and missing == "impute" and MISSING_LEVEL not in levels:
        levels.append(MISSING_LEVEL)
    return ColumnSpec(name, "category", levels), len(levels)


def infer_schema(label: str, column: dict[str, list[str]], rows: Sequence[int], features: Sequence[str],
                 duration_col: str, event_col: str, missing: str, unseen: str, max_levels: int,
                 indicator: bool) -> FeatureSchema:
    """Type each training feature column; refuse mixed, identifier-like and empty columns.

    A column is a number when every non-missing cell parses as one; it is refused when
    most cells are numbers but some are not (a typo, not a category); otherwise it is a
    category with its sorted levels, refused above ``max_levels`` levels or when unique
    per row (an identifier or free text). Constant columns are dropped with a warning."""
    specs, dropped = [], []
    for name in features:
        cells = column[name]
        has_missing = any(is_missing(cell) for cell in set(cells))
        spec, distinct = _column_spec(label, name, cells, rows, has_missing, missing, max_levels, indicator)
        if distinct <= 1 and not (has_missing and missing == "impute"):
            dropped.append(name)
            continue
        specs.append(spec)
    if dropped:
        log.warning("%s: constant column(s) dropped (they carry no information): %s", label, ", ".join(dropped))
    if not specs:
        raise DataError(f"{label}: no feature columns left (constant columns dropped: {', '.join(dropped)})")
    return FeatureSchema(duration_col, event_col, specs, missing, unseen, dropped)
