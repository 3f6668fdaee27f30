"""Write a synthetic survival cohort as CSV or Parquet: to try the app (and benchmark it) at any size.

    python scripts/make_cohort.py big.parquet --n 1000000        # 10^6 patients, ~1.5 s, ~90 MB
    python scripts/train.py data=csv data.path=big.parquet trainer.max_epochs=3

Columns: ``time`` and ``event`` (the app's default ``data.duration_col`` / ``data.event_col``) and
20 numeric features ``x0`` .. ``x19`` (standard normal, rounded to 4 decimals). The log-hazard is
linear in x0..x3 plus a product x4 * x5 that only a network can learn; event times are exponential
with that hazard (scale 100) and independent exponential censoring at scale 100 censors about half
of the patients. The same ``--seed`` and ``--n`` always give the same file. The format follows the
suffix (``.csv`` or ``.parquet``).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

FEATURES = 20


def cohort_columns(n: int, seed: int = 0) -> dict[str, Any]:
    """The cohort as numpy columns: ``time`` (float64), ``event`` (int8 0/1), ``x0``..``x19`` (float64)."""
    import numpy as np

    if n < 10:
        raise ValueError(f"make_cohort: n must be at least 10, got {n}")
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, FEATURES))
    risk = x[:, :4] @ np.array([0.6, -0.5, 0.4, 0.3]) + 0.3 * x[:, 4] * x[:, 5]
    event_time = rng.exponential(100.0 * np.exp(-risk))
    censor_time = rng.exponential(100.0, n)
    columns: dict[str, Any] = {"time": np.round(np.minimum(event_time, censor_time), 3) + 0.001,
                               "event": (event_time <= censor_time).astype(np.int8)}
    for j in range(FEATURES):
        columns[f"x{j}"] = np.round(x[:, j], 4)
    return columns


def write_cohort(path: str | Path, n: int, seed: int = 0) -> Path:
    """Write the cohort to ``path`` (CSV or Parquet by suffix) through pyarrow; returns the path."""
    import pyarrow as pa

    path = Path(path)
    table = pa.table(cohort_columns(n, seed))
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        pq.write_table(table, path)
    elif path.suffix == ".csv":
        import pyarrow.csv as pcsv

        pcsv.write_csv(table, path, pcsv.WriteOptions(quoting_style="none"))
    else:
        raise ValueError(f"make_cohort: {path}: the suffix must be .csv or .parquet")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", type=Path, help="output file, .csv or .parquet")
    parser.add_argument("--n", type=int, default=1_000_000, help="patients (default 10^6)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    try:
        write_cohort(args.path, args.n, args.seed)
    except ValueError as exc:
        parser.error(str(exc))
    print(f"wrote {args.path} ({args.n:,} patients)")


if __name__ == "__main__":
    main()
