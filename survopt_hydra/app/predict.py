"""``survopt-predict RUN_DIR INPUT.csv [--times 30,90,365 | --grid 0:365:13] [--id-cols ID,...] [--out OUT.csv]``.

Scores new rows with a finished run's best model (``predictor.json`` + ``best.pt``), or with an
ensemble folder (``ensemble.json``: several runs as one, :mod:`.ensemble`): one output row per
input data row with ``row`` (1-based data row of the input), the ``--id-cols`` columns copied
from the input as text, ``risk`` (the log-hazard score, higher = earlier event; a run of another
family than cox: the probability of an event by its median training event time, 1 - S(t_50 | x);
an ensemble's is the mean of its members' standardized scores) and, per requested time t, ``S(t)``
= the predicted probability of surviving beyond t (Breslow baseline of the training rows, or the
family's own curve; an ensemble's is the mean of its members' curves). A competing-risks run
(``family=deephit data.causes=K``) gives ``CIF_k(t)`` instead, the probability of an event of
cause k by t, per cause k and time t (docs/families.md).

The input (CSV, or Parquet by suffix or magic bytes) is read column-wise and streamed in
batches of at most ``--batch-size`` rows (at most 10^6), and the output written batch by batch
(memory stays bounded whatever the input's length) to a temporary file renamed into place at
the end, so a refused or interrupted run leaves no partial output. The default output is
``<input>.predictions.csv`` beside the input, or in the current directory for a ``pkg://``
input (never into an installed package); an existing output is never overwritten
unless ``--overwrite``, and a link there is never written through. At most 1,000 times
(``--times``/``--grid``). Problems are one line ``error: <file>: ...`` with exit status 2:
an ``--out`` that is a directory or lies in a missing or unwritable folder, a run dir whose
``predictor.json``/``best.pt`` is unusable (see :meth:`.predictor.Predictor.load`),
columns the model needs are absent (named), a category unseen in training
(``--unseen zero`` maps it to all zeros with a warning), missing cells when the model was
not trained with ``data.missing=impute`` (every column with its count), non-numeric or
non-finite values (column and row), an ``--id-cols`` column the input lacks or that is named
like an output column. Columns the model does not use are ignored unless named in ``--id-cols``:
none is copied by default, because the ignored columns are whatever the file holds (names, free
text, the rows' own outcomes) and the output is often shared; naming the ID columns is one flag.
"""
from __future__ import annotations

import argparse
import csv
import logging
import math
import os
import sys
from pathlib import Path
from typing import Any, Iterator, Sequence

EXIT_USAGE = 2
MAX_TIMES = 1000  # columns S(t) per output row: a survival curve, not a data dump
MAX_BATCH = 1_000_000  # rows per batch: bounded memory is the point of batches
log = logging.getLogger("survopt_hydra.predict")


def parse_times(text: str | None, grid: str | None) -> list[float]:
    """``--times 30,90,365`` or ``--grid start:stop:count`` (inclusive, evenly spaced)."""
    from ..survival.data import DataError

    if text and grid:
        raise DataError("--times and --grid: give one of them")
    try:
        if grid:
            start, stop, count = grid.split(":")
            n, first, last = int(count), float(start), float(stop)
            if n < 1:
                raise ValueError
        else:
            values = [float(v) for v in text.split(",")] if text else []
    except ValueError:
        raise DataError(f"--times/--grid: cannot parse {text or grid!r}; e.g. --times 30,90,365 or "
                        "--grid 0:365:13") from None
    if grid:
        if n > MAX_TIMES:  # before the list is built
            raise DataError(f"--grid: {n} times; at most {MAX_TIMES} (one output column each)")
        values = [first + (last - first) * k / max(n - 1, 1) for k in range(n)]
    if len(values) > MAX_TIMES:
        raise DataError(f"--times: {len(values)} times; at most {MAX_TIMES} (one output column each)")
    if any(not math.isfinite(v) or v < 0 for v in values):
        raise DataError(f"--times/--grid: times must be finite and >= 0, got {text or grid}")
    return values


def parse_id_cols(text: str | None) -> list[str]:
    """``--id-cols patient_id,site`` -> the names (spaces around each trimmed, as the reader trims headers)."""
    from ..survival.data import DataError

    names = [name.strip() for name in text.split(",")] if text is not None else []
    if any(not name for name in names):
        raise DataError(f"--id-cols: an empty name in {text!r}; give column names separated by commas")
    return names


def _batches(source, names: list[str], size: int) -> Iterator[tuple[Any, dict]]:
    """(data-row numbers, {column: parsed cells}) of at most ``size`` rows each, read column-wise and
    streamed (survival.readers): memory stays bounded by a batch whatever the input's length."""
    for rows, cells in source.batches(names):
        for start in range(0, len(rows), size):
            stop = min(start + size, len(rows))
            yield rows[start:stop], ({n: c.slice(start, stop) for n, c in cells.items()} if stop - start < len(rows)
                                     else cells)


