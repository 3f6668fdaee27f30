"""In-memory tables (a pandas DataFrame, a numpy array, an Arrow table) as the loader's input.

The Python API trains on a DataFrame without writing it to a file. :func:`arrow_table` turns
it into an Arrow table that :class:`.readers.TableSource` reads by the same cell rule as a
data file, so a DataFrame is typed, one-hot encoded and checked exactly as the same
DataFrame saved with ``to_parquet`` - and as saved with ``to_csv`` for its number and text
columns (the two differ only in booleans: Parquet keeps them 0/1 numbers, a CSV spells them
``True``/``False``, a two-level category).

Conversions: a column of Python objects (pandas' ``object`` dtype: text, or mixed values)
becomes text cell by cell with ``str``, as ``to_csv`` writes it, with None/NaN/NA missing;
every other column keeps its type (numbers, nullable integers, booleans, categoricals); a
type the cell rule cannot read (dates, say) is refused later by the source, naming the
column. A numpy array's columns are named ``x0``, ``x1``, ... (scikit-learn's names for
unnamed features). pandas is never imported here: a DataFrame is recognised only once the
caller has imported pandas.
"""
from __future__ import annotations

import math
import sys
from typing import Any

import numpy as np

from .cells import DataError, arrow, strings


def is_frame(x: Any) -> bool:
    """Whether ``x`` is a pandas DataFrame (without importing pandas)."""
    pd = sys.modules.get("pandas")
    return pd is not None and isinstance(x, pd.DataFrame)


def column_names(x: Any) -> list[str]:
    """The column names ``x`` will have as a table: a DataFrame's (as text), else ``x0``, ``x1``, ..."""
    if is_frame(x):
        return [str(c) for c in x.columns]
    if _is_arrow(x):
        return list(x.column_names)
    return [f"x{j}" for j in range(_matrix(x, "X").shape[1])]


def arrow_table(x: Any, label: str = "X") -> Any:
    """``x`` (a DataFrame, a 2-D numpy array or array-like, a scipy sparse matrix, an Arrow table)
    as an Arrow table of its columns; the index of a DataFrame is not a column."""
    pa, _ = arrow()
    if _is_arrow(x):
        return x
    if is_frame(x):
        names = [str(c) for c in x.columns]
        columns = [x.iloc[:, j] for j in range(x.shape[1])]
        arrays = [_text(c.tolist()) if c.dtype == object else pa.Array.from_pandas(c) for c in columns]
        return pa.Table.from_arrays(arrays, names=names)
    m = _matrix(x, label)
    arrays = [_text(m[:, j].tolist()) if m.dtype == object else pa.array(np.ascontiguousarray(m[:, j]))
              for j in range(m.shape[1])]
    return pa.Table.from_arrays(arrays, names=column_names(m))


def column(values: Any, label: str) -> Any:
    """A 1-D sequence (a Series, a numpy array, a list) as an Arrow array, typed as :func:`arrow_table` types."""
    pa, _ = arrow()
    v = values.to_numpy() if hasattr(values, "to_numpy") and not isinstance(values, np.ndarray) else values
    v = np.asarray(v)
    if v.ndim != 1:
        raise DataError(f"{label}: expected one value per row, got an array of shape {v.shape}")
    return _text(v.tolist()) if v.dtype == object else pa.array(v)


def _is_arrow(x: Any) -> bool:
    pa = sys.modules.get("pyarrow")
    return pa is not None and isinstance(x, pa.Table)


def _matrix(x: Any, label: str) -> np.ndarray:
    if hasattr(x, "toarray") and not isinstance(x, np.ndarray):  # scipy.sparse (a ColumnTransformer's output)
        x = x.toarray()
    m = np.asarray(x)
    if m.ndim != 2:
        raise DataError(f"{label}: expected a 2-D table (rows x columns), got an array of shape {m.shape}")
    return m


def _missing(value: Any) -> bool:
    """None, a float NaN, pandas' NA/NaT: a missing cell (what ``to_csv`` writes as an empty field)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return True
    pd = sys.modules.get("pandas")
    return pd is not None and value is pd.NA or type(value).__name__ == "NaTType"


def _text(values: list[Any]) -> Any:
    """Python objects as text cells (``str``); a missing one as an empty cell, as ``to_csv`` writes it."""
    return strings(["" if _missing(v) else str(v) for v in values])
