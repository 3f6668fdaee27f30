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

import functools
import math
from dataclasses import dataclass
from itertools import product
from typing import Any

import numpy as np

# Cells that mean "missing" even though they are not empty; without this, a numeric
# column with "NA" in it would silently turn into a categorical one.
MISSING_TOKENS = frozenset({"", "na", "n/a", "nan", "null"})
FLOAT32_MAX = float(np.finfo(np.float32).max)  # the training dtype: anything larger becomes inf
#: What ``str.strip()`` removes (the characters with ``str.isspace()``; written out, since finding them
#: takes 0.17 s at import), for Arrow's trim. tests/test_readers.py checks it against Python's own.
WHITESPACE = ("\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
              "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000")
#: Every spelling of a missing token whose ``lower()`` is the token (tests/test_readers.py checks that
#: no other character lowers into one).
MISSING_SPELLINGS = sorted({"".join(p) for t in MISSING_TOKENS for p in product(*({c.lower(), c.upper()} for c in t))})
INSTALL_HINT = 'pip install "survopt-hydra[app]"'

# A cell's kind: what the rule made of it. The last three are refused wherever they occur (kind >= NUL);
# a number column refuses kind >= TEXT.
MISSING, NUMBER, TEXT, NUL, NONFINITE, OVERFLOW = range(6)


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


# pyarrow's own conversions (``pa.array``, ``pa.scalar``, ``Array.to_numpy``) go through its pandas
# shim, which imports pandas on first use (0.2 s and 50 MB in a fresh process): these three move
# data between numpy and Arrow through buffers instead.
_NUMPY = {"double": np.float64, "float": np.float32, "int32": np.int32, "int64": np.int64, "uint8": np.uint8}


def to_numpy(array: Any) -> np.ndarray:
    """A float, integer or boolean pyarrow array as numpy (zero-copy where it can); nulls become NaN
    (floats) or False."""
    n, offset = len(array), array.offset
    validity, data = array.buffers()[:2]
    if str(array.type) == "bool":
        out = np.unpackbits(np.frombuffer(data, np.uint8), bitorder="little")[offset : offset + n].astype(bool)
    else:
        dtype = np.dtype(_NUMPY[str(array.type)])
        out = np.frombuffer(data, dtype, count=n, offset=offset * dtype.itemsize) if n else np.zeros(0, dtype)
    if array.null_count:
        valid = np.unpackbits(np.frombuffer(validity, np.uint8), bitorder="little")[offset : offset + n] == 1
        out = np.where(valid, out, False if out.dtype == bool else np.nan)
    return out


def from_numpy(values: np.ndarray) -> Any:
    """A 1-D numpy array (int64, int32, float64) as a pyarrow array sharing its memory."""
    pa, _ = arrow()
    values = np.ascontiguousarray(values)
    kind = {np.dtype(np.int64): pa.int64(), np.dtype(np.int32): pa.int32(), np.dtype(np.float64): pa.float64()}
    return pa.Array.from_buffers(kind[values.dtype], len(values), [None, pa.py_buffer(values)])


def strings(cells: list[str]) -> Any:
    """A pyarrow string array of Python strings."""
    pa, _ = arrow()
    data = [c.encode("utf-8", "surrogatepass") for c in cells]
    offsets = np.zeros(len(data) + 1, dtype=np.int64)
    np.cumsum([len(d) for d in data], out=offsets[1:])
    kind, offsets = (pa.string(), offsets.astype(np.int32)) if offsets[-1] < 2**31 else (pa.large_string(), offsets)
    return pa.Array.from_buffers(kind, len(data), [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(data))])


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
    plain: bool = False  # every cell a number within float32's range (most columns): nothing to check

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
        where = from_numpy(np.asarray(index, dtype=np.int64))
        return Cells(self.kind[index], self.values[index], None if self.text is None else self.text.take(where),
                     None if self.raw is None else self.raw.take(where),
                     None if self.codes is None else self.codes[index], self.dictionary, self.plain)

    def slice(self, start: int, stop: int) -> "Cells":
        """Rows ``start:stop`` (views, no copy)."""
        return Cells(self.kind[start:stop], self.values[start:stop],
                     None if self.text is None else self.text.slice(start, stop - start),
                     None if self.raw is None else self.raw.slice(start, stop - start),
                     None if self.codes is None else self.codes[start:stop], self.dictionary, self.plain)

    def encoded(self) -> "Cells":
        """The same cells with ``codes``/``dictionary`` (a category column needs its distinct cells)."""
        if self.dictionary is not None:
            return self
        _, pc = arrow()
        text = self.text if self.text is not None else pc.cast(self.raw, "string")
        enc = pc.dictionary_encode(_no_nulls(text))
        return Cells(self.kind, self.values, self.text, self.raw, to_numpy(enc.indices), enc.dictionary, self.plain)


