"""How raw cells become model features: one :class:`FeatureSchema`, inferred once.

The schema is inferred from the training file (which columns are numbers, which are
categories and their levels, which constant columns are dropped), completed by the
app with the fill values of ``data.missing=impute`` fitted on the training rows, and
then used unchanged for every other file: the fixed test file, and new patients at
prediction time. So a row is encoded exactly the same way wherever it comes from, and
the schema round-trips through plain JSON (:meth:`to_dict` / :meth:`from_dict`).

Everything works on whole columns of parsed cells (:class:`.cells.Cells`, one batch of
rows at a time): :class:`ColumnSummary` gathers what inference needs batch by batch,
:meth:`FeatureSchema.encode_batch` encodes a batch and notes its first problem per column.
Every refusal is one line naming the file, the column and the 1-based data row.
"""
from __future__ import annotations

import logging
import mmap
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from .cells import (  # noqa: F401 (DataError, MISSING_TOKENS, FLOAT32_MAX: the schema layer's names too)
    FLOAT32_MAX, MISSING, MISSING_TOKENS, NUL, NUMBER, TEXT, Cells, DataError, arrow, cell_error, from_numpy,
    is_missing, parse, shown, strings,
)
from .readers import listing

log = logging.getLogger(__name__)

MISSING_LEVEL = "missing"  # the category level a missing cell gets under data.missing=impute
MISSING_POLICIES = ("refuse", "drop_rows", "impute")
UNSEEN_POLICIES = ("refuse", "zero")
ID_MIN_ROWS = 20  # a text column unique per row is refused as an identifier from this many rows on


def missing_summary(holes: Mapping[str, tuple[int, int]]) -> str:
    """'col': N (first at row R), ... for the columns with missing cells (the first 10, then how many more)."""
    parts = [f"{name!r}: {count} (first at row {first})" for name, (count, first) in holes.items() if count]
    return ", ".join(parts[:10]) + (f" and {len(parts) - 10} more column(s)" if len(parts) > 10 else "")


def count_missing(holes: dict[str, tuple[int, int]], cells: Mapping[str, Cells], rows: np.ndarray) -> np.ndarray:
    """Add one batch's missing cells to ``holes`` (column -> (count, first row)); returns the rows' any-missing mask."""
    any_missing = np.zeros(len(rows), dtype=bool)
    for name, c in cells.items():
        if c.plain:
            continue
        miss = c.kind == MISSING
        if miss.any():
            count, first = holes.get(name, (0, 0))
            holes[name] = (count + int(miss.sum()), first or int(rows[np.argmax(miss)]))
            any_missing |= miss
    return any_missing


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
class Problems:
    """The first refusable cell per column (row order) and the unseen category levels, over batches."""

    first: dict[str, tuple[int, str, int]] = field(default_factory=dict)  # column -> (row, cell, kind)
    unseen: dict[str, tuple[int, int, str]] = field(default_factory=dict)  # column -> (count, first row, cell)

    def note(self, name: str, cells: Cells, rows: np.ndarray, bad: np.ndarray) -> None:
        if name not in self.first and bad.any():
            i = int(np.argmax(bad))
            self.first[name] = (int(rows[i]), cells.cell(i), int(cells.kind[i]))

    def add(self, other: "Problems") -> None:
        for name, found in other.first.items():
            self.first.setdefault(name, found)
        for name, (count, row, cell) in other.unseen.items():
            before = self.unseen.get(name)
            self.unseen[name] = (count + before[0], before[1], before[2]) if before else (count, row, cell)


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
    def encode(self, label: str, column: Mapping[str, Any], rows: Sequence[int]) -> np.ndarray:
        """(n, p) float32 features of one batch of cells (``column[name]``: parsed :class:`.cells.Cells`,
        or the raw cells as a list of strings), data rows numbered ``rows``; raises its first problem.

        Missing numbers become NaN (filled later by :meth:`fill_missing`), missing
        categories the "missing" level under impute, else all zeros: the caller has
        already refused or dropped such rows (:func:`count_missing`). Unseen category
        levels follow ``unseen``."""
        cells = {c.name: column[c.name] if isinstance(column[c.name], Cells) else parse(strings(list(column[c.name])))
                 for c in self.columns}
        x, problems = self.encode_batch(cells, np.asarray(rows, dtype=np.int64))
        self.raise_problems(label, problems)
        return x

    def encode_batch(self, cells: Mapping[str, Cells], rows: np.ndarray) -> tuple[np.ndarray, Problems]:
        """(n, p) float32 features of one batch and its problems, raised later by :meth:`raise_problems`
        (a file's first problem is reported in column order, over all its batches)."""
        problems = Problems()
        x = np.zeros((len(rows), len(self.feature_names)), dtype=np.float32)
        j = 0
        for col in self.columns:
            c = cells[col.name]
            if col.kind == "number":
                if not c.plain:
                    problems.note(col.name, c, rows, c.kind >= TEXT)  # text, NUL, inf, overflow
                x[:, j] = np.where(c.kind == NUMBER, c.values, np.nan)
                if col.indicator:
                    x[:, j + 1] = c.kind == MISSING
                j += len(col.feature_names())
                continue
            if not c.plain:
                problems.note(col.name, c, rows, c.kind == NUL)
            level = self._levels(col, c)
            known = level >= 0
            x[np.flatnonzero(known), j + level[known]] = 1.0
            unseen = level == -1
            if unseen.any():
                i = int(np.argmax(unseen))
                problems.unseen[col.name] = (int(unseen.sum()), int(rows[i]), c.cell(i))
            j += len(col.levels)
        return x, problems

    def _levels(self, col: ColumnSpec, cells: Cells) -> np.ndarray:
        """Level index per cell: -1 unseen, -2 missing without impute (all zeros)."""
        c = cells.encoded()
        index = {level: k for k, level in enumerate(col.levels)}
        lut = []
        for cell in c.dictionary.to_pylist():
            if is_missing(cell):
                lut.append(index.get(MISSING_LEVEL, -1) if self.missing == "impute" else -2)
            else:
                lut.append(index.get(cell, -1))
        return np.asarray(lut or [-2], dtype=np.int64)[c.codes]

    def raise_problems(self, label: str, problems: Problems) -> None:
        """Raise the first column's problem (column order), warn about unseen levels under data.unseen=zero."""
        for col in self.columns:
            if col.name in problems.first:
                row, cell, kind = problems.first[col.name]
                raise cell_error(label, col.name, row, cell, kind, "numeric in the training data")
            if col.name in problems.unseen:
                count, row, cell = problems.unseen[col.name]
                what = (f"{count} row(s) of column {col.name!r} hold levels not seen in training, first "
                        f"{shown(cell)} at row {row} (training levels: {listing(col.levels)})")
                if self.unseen == "refuse":
                    raise DataError(f"{label}: {what}; data.unseen=zero encodes them as all zeros")
                log.warning("%s: %s; encoded as all zeros (data.unseen=zero)", label, what)

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