def scored_batches(pred: Any, source: Any, label: str, batch_size: int, times: Sequence[float] = (),
                   extra: Sequence[str] = ()) -> Iterator[tuple[Any, dict, Any, Any]]:
    """(data-row numbers, {column: cells}, risks, S(t|x) at ``times`` or None) per batch of at most
    ``batch_size`` rows of a source (a data file, or a table in memory: the Python API's), for a
    :class:`.predictor.Predictor` or an :class:`.ensemble.Ensemble`; ``extra`` columns are read along.

    Missing cells, when the model was not trained with ``data.missing=impute``, are refused in one line
    naming every column with its count once the whole source is read; from the first one on, no batch is
    yielded."""
    from ..survival.data import DataError
    from ..survival.schema import count_missing, missing_summary

    holes: dict[str, tuple[int, int]] = {}
    names = pred.columns
    for rows, cells in _batches(source, [*names, *extra], batch_size):
        used = {name: cells[name] for name in names}
        if pred.missing != "impute":
            count_missing(holes, used, rows)
        if not holes:  # once a hole is found, only count the rest
            risk, surv = pred.predict(label, used, rows, times)
            yield rows, cells, risk, surv
    if holes:
        raise DataError(f"{label}: missing values in {len(holes)} column(s): {missing_summary(holes)}; the model "
                        f"was trained with data.missing={pred.missing}, so it has no values to fill them")


def _texts(cells: Any) -> list[str]:
    """A column's cells as the input's text (stripped, as the reader strips every cell)."""
    column = cells.text if cells.text is not None else cells.raw
    return ["" if value is None else str(value) for value in column.to_pylist()]


def id_columns(label: str, id_cols: Sequence[str], header: list[str], times: Sequence[float],
               curves: Sequence[str] | None = None) -> list[int]:
    """Header index of each ``--id-cols`` column; DataError (one line) for a name the input lacks, a repeated
    one, or one an output column already bears (``row``, ``risk``, ``S(t)`` or the ``curves`` columns)."""
    from ..survival.data import DataError

    curves = [f"S({t:g})" for t in times] if curves is None else list(curves)
    clash = [name for name in id_cols if name in ("row", "risk", *curves)]
    if clash or len(set(id_cols)) != len(id_cols):
        raise DataError(f"--id-cols: {clash[0]!r} is an output column's name" if clash else
                        "--id-cols: a column is named twice")
    absent = [name for name in id_cols if name not in header]
    if absent:
        raise DataError(f"--id-cols: {', '.join(map(repr, absent))} not in {label}; its columns: {', '.join(header)}")
    return [header.index(name) for name in id_cols]


def predict_file(run_dir: str | Path, input_path: str | Path, out: str | Path | None = None,
                 times: list[float] = (), batch_size: int = 4096, unseen: str | None = None,
                 overwrite: bool = False, progress: bool | None = None,
                 id_cols: Sequence[str] = (), trust: tuple[str, ...] = ()) -> tuple[Path, int]:
    """Write the predictions CSV; returns (its path, rows scored). DataError on bad input.

    ``run_dir``: a run dir or an ensemble folder (:func:`.ensemble.load_predictor`). ``id_cols``: input
    columns copied to the output as text, after ``row`` (:func:`id_columns`). ``trust``: the
    ``model._target_`` paths the user repeats (``--trust``): a file never names code to import."""
    from ..survival.data import DataError, resolve_path
    from ..survival.readers import find_columns, listing, open_source
    from .ensemble import load_predictor

    pred = load_predictor(run_dir, trust)
    if unseen is not None:
        pred.set_unseen(unseen)
    source = resolve_path(input_path, "input")
    label = str(input_path)
    target = output_path(source, str(input_path), out, overwrite)
    names = pred.columns
    table = open_source(source, label)
    index = find_columns(label, names, table.header)
    curves = pred.curve_columns(times)
    id_columns(label, id_cols, table.header, times, curves)
    ignored = [h for h in table.header if h not in index and h not in id_cols]
    if ignored:
        log.info("%s: columns not used by the model, ignored: %s (--id-cols copies any to the output)", label,
                 listing(ignored))
    fd, tmp = _open_output(target)
    done = 0
    bar = _progress(source, progress)
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(["row", *id_cols, "risk", *curves])
            extra = [name for name in id_cols if name not in index]
            for rows, cells, risk, surv in scored_batches(pred, table, label, batch_size, times, extra):
                surv = surv.T.tolist() if surv is not None else []
                ids = [_texts(cells[name]) for name in id_cols]
                # column by column: repr per value in C loops, no list per row (10^6 rows: ~2x faster)
                writer.writerows(zip(rows.tolist(), *ids, map(repr, risk.tolist()), *(map(repr, c) for c in surv)))
                done += len(rows)
                bar.update(len(rows))
        os.replace(tmp, target)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):  # a full disk, a folder that went away: one line naming the output
            raise DataError(f"{target}: cannot write ({exc.strerror or exc})") from None
        raise
    finally:
        bar.close()
    if pred.baseline_error:
        log.info("S(t) from the run's compacted baseline: within %.2g of the run's own S(t|x)", pred.baseline_error)
    return target, done


