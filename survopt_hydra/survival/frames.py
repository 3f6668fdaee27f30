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


def _structured(y: Any) -> bool:
    return isinstance(y, np.ndarray) and y.dtype.names is not None


def targets(y: Any, names: tuple[str, str], x: Any = None) -> tuple[Any, Any] | None:
    """(durations, events) of ``y``: a scikit-survival structured array (event field first, time second,
    any names), a DataFrame with the duration and event columns, or a (durations, events) pair. None:
    ``y`` is None and the columns are in ``x``. DataError (one line) for anything else."""
    duration_col, event_col = names
    if y is None:
        if not is_frame(x):
            raise DataError("y: none given; give a scikit-survival structured array (sksurv.util.Surv.from_arrays), "
                            f"or X as a DataFrame with the columns {duration_col!r} and {event_col!r} "
                            "(data.duration_col, data.event_col)")
        return None
    if _structured(y):
        fields = y.dtype.names
        if len(fields) != 2:
            raise DataError(f"y: a structured array with the fields {list(fields)}; expected two, the event "
                            "indicator first and the time second (scikit-survival's convention)")
        return y[fields[1]], y[fields[0]]
    if is_frame(y):
        missing = [c for c in (duration_col, event_col) if c not in y.columns]
        if missing:
            raise DataError(f"y: a DataFrame without the column {missing[0]!r}; its columns: "
                            f"{', '.join(map(str, y.columns))} (set data.duration_col and data.event_col)")
        return y[duration_col], y[event_col]
    if isinstance(y, (tuple, list)) and len(y) == 2:
        return y[0], y[1]
    raise DataError(f"y: a {type(y).__name__}; expected a scikit-survival structured array (event, time), a "
                    f"DataFrame with columns {duration_col!r} and {event_col!r}, or a (durations, events) pair")


def survival_table(x: Any, y: Any, names: tuple[str, str], label: str) -> tuple[Any, list[str]]:
    """(Arrow table of ``x`` with the duration and event columns, the feature columns' names)."""
    pair = targets(y, names, x)
    table = arrow_table(x, label)
    if pair is None:
        return table, [c for c in table.column_names if c not in names]
    features = list(table.column_names)
    for name, values, what in zip(names, pair, ("durations", "events")):
        if name in features:
            key = "duration_col" if what == "durations" else "event_col"
            raise DataError(f"{label}: X has a column {name!r}, the name data.{key} gives y's {what}; rename the "
                            f"column or set data.{key}")
        array = column(values, f"y ({what})")
        if len(array) != table.num_rows:
            raise DataError(f"{label}: X has {table.num_rows} rows but y has {len(array)}")
        table = table.append_column(name, array)
    return table, features