class Buffer:
    """A 1-D array filled batch by batch into room reserved up front, so growing never copies.

    Large ones are anonymous memory maps: a page is committed only when written (an upper bound on
    the rows costs nothing) and the whole map goes back to the system as soon as the array is
    dropped, whatever malloc's thresholds (a freed heap block would stay in the process)."""

    def __init__(self, capacity: int, dtype: Any) -> None:
        dtype, capacity = np.dtype(dtype), max(capacity, 1)
        if capacity * dtype.itemsize >= 1 << 20:
            self.data = np.frombuffer(mmap.mmap(-1, capacity * dtype.itemsize), dtype=dtype)
        else:
            self.data = np.empty(capacity, dtype=dtype)
        self.n = 0

    def add(self, values: np.ndarray) -> None:
        end = self.n + len(values)
        if end > len(self.data):  # only if the bound was wrong
            grown = np.empty(max(end, 2 * len(self.data)), dtype=self.data.dtype)
            grown[: self.n] = self.data[: self.n]
            self.data = grown
        self.data[self.n : end] = values
        self.n = end

    def view(self) -> np.ndarray:
        return self.data[: self.n]


class ColumnSummary:
    """One training feature column gathered batch by batch: what :func:`infer_schema` decides on,
    and the column itself (float32 numbers, or category codes and each batch's distinct cells), so
    no cell is kept as text beyond a category's distinct values. ``capacity``: a bound on the rows.

    A column whose first text cell comes after batches read as numbers has lost those batches'
    text; should it turn out a category, ``reread`` says to read it again (:meth:`restart`)."""

    def __init__(self, name: str, capacity: int) -> None:
        self.name, self.capacity = name, capacity
        self.cells = self.missing = self.text = 0
        self.first_refused: tuple[int, str, int] | None = None
        self.first_text: tuple[int, str] | None = None
        self.lo, self.hi = np.inf, -np.inf
        self.restart()
        self.numbers: Buffer | None = Buffer(capacity, np.float32)  # NaN where missing

    def restart(self) -> None:
        """Keep the verdict, drop what is stored, gather text from now on (a second read, or done)."""
        self.numbers, self.reread = None, False
        self.codes: Buffer | None = None  # index into the batch's distinct cells, -1 where missing
        self.coded: list[tuple[int, Any]] = []  # (first position in codes, distinct cells) per batch

    def add(self, cells: Cells, rows: np.ndarray, text_only: bool = False) -> None:
        kind = cells.kind
        if cells.plain and self.first_text is None and not text_only:  # the common batch: numbers only
            self.cells += len(kind)
            if len(kind):
                self.lo, self.hi = min(self.lo, float(cells.values.min())), max(self.hi, float(cells.values.max()))
            self.numbers.add(cells.values)
            return
        if not text_only:
            self.cells += len(kind)
            self.missing += int((kind == MISSING).sum())
            refused = kind >= NUL
            if self.first_refused is None and refused.any():
                i = int(np.argmax(refused))
                self.first_refused = (int(rows[i]), cells.cell(i), int(kind[i]))
            text = kind == TEXT
            if text.any():
                self.text += int(text.sum())
                if self.first_text is None:
                    i = int(np.argmax(text))
                    self.first_text = (int(rows[i]), cells.cell(i))
                    self.reread = bool(self.numbers.n)
                    self.numbers = None
            number = cells.values[kind == NUMBER]
            if number.size:
                self.lo, self.hi = min(self.lo, float(number.min())), max(self.hi, float(number.max()))
        if self.first_text is None:
            self.numbers.add(np.where(kind == NUMBER, cells.values, np.nan))
            return
        if self.codes is None:
            self.codes = Buffer(self.capacity, np.int32)
        c = cells.encoded()
        self.coded.append((self.codes.n, c.dictionary))
        self.codes.add(np.where(kind == MISSING, -1, c.codes))

    def _batches(self) -> Iterator[tuple[np.ndarray, Any]]:
        codes = self.codes.view() if self.codes is not None else np.zeros(0, np.int32)
        ends = [start for start, _ in self.coded[1:]] + [len(codes)]
        for (start, dictionary), end in zip(self.coded, ends):
            yield codes[start:end], dictionary

    def levels(self) -> Any:
        """The distinct present cells (a pyarrow array), from the stored batches."""
        pa, pc = arrow()
        parts = []
        for codes, dictionary in self._batches():
            used = np.zeros(len(dictionary), dtype=bool)
            used[codes[codes >= 0]] = True
            parts.append(dictionary.take(from_numpy(np.flatnonzero(used))))
        return pc.unique(pa.chunked_array(parts, pa.string())) if parts else strings([])

    def level_index(self, levels: list[str], impute: bool) -> Iterator[np.ndarray]:
        """Each stored row's index into ``levels``, batch by batch; a missing cell gets the "missing"
        level under impute, else -1 (all zeros)."""
        index = {level: k for k, level in enumerate(levels)}
        absent = index.get(MISSING_LEVEL, -1) if impute else -1
        for codes, dictionary in self._batches():  # code -1 (missing) picks the trailing entry
            yield np.array([index.get(cell, -1) for cell in dictionary.to_pylist()] + [absent], np.int64)[codes]

    def spec(self, label: str, missing: str, max_levels: int, indicator: bool) -> tuple[ColumnSpec, int]:
        """This column's spec and its number of distinct values (the rules of :func:`infer_schema`)."""
        present = self.cells - self.missing
        has_missing = self.missing > 0
        if not present:
            raise DataError(f"{label}: column {self.name!r} has no values (all {self.cells} cells missing); "
                            "leave it out with data.feature_cols")
        if self.first_refused:
            row, cell, kind = self.first_refused
            raise cell_error(label, self.name, row, cell, kind)
        if not self.text:
            return (ColumnSpec(self.name, "number", indicator=indicator and has_missing and missing == "impute"),
                    1 if self.lo == self.hi else 2)
        if self.text * 2 <= present:
            row, cell = self.first_text
            raise DataError(f"{label}: column {self.name!r} is numeric except for {self.text} of {present} cells, "
                            f"first {shown(cell)} at row {row}; fix those cells, blank them (data.missing), or leave "
                            "the column out with data.feature_cols")
        distinct = self.levels()
        if len(distinct) > max_levels or (len(distinct) == present >= ID_MIN_ROWS):
            why = "a different value in every row" if len(distinct) == present else f"{len(distinct)} levels"
            raise DataError(f"{label}: text column {self.name!r} has {why} (limit data.max_levels={max_levels}): "
                            "an identifier or free text? leave it out with data.feature_cols=[...], or raise "
                            "data.max_levels")
        levels = sorted(distinct.to_pylist())
        if has_missing and missing == "impute" and MISSING_LEVEL not in levels:
            levels.append(MISSING_LEVEL)
        return ColumnSpec(self.name, "category", levels), len(levels)


def infer_schema(label: str, summaries: Sequence[ColumnSummary], duration_col: str, event_col: str, missing: str,
                 unseen: str, max_levels: int, indicator: bool) -> FeatureSchema:
    """Type each training feature column; refuse mixed, identifier-like and empty columns.

    A column is a number when every non-missing cell parses as one; it is refused when
    most cells are numbers but some are not (a typo, not a category); otherwise it is a
    category with its sorted levels, refused above ``max_levels`` levels or when unique
    per row (an identifier or free text). Constant columns are dropped with a warning."""
    specs, dropped = [], []
    for summary in summaries:
        spec, distinct = summary.spec(label, missing, max_levels, indicator)
        if distinct <= 1 and not (summary.missing and missing == "impute"):
            dropped.append(summary.name)
            continue
        specs.append(spec)
    if dropped:
        log.warning("%s: constant column(s) dropped (they carry no information): %s", label, listing(dropped))
    if not specs:
        raise DataError(f"{label}: no feature columns left (constant columns dropped: {listing(dropped)})")
    return FeatureSchema(duration_col, event_col, specs, missing, unseen, dropped)