def output_path(source: Path, given_input: str, out: str | Path | None, overwrite: bool) -> Path:
    """Where the predictions go: ``out``, else ``<input>.predictions.csv`` beside the input - in the
    current directory for a ``pkg://`` input, never inside an installed package. DataError (one line)
    for a directory, a missing or unwritable folder, a link, an existing file without ``overwrite``,
    or the input itself."""
    from ..survival.data import DataError

    name = source.name.removesuffix(".csv") + ".predictions.csv"
    target = Path(out) if out else Path(name) if given_input.startswith("pkg://") else source.with_name(name)
    where = f"--out {target}" if out else str(target)
    if target.is_dir():
        raise DataError(f"{where}: is a directory; give a file name, e.g. {target / name}")
    folder = target.parent
    if not folder.is_dir():
        raise DataError(f"{where}: the folder {folder} does not exist; create it or choose another --out")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise DataError(f"{where}: the folder {folder} is not writable; choose another --out")
    if target.is_symlink():
        raise DataError(f"{where}: is a symbolic link; outputs are never written through a link")
    if target.exists() and not overwrite:
        raise DataError(f"{target}: exists; pass --overwrite to replace it, or --out another path")
    if target.resolve() == source.resolve():
        raise DataError(f"{target}: is the input file; choose another --out")
    return target


def _open_output(target: Path) -> tuple[int, Path]:
    """The temporary file the predictions go to (renamed to ``target`` at the end; mode per umask)."""
    from ..durable import open_temp
    from ..survival.data import DataError

    try:
        return open_temp(target)
    except OSError as exc:  # a read-only file system, no permission
        raise DataError(f"{target}: cannot write ({exc.strerror or exc}); choose another --out") from None




class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(path: Path, show: bool | None):
    """A tqdm bar over rows on a terminal for inputs over ~1 MB (tqdm is optional)."""
    if show is None:
        show = sys.stderr.isatty() and path.stat().st_size > 1_000_000
    if not show:
        return _NoBar()
    try:
        from tqdm import tqdm
    except ImportError:
        return _NoBar()
    return tqdm(unit="rows", desc="predict", dynamic_ncols=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="survopt-predict", description=__doc__.split("\n\n")[1])
    parser.add_argument("run_dir", help="a finished survopt-train run directory (predictor.json + best.pt), or an "
                        "ensemble folder (ensemble.json, e.g. survopt-tune's ensemble_seed0)")
    parser.add_argument("input", help="CSV or Parquet of new rows with the training feature columns (any order); for a "
                                      "run on image files, a manifest (CSV or Parquet) of new images")
    parser.add_argument("--times", help="comma-separated times for S(t), e.g. 30,90,365")
    parser.add_argument("--grid", help="start:stop:count evenly spaced times, e.g. 0:365:13")
    parser.add_argument("--out", help="output CSV (default: <input>.predictions.csv beside the input; in the current "
                        "directory for a pkg:// input)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    parser.add_argument("--unseen", choices=("refuse", "zero"), help="unseen category levels (default: as trained)")
    parser.add_argument("--id-cols", help="input columns to copy to the output as text, e.g. patient_id,site "
                        "(default: none)")
    parser.add_argument("--batch-size", type=int, default=4096, help=f"rows per batch (default 4096, at most {MAX_BATCH})")
    parser.add_argument("--trust", action="append", default=[], metavar="DOTTED.PATH",
                        help="a _target_ the run's config named (model._target_, a backbone, a transform) that may be "
                             "imported to rebuild it; fnmatch patterns allowed; repeat for several")
    parser.add_argument("--num-workers", type=int, default=0, help="image runs: DataLoader workers (default 0)")
    parser.add_argument("--allow-outside", action="store_true",
                        help="image runs: allow image paths outside the manifest's folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    from ..errors import ConfigError
    from ..survival.data import DataError

    try:
        if not 1 <= args.batch_size <= MAX_BATCH:
            raise DataError(f"--batch-size: must be in 1..{MAX_BATCH}, got {args.batch_size}")
        times = parse_times(args.times, args.grid)
        from .image_predict import image_run, predict_manifest

        if image_run(args.run_dir):  # a run on image files: the input is a manifest of new images
            if not 0 <= args.num_workers <= 64:
                raise DataError(f"--num-workers: must be in 0..64, got {args.num_workers}")
            target, n = predict_manifest(args.run_dir, args.input, args.out, times, tuple(args.trust),
                                         args.num_workers, args.allow_outside, args.overwrite)
        else:
            target, n = predict_file(args.run_dir, args.input, args.out, times, args.batch_size, args.unseen,
                                     args.overwrite, id_cols=parse_id_cols(args.id_cols), trust=tuple(args.trust))
    except (DataError, ConfigError) as exc:
        print("error: " + " ".join(str(exc).split()), file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    print(f"wrote {n} predictions to {target}")


if __name__ == "__main__":
    main()
