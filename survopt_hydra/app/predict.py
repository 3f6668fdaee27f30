"""``survopt-predict RUN_DIR INPUT.csv [--times 30,90,365 | --grid 0:365:13] [--out OUT.csv]``.

Scores new rows with a finished run's best model (``predictor.json`` + ``best.pt``): one
output row per input data row with ``row`` (1-based data row of the input), ``risk`` (the
log-hazard score, higher = earlier event) and, per requested time t, ``S(t)`` = the
predicted probability of surviving beyond t (Breslow baseline of the training rows).

The input is read in batches (``--batch-size`` rows; memory stays bounded on large files)
and the output written to a temporary file renamed into place at the end, so a refused
or interrupted run leaves no partial output. The default output is
``<input>.predictions.csv`` beside the input; an existing output is never overwritten
unless ``--overwrite``. Problems are one line ``error: <file>: ...`` with exit status 2:
columns the model needs are absent (named), a category unseen in training
(``--unseen zero`` maps it to all zeros with a warning), missing cells when the model was
not trained with ``data.missing=impute`` (every column with its count), non-numeric or
non-finite values (column and row). Columns the model does not use are ignored.
"""
from __future__ import annotations

import argparse
import csv
import logging
import math
import os
import sys
import tempfile
from pathlib import Path
from typing import Iterator

EXIT_USAGE = 2
log = logging.getLogger("survopt_hydra.predict")


def parse_times(text: str | None, grid: str | None) -> list[float]:
    """``--times 30,90,365`` or ``--grid start:stop:count`` (inclusive, evenly spaced)."""
    from ..survival.data import DataError

    if text and grid:
        raise DataError("--times and --grid: give one of them")
    try:
        if grid:
            start, stop, count = grid.split(":")
            n = int(count)
            if n < 1:
                raise ValueError
            values = [float(start) + (float(stop) - float(start)) * k / max(n - 1, 1) for k in range(n)]
        else:
            values = [float(v) for v in text.split(",")] if text else []
    except ValueError:
        raise DataError(f"--times/--grid: cannot parse {text or grid!r}; e.g. --times 30,90,365 or "
                        "--grid 0:365:13") from None
    if any(not math.isfinite(v) or v < 0 for v in values):
        raise DataError(f"--times/--grid: times must be finite and >= 0, got {text or grid}")
    return values


def _batches(path: Path, label: str, size: int) -> Iterator[tuple[list[str], list[tuple[int, list[str]]]]]:
    from ..survival.data import check_header, check_width, csv_rows

    it = csv_rows(path, label)
    header = check_header(label, next(it, (0, None))[1])
    batch, number = [], 0
    for line, row in it:
        if not any(row):
            continue
        number += 1
        check_width(label, header, number, line, row)
        batch.append((number, row))
        if len(batch) == size:
            yield header, batch
            batch = []
    if batch or number == 0:
        yield header, batch


def predict_file(run_dir: str | Path, input_path: str | Path, out: str | Path | None = None,
                 times: list[float] = (), batch_size: int = 4096, unseen: str | None = None,
                 overwrite: bool = False, progress: bool | None = None, trust: tuple[str, ...] = ()) -> tuple[Path, int]:
    """Write the predictions CSV; returns (its path, rows scored). DataError on bad input."""
    from ..survival.data import DataError, find_columns, resolve_path
    from ..survival.schema import count_missing, missing_summary
    from .predictor import Predictor

    pred = Predictor.load(run_dir, trust)
    if unseen is not None:
        pred.schema.unseen = unseen
    source = resolve_path(input_path, "input")
    label = str(input_path)
    target = Path(out) if out else source.with_name(source.name.removesuffix(".csv") + ".predictions.csv")
    if target.exists() and not overwrite:
        raise DataError(f"{target}: exists; pass --overwrite to replace it, or --out another path")
    if target.resolve() == source.resolve():
        raise DataError(f"{target}: is the input file; choose another --out")
    names = [c.name for c in pred.schema.columns]
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    holes: dict[str, list[int]] = {}
    done = 0
    bar = _progress(source, progress)
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(["row", "risk", *(f"S({t:g})" for t in times)])
            for header, batch in _batches(source, label, batch_size):
                if not batch:
                    raise DataError(f"{label}: no data rows after the header")
                if done == 0:
                    index = find_columns(label, names, header)
                    ignored = [h for h in header if h not in index]
                    if ignored:
                        log.info("%s: columns not used by the model, ignored: %s", label, ", ".join(ignored))
                rows = [n for n, _ in batch]
                column = {name: [cells[i] for _, cells in batch] for name, i in index.items()}
                if pred.schema.missing != "impute":
                    for name, found in count_missing(column, names, rows).items():
                        holes.setdefault(name, []).extend(found)
                if not holes:  # once a hole is found, only count the rest
                    risk = pred.risk(pred.features(label, column, rows))
                    surv = pred.baseline.survival(risk, times).tolist() if times else [[] for _ in rows]
                    writer.writerows([n, repr(float(r)), *map(repr, s)] for n, r, s in zip(rows, risk.tolist(), surv))
                done += len(batch)
                bar.update(len(batch))
        if holes:
            raise DataError(f"{label}: missing values in {len(holes)} column(s): {missing_summary(holes)}; the model "
                            f"was trained with data.missing={pred.schema.missing}, so it has no values to fill them")
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        bar.close()
    return target, done


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
    parser.add_argument("run_dir", help="a finished survopt-train run directory (predictor.json + best.pt)")
    parser.add_argument("input", help="CSV of new rows with the training feature columns (any order); for a run on "
                                      "image files, a manifest (CSV or Parquet) of new images")
    parser.add_argument("--times", help="comma-separated times for S(t), e.g. 30,90,365")
    parser.add_argument("--grid", help="start:stop:count evenly spaced times, e.g. 0:365:13")
    parser.add_argument("--out", help="output CSV (default: <input>.predictions.csv beside the input)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    parser.add_argument("--unseen", choices=("refuse", "zero"), help="unseen category levels (default: as trained)")
    parser.add_argument("--batch-size", type=int, default=4096, help="rows per batch (default 4096)")
    parser.add_argument("--trust", action="append", default=[], metavar="DOTTED.PATH",
                        help="a _target_ the run's config named (model._target_, a backbone, a transform) that may be "
                             "imported to rebuild it; fnmatch patterns allowed; repeat for several")
    parser.add_argument("--num-workers", type=int, default=0, help="image runs: DataLoader workers (default 0)")
    parser.add_argument("--allow-outside", action="store_true",
                        help="image runs: allow image paths outside the manifest's folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    from ..survival.data import DataError

    try:
        if args.batch_size < 1:
            raise DataError(f"--batch-size: must be >= 1, got {args.batch_size}")
        times = parse_times(args.times, args.grid)
        from .image_predict import image_run, predict_manifest

        if image_run(args.run_dir):  # a run on image files: the input is a manifest of new images
            if not 0 <= args.num_workers <= 64:
                raise DataError(f"--num-workers: must be in 0..64, got {args.num_workers}")
            target, n = predict_manifest(args.run_dir, args.input, args.out, times, tuple(args.trust),
                                         args.num_workers, args.allow_outside, args.overwrite)
        else:
            target, n = predict_file(args.run_dir, args.input, args.out, times, args.batch_size, args.unseen,
                                     args.overwrite, trust=tuple(args.trust))
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    print(f"wrote {n} predictions to {target}")


if __name__ == "__main__":
    main()
