"""How a raw cell is read: missing, a number, text, or a refusal - for a whole column at once.

One rule per cell, the same for every file (training, test, new patients) and format (CSV,
Parquet): a cell is stripped of whitespace (Python's ``str.strip``); it is *missing* when it
is empty or NA, N/A, NaN or null in any case; otherwise it is a *number* when Python's
``float()`` reads it, else *text*. A NUL byte, a non-finite number (``inf``) and a number
outside float32's range (the training dtype) are refusals.

:func:`parse` applies the rule to an Arrow array column-wise: Arrow trims, matches the
missing tokens and casts to float64 (its parser is correctly rounded, like ``float()``, so
the values are the same to the bit); a column that Arrow cannot cast whole (text, or a
number Python reads and Arrow does not, such as ``1_000``) is dictionary-encoded and each
*distinct* cell goes through ``float()`` once. So the cost is a few passes of C per column,
and Python work grows with the number of distinct text values, never with the rows.

pyarrow is imported lazily (it belongs to the ``app`` extra): without it reading a data
file is one line naming the install command.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import product
from typing import Any

import numpy as np

# Cells that mean "missing" even though they are not empty; without this, a numeric
# column with "NA" in it would silently turn into a categorical one.
MISSING_TOKENS = frozenset({"", "na", "n/a", "nan", "null"})
FLOAT32_MAX = float(np.finfo(np.float32).max)  # the training dtype: anything larger becomes inf
#: What ``str.strip()`` removes (``str.isspace``), for Arrow's trim: the same cells as the csv module's.
WHITESPACE = "".join(chr(c) for c in range(0x110000) if chr(c).isspace())
#: Every spelling of a missing token whose ``lower()`` is the token (tests/test_cells.py checks that
#: no other character lowers into one).
MISSING_SPELLINGS = sorted({"".join(p) for t in MISSING_TOKENS for p in product(*({c.lower(), c.upper()} for c in t))})
INSTALL_HINT = 'pip install "survopt-hydra[app]"'

# A cell's kind: what the rule made of it.
MISSING, NUMBER, TEXT, NUL, NONFINITE, OVERFLOW = range(6)
REFUSED = (NUL, NONFINITE, OVERFLOW)  # refused wherever they occur (as number or as text)


class DataError(ValueError):
    """A problem with an input data file; the message is one line naming the file."""


def arrow() -> tuple[Any, Any]:
    """(pyarrow, pyarrow.compute), or the one-line DataError naming the install command."""
    try:
        import pyarrow
        import pyarrow.compute
    except ImportError:
        raise DataError(f"reading data files needs pyarrow, which is not installed: {INSTALL_HINT}") from None
    return pyarrow, pyarrow.compute


def is_missing(cell: str) -> bool:
    return cell.lower() in MISSING_TOKENS


def classify(cell: str) -> tuple[int, float]:
    """(kind, value) of one stripped cell by the rule above: the reference the column-wise path matches."""
    if is_missing(cell):
        return MISSING, math.nan
    if "\x00" in cell:
        return NUL, math.nan
    try:
        value = float(cell)
    except ValueError:
        return TEXT, math.nan
    if not math.isfinite(value):
        return NONFINITE, value
    return (OVERFLOW if abs(value) > FLOAT32_MAX else NUMBER), value


def shown(cell: str, limit: int = 60) -> str:
    """repr of a cell for a message, cut to ``limit`` characters: one line stays short."""
    return repr(cell) if len(cell) <= limit else repr(cell[:limit]) + f"... ({len(cell)} characters)"


def cell_error(label: str, column: str, row: int, cell: str, kind: int, why: str = "") -> DataError:
    """The one-line refusal of one cell; ``why`` completes the non-numeric one ("durations must be numbers")."""
    if kind == NUL:
        return DataError(f"{label}: NUL byte in column {column!r} at row {row} (binary data, or a UTF-16 file?); "
                         "save the file as UTF-8 text")
    if kind == NONFINITE:
        return DataError(f"{label}: non-finite value {shown(cell)} in column {column!r} at row {row}")
    if kind == OVERFLOW:
        return DataError(f"{label}: value {shown(cell)} in column {column!r} at row {row} overflows float32, the "
                         f"training dtype (largest magnitude {FLOAT32_MAX:.4g}); rescale the column")
    return DataError(f"{label}: non-numeric value {shown(cell)} in column {column!r} at row {row} ({why})")


@dataclass
class Cells:
    """One column of one batch of rows, read by the rule: a kind and a float64 value per cell.

    ``values`` is NaN where the cell is missing or text. ``text`` holds the stripped cells
    (text columns), ``raw`` the typed source (Parquet numbers); ``codes``/``dictionary``
    are set when the column was dictionary-encoded (distinct cells: a category's levels)."""

    kind: np.ndarray  # uint8 per cell
    values: np.ndarray  # float64 per cell
    text: Any = None  # pyarrow StringArray, stripped
    raw: Any = None  # pyarrow numeric array (typed sources)
    codes: np.ndarray | None = None  # int32 index into ``dictionary`` per cell
    dictionary: Any = None  # pyarrow StringArray: the distinct stripped cells

    def __len__(self) -> int:
        return len(self.kind)

    def cell(self, i: int) -> str:
        """Cell ``i`` as text, for a message."""
        if self.dictionary is not None:
            return self.dictionary[int(self.codes[i])].as_py()
        if self.text is not None:
            return self.text[int(i)].as_py()
        value = self.raw[int(i)].as_py()
        return "" if value is None else str(value)

    def take(self, index: np.ndarray) -> "Cells":
        """The cells at ``index`` (row positions), e.g. the rows kept by data.missing=drop_rows."""
        pa, _ = arrow()
        where = pa.array(index)
        return Cells(self.kind[index], self.values[index], None if self.text is None else self.text.take(where),
                     None if self.raw is None else self.raw.take(where),
                     None if self.codes is None else self.codes[index], self.dictionary)

    def encoded(self) -> "Cells":
        """The same cells with ``codes``/``dictionary`` (a category column needs its distinct cells)."""
        if self.dictionary is not None:
            return self
        _, pc = arrow()
        text = self.text if self.text is not None else pc.cast(self.raw, "string")
        enc = pc.dictionary_encode(text.fill_null("") if text.null_count else text)
        return Cells(self.kind, self.values, self.text, self.raw, enc.indices.to_numpy(zero_copy_only=False),
                     enc.dictionary)


def parse(array: Any, codes: bool = False) -> Cells:
    """Read one column (a pyarrow array of text, numbers or booleans) cell by cell's rule, column-wise.

    ``codes``: dictionary-encode it too (text columns). A Parquet null is a missing cell, as is a NaN."""
    pa, pc = arrow()
    kind_of = array.type
    if pa.types.is_dictionary(kind_of) or pa.types.is_large_string(kind_of):
        array, kind_of = pc.cast(array, pa.string()), pa.string()
    if not pa.types.is_string(kind_of):
        return _typed(array)
    if not codes and not array.null_count:
        try:  # the common column: plain numbers, no whitespace, nothing missing - one pass
            return _numbers(array, pc.cast(array, pa.float64()), np.zeros(len(array), dtype=bool))
        except pa.ArrowInvalid:
            pass
    text = pc.utf8_trim(array, characters=WHITESPACE)
    if text.null_count:
        text = text.fill_null("")
    missing = pc.is_in(text, value_set=pa.array(MISSING_SPELLINGS))
    miss = missing.to_numpy(zero_copy_only=False)
    if not codes:
        try:
            cast = pc.cast(pc.if_else(missing, pa.scalar(None, pa.string()), text) if miss.any() else text,
                           pa.float64())
        except pa.ArrowInvalid:  # text in the column, or a number only Python reads: cell by distinct cell
            pass
        else:
            return _numbers(text, cast, miss)
    enc = pc.dictionary_encode(text)
    table = [classify(cell) for cell in enc.dictionary.to_pylist()]
    index = enc.indices.to_numpy(zero_copy_only=False)
    kinds = np.array([k for k, _ in table] or [MISSING], dtype=np.uint8)
    values = np.array([v for _, v in table] or [math.nan], dtype=np.float64)
    return Cells(kinds[index], values[index], text, None, index, enc.dictionary)


def _numbers(text: Any, cast: Any, missing: np.ndarray) -> Cells:
    """Cells of a column Arrow cast whole (``missing`` cells as nulls); a NaN it read from "+nan" or
    "nan(1)" (or, unstripped, " nan") is judged by ``float()``."""
    values = cast.to_numpy(zero_copy_only=False)
    kind = _kinds(values, missing)
    odd = np.flatnonzero(np.isnan(values) & ~missing)
    if odd.size:
        values = values.copy()
        for i in odd:
            kind[i], values[i] = classify(text[int(i)].as_py().strip())
    return Cells(kind, values, text)


def _kinds(values: np.ndarray, missing: np.ndarray) -> np.ndarray:
    kind = np.full(values.shape, NUMBER, dtype=np.uint8)
    with np.errstate(invalid="ignore"):
        kind[np.abs(values) > FLOAT32_MAX] = OVERFLOW
    kind[np.isinf(values)] = NONFINITE
    kind[missing] = MISSING
    return kind


def _typed(array: Any) -> Cells:
    """A typed column (Parquet integers, floats, decimals, booleans; all-null): nulls and NaN are missing."""
    pa, pc = arrow()
    if pa.types.is_null(array.type):
        values = np.full(len(array), np.nan)
    else:
        values = pc.cast(array, pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64, copy=True)
    return Cells(_kinds(values, np.isnan(values)), values, raw=array)