def parse(array: Any, codes: bool = False) -> Cells:
    """Read one column (a pyarrow array of text, numbers or booleans) by the cell rule, column-wise.

    ``codes``: dictionary-encode it too (text columns). A Parquet null is a missing cell, as is a NaN."""
    pa, pc = arrow()
    kind_of = array.type
    if pa.types.is_dictionary(kind_of) or pa.types.is_large_string(kind_of):
        array, kind_of = pc.cast(array, pa.string()), pa.string()
    if not pa.types.is_string(kind_of):
        return _typed(array)
    codes = codes or not _looks_numeric(array)  # a cast that fails costs as much as one that works
    if not codes and not array.null_count:
        try:  # the common column: plain numbers, no whitespace, nothing missing - one pass
            return _numbers(array, pc.cast(array, pa.float64()), np.zeros(len(array), dtype=bool))
        except pa.ArrowInvalid:
            pass
    text = _no_nulls(pc.utf8_trim(array, characters=WHITESPACE))
    missing = pc.is_in(text, value_set=_missing_set())
    miss = to_numpy(missing)
    if not codes:
        try:
            cast = pc.cast(pc.if_else(missing, pa.nulls(len(text), pa.string()), text) if miss.any() else text,
                           pa.float64())
        except pa.ArrowInvalid:  # text in the column, or a number only Python reads: cell by distinct cell
            pass
        else:
            return _numbers(text, cast, miss)
    enc = pc.dictionary_encode(text)
    table = [classify(cell) for cell in enc.dictionary.to_pylist()]
    index = to_numpy(enc.indices)
    kinds = np.array([k for k, _ in table] or [MISSING], dtype=np.uint8)
    values = np.array([v for _, v in table] or [math.nan], dtype=np.float64)
    return Cells(kinds[index], values[index], text, None, index, enc.dictionary)


def _numbers(text: Any, cast: Any, missing: np.ndarray) -> Cells:
    """Cells of a column Arrow cast whole (``missing`` cells as nulls); a NaN it read from "+nan" or
    "nan(1)" (or, unstripped, " nan") is judged by ``float()``."""
    values = to_numpy(cast)
    if not missing.any() and len(values) and np.abs(values).max() <= FLOAT32_MAX:  # no NaN, inf or overflow
        return Cells(np.full(len(values), NUMBER, dtype=np.uint8), values, text, plain=True)
    kind = _kinds(values, missing)
    odd = np.flatnonzero(np.isnan(values) & ~missing)
    if odd.size:
        values = values.copy()
        for i in odd:
            kind[i], values[i] = classify(text[int(i)].as_py().strip())
    return Cells(kind, values, text)


def _looks_numeric(text: Any, sample: int = 16) -> bool:
    """Whether the column's first cells are numbers or missing: only then is a cast worth trying
    (a guess that picks the faster path; both paths read every cell by the same rule)."""
    return all(classify(cell.strip())[0] in (NUMBER, MISSING, NONFINITE, OVERFLOW)
               for cell in text.slice(0, sample).to_pylist() if cell is not None)


def _no_nulls(text: Any) -> Any:
    """Nulls (a Parquet text column's missing cells) as empty strings, which the rule calls missing."""
    if not text.null_count:
        return text
    _, pc = arrow()
    return pc.fill_null(text, strings([""])[0])


@functools.cache
def _missing_set() -> Any:
    return strings(MISSING_SPELLINGS)


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
        values = to_numpy(pc.cast(array, pa.float64()))
    if len(values) and np.abs(values).max() <= FLOAT32_MAX:  # no null, NaN, inf or overflow
        return Cells(np.full(len(values), NUMBER, dtype=np.uint8), values, raw=array, plain=True)
    return Cells(_kinds(values, np.isnan(values)), values, raw=array)
