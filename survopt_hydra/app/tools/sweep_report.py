"""Summarize a Hydra multirun of survopt-train: a Markdown + CSV table and a plot.

    python scripts/train.py -m optimizer.lr=1e-3,3e-3,1e-2 model.dropout=0.1,0.3
    survopt-report multirun/2025-01-01/12-00-00 [--out DIR]     # or: python scripts/sweep_report.py ...

Each job dir holds ``.hydra/overrides.yaml`` (what was swept), ``status.json`` (``ok``, or
``failed`` with the exit code and a one-line reason; older runs have none) and, once
finished, ``metrics.json``. The table has one row per job, one column per override key
that differs between jobs (keys equal in every job are listed once above it), and the
job's validation and test C-index. The row with the best *validation* C-index is marked:
choosing by test C-index would leak the test set into the model selection. When a
sweeper recorded its choice (Optuna's ``optimization_results.yaml``) that job is marked
too. Failed jobs are listed with their reason; the others are still reported. The plot
shows both C-indices against each swept key: with several swept keys each point is the
mean over the jobs with that value (the other keys vary), categorical values are not
joined by lines. Every YAML file is read with ``yaml.safe_load``: a file that needs
anything more (a Python tag, say) is refused in one line. The job files are untrusted data: each is
read only as a regular file (never through a link) of at most 1 MiB, overrides must be a list of
texts, and the report's files are written without following links.

A sweep over ``data.fold`` (K-fold validation, ``data.folds=K data.fold=0,...,K-1``) validates
each job on other rows, so jobs are not ranked one by one: a second table gives each setting of
the other swept keys the mean (and sd) of its folds' validation C-index, and the best mean is
marked; a setting missing a fold is listed but not ranked.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import math
import statistics
import sys
from pathlib import Path
from typing import Any

import yaml

METRICS = ("val_cindex", "test_cindex", "best_epoch", "epochs_run", "train_seconds")
FOLD_KEY = "data.fold"  # K-fold validation (data.folds): jobs of one setting validate on different rows
SWEEPER_RESULTS = "optimization_results.yaml"  # written by hydra-optuna-sweeper (and scripts/tune.py)


class ReportError(Exception):
    """A sweep dir this script cannot read; the message is one line naming the file."""


MAX_FILE_BYTES = 1 << 20  # overrides.yaml, status.json, metrics.json: a few hundred bytes each


def _read(path: Path) -> str:
    """The text of a job file: a regular file (not a link, FIFO or device) of at most :data:`MAX_FILE_BYTES`."""
    import os
    import stat

    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        why = "a symbolic link; job files are never read through links" if os.path.islink(path) else exc.strerror
        raise ReportError(f"{path}: cannot read ({why})") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ReportError(f"{path}: not a regular file")
        if info.st_size > MAX_FILE_BYTES:
            raise ReportError(f"{path}: {info.st_size} bytes; a job file holds at most {MAX_FILE_BYTES}")
        data = handle.read(MAX_FILE_BYTES + 1)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ReportError(f"{path}: not UTF-8 text") from None


def _one_line(text: Any, limit: int = 200) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _safe_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(_read(path))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        problem = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ReportError(f"{path}: not plain YAML data ({_one_line(problem, 120)}); only safe YAML is read") from None
    except OSError as exc:
        raise ReportError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(_read(path))
    except (ReportError, ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def parse_override(text: str) -> tuple[str, str]:
    """``'+optimizer.lr=1e-3'`` -> ``('optimizer.lr', '1e-3')``; ``'~x'`` -> ``('x', '<deleted>')``."""
    text = str(text).strip()
    if text.startswith("~"):
        return text[1:].split("=")[0], "<deleted>"
    key, _, value = text.lstrip("+").partition("=")
    return key, value


def _status(job_dir: Path, row: dict[str, Any]) -> None:
    """Fill ``status`` (done / failed / stopped / running?) and ``reason`` from status.json and metrics.json."""
    status = _json(job_dir / "status.json") if (job_dir / "status.json").exists() else None
    metrics_file = job_dir / "metrics.json"
    metrics = _json(metrics_file) if metrics_file.exists() else None
    if status is not None and status.get("status") == "failed":
        code = status.get("exit_code")
        row["status"] = "failed" + (f" (exit {code})" if code is not None else "")
        row["reason"] = _one_line(status.get("error") or "no reason recorded")
    elif metrics is not None:
        row.update({k: metrics.get(k) for k in METRICS})
        row["status"] = "done"
    elif metrics_file.exists():
        row["status"], row["reason"] = "failed", f"{metrics_file.name} is not a JSON object"
    elif (job_dir / "status.json").exists() and status is None:
        row["status"], row["reason"] = "failed", "status.json is not a JSON object"
    elif status is not None and status.get("status") == "ok":  # ok without metrics: stopped by stop_after_epochs
        row["status"], row["reason"] = "stopped", "ended without metrics.json (rerun to resume)"
    elif (job_dir / "last.pt").exists():
        row["status"], row["reason"] = "stopped", "no metrics.json; last.pt present (interrupted? rerun to resume)"
    else:
        row["status"], row["reason"] = "failed", "no metrics.json and no status.json (failed or still running)"


def collect(sweep_dir: Path) -> list[dict[str, Any]]:
    """One dict per job: ``job``, the override values, the metrics and ``status`` (+ ``reason``)."""
    jobs = []
    for overrides_file in sorted(sweep_dir.glob("**/.hydra/overrides.yaml")):
        job_dir = overrides_file.parent.parent
        if not (job_dir / ".hydra" / "config.yaml").exists() or (job_dir / "multirun.yaml").exists():
            continue
        row: dict[str, Any] = {"job": str(job_dir.relative_to(sweep_dir))}
        overrides = _safe_yaml(overrides_file) or []
        if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
            raise ReportError(f"{overrides_file}: expected a list of overrides (texts), got "
                              f"{type(overrides).__name__}")
        row.update(parse_override(o) for o in overrides)
        _status(job_dir, row)
        jobs.append(row)
    jobs.sort(key=lambda r: [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in Path(r["job"]).parts])
    return jobs


def sweeper_choice(sweep_dir: Path, jobs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The job whose overrides equal the ``best_params`` a sweeper recorded, if any."""
    path = sweep_dir / SWEEPER_RESULTS
    if not path.exists():
        return None
    doc = _safe_yaml(path)
    params = doc.get("best_params") if isinstance(doc, dict) else None
    if not isinstance(params, dict) or not all(isinstance(v, (str, int, float, bool)) or v is None
                                               for v in params.values()):
        return None

    def same(a: Any, b: Any) -> bool:
        na, nb = _number(a), _number(b)
        return math.isclose(na, nb, rel_tol=1e-9) if na is not None and nb is not None else str(a) == str(b)

    for row in jobs:
        if all(k in row and same(row[k], v) for k, v in params.items()):
            return row
    return None


def _keys(jobs: list[dict[str, Any]]) -> list[str]:
    keys: list[str] = []
    for row in jobs:
        keys += [k for k in row if k not in keys and k not in ("job", "status", "reason", *METRICS)]
    return keys


def split_keys(jobs: list[dict[str, Any]]) -> tuple[list[str], dict[str, Any]]:
    """(keys whose value differs between jobs, {key: value} of those equal in every job)."""
    varying, constant = [], {}
    for key in _keys(jobs):
        values = {str(r.get(key)) for r in jobs}
        if len(values) == 1 and all(key in r for r in jobs):
            constant[key] = jobs[0][key]
        else:
            varying.append(key)
    return varying, constant


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"
    return "" if value is None else str(value)


def best_by_validation(jobs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The finished job with the best validation C-index; None in a fold sweep, where each job
    validated on other rows (:func:`cross_validation` ranks the settings there)."""
    if FOLD_KEY in split_keys(jobs)[0]:
        return None
    done = [r for r in jobs if r["status"] == "done" and _finite(r.get("val_cindex"))]
    return max(done, key=lambda r: r["val_cindex"]) if done else None


def cross_validation(jobs: list[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]], dict[str, Any] | None]:
    """With ``data.fold`` swept: (other swept keys, one row per setting of them, the best complete row).

    A row holds the setting, how many of the sweep's folds finished, and the mean and sd over
    them of the validation C-index (and the mean test C-index of the single fold models, which
    is reported, never ranked on). Only a setting with every fold finished is ranked: a mean over
    fewer folds is over other rows.
    """
    keys = split_keys(jobs)[0]
    if FOLD_KEY not in keys:
        return [], [], None
    others = [k for k in keys if k != FOLD_KEY]
    folds = {str(r.get(FOLD_KEY)) for r in jobs}
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in jobs:
        groups.setdefault(tuple(str(row.get(k)) for k in others), []).append(row)
    rows = []
    for setting, members in groups.items():
        done = [r for r in members if r["status"] == "done" and _finite(r.get("val_cindex"))]
        vals = [r["val_cindex"] for r in done]
        tests = [r["test_cindex"] for r in done if _finite(r.get("test_cindex"))]
        rows.append({**dict(zip(others, setting)), "folds": f"{len(done)} of {len(folds)}",
                     "complete": {str(r.get(FOLD_KEY)) for r in done} == folds,
                     "val_cindex_mean": statistics.fmean(vals) if vals else None,
                     "val_cindex_sd": statistics.stdev(vals) if len(vals) > 1 else None,
                     "test_cindex_mean": statistics.fmean(tests) if tests else None})
    ranked = [r for r in rows if r["complete"]]
    return others, rows, max(ranked, key=lambda r: r["val_cindex_mean"]) if ranked else None


def _cv_lines(jobs: list[dict[str, Any]]) -> list[str]:
    others, rows, best = cross_validation(jobs)
    if not rows:
        return []
    columns = [*others, "folds", "val_cindex_mean", "val_cindex_sd", "test_cindex_mean"]
    lines = ["", f"Cross-validation over `{FOLD_KEY}`: each job validated on another fold, so settings are "
             "ranked by the mean validation C-index over their folds (test: the single fold models' mean, "
             "not ranked on); a setting missing a fold is not ranked.", "",
             "| " + " | ".join([*columns, ""]) + " |", "|" + "---|" * (len(columns) + 1)]
    for row in rows:
        lines.append("| " + " | ".join([*(_fmt(row[c]) for c in columns), "**best mean val**" if row is best else ""])
                     + " |")
    if best is not None:
        setting = " ".join(f"{k}={best[k]}" for k in others) or "(the one setting)"
        test = f"{best['test_cindex_mean']:.4f}" if best["test_cindex_mean"] is not None else "none"
        lines += ["", f"Best by mean validation C-index over folds: {setting}: val {best['val_cindex_mean']:.4f}, "
                  f"test (mean of the fold models) {test}."]
    return lines


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def write_tables(jobs: list[dict[str, Any]], out: Path, chosen: dict[str, Any] | None = None) -> tuple[Path, Path]:
    keys, constant = split_keys(jobs)
    best = best_by_validation(jobs)
    from survopt_hydra.durable import write_text_atomic  # never through a link planted in the sweep dir

    csv_path, md_path = out / "sweep_report.csv", out / "sweep_report.md"
    buffer = io.StringIO()  # the CSV keeps every column
    writer = csv.DictWriter(buffer, fieldnames=["job", *_keys(jobs), *METRICS, "status", "reason"],
                            extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(jobs)
    write_text_atomic(buffer.getvalue(), csv_path, durable=False)
    done = sum(r["status"] == "done" for r in jobs)
    lines = [f"# Sweep report: {out}", "", f"{done} of {len(jobs)} jobs finished.", ""]
    if constant:
        lines += ["Same in every job (not shown as columns): "
                  + ", ".join(f"`{k}={_fmt(v)}`" for k, v in constant.items()) + ".", ""]
    columns = ["job", *keys, *METRICS, "status"]
    lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in jobs:
        cells = [_fmt(row.get(c)) for c in columns]
        marks = [m for m, r in (("best val", best), ("sweeper's choice", chosen)) if r is row]
        if marks:
            cells[0] = f"**{cells[0]}** ({', '.join(marks)})"
        lines.append("| " + " | ".join(cells) + " |")
    failed = [r for r in jobs if r["status"] != "done"]
    if failed:
        lines += ["", "Jobs without results:", ""]
        lines += [f"- job {r['job']} ({' '.join(f'{k}={r[k]}' for k in keys if k in r)}): {r['status']}: "
                  f"{r.get('reason', '')}" for r in failed]
    lines += _cv_lines(jobs)
    for label, row in (("Best by validation C-index", best), ("Chosen by the sweeper", chosen)):
        if row is not None:
            setting = " ".join(f"{k}={row[k]}" for k in keys if k in row) or "(no swept key)"
            test = f"test {row['test_cindex']:.4f}" if _finite(row.get("test_cindex")) else "no test figure"
            lines += ["", f"{label}: job {row['job']} ({setting}): val {row['val_cindex']:.4f}, {test}."]
    write_text_atomic("\n".join(lines) + "\n", md_path, durable=False)
    return md_path, csv_path


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _log_axis(ax: Any, xs: list[float]) -> None:
    """Log x axis with one label per swept value (formatted ``%g``) and no minor labels: matplotlib's
    default labels minor ticks too when the values span less than ~2 decades, and they overlap."""
    from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator

    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator(xs))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xticks(xs, [f"{x:g}" for x in xs], rotation=45 if len(xs) > 4 else 0,
                  ha="right" if len(xs) > 4 else "center")


def figure(jobs: list[dict[str, Any]], chosen: dict[str, Any] | None = None) -> Any:
    """A matplotlib figure: val/test C-index against every key that takes more than one value
    (means per value), or None when no key varies."""
    done = [r for r in jobs if r["status"] == "done"]
    swept, _ = split_keys(done) if done else ([], {})
    if not swept:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    best = best_by_validation(jobs)
    several = len(swept) > 1
    fig, axes = plt.subplots(1, len(swept), figsize=(4.6 * len(swept), 3.9), squeeze=False)
    for ax, key in zip(axes[0], swept):
        values = sorted({str(r.get(key)) for r in done}, key=lambda v: (_number(v) is None, _number(v) or 0.0, v))
        numeric = all(_number(v) is not None for v in values)
        xs = [_number(v) for v in values] if numeric else list(range(len(values)))
        for metric, marker in (("val_cindex", "o"), ("test_cindex", "s")):
            means = []
            for v in values:
                ys = [r[metric] for r in done if str(r.get(key)) == v and _finite(r.get(metric))]
                means.append(sum(ys) / len(ys) if ys else math.nan)
            ax.plot(xs, means, marker=marker, linestyle="-" if numeric else "none",
                    label=metric.replace("_cindex", " C-index") + (" (mean)" if several else ""))
        if best is not None and key in best:
            x_best = _number(best[key]) if numeric else values.index(str(best[key]))
            ax.axvline(x_best, color="tab:green", linestyle=":", label="best by val")
        if chosen is not None and chosen is not best and key in chosen:
            x_chosen = _number(chosen[key]) if numeric else values.index(str(chosen[key]))
            ax.axvline(x_chosen, color="tab:purple", linestyle="--", label="sweeper's choice")
        if numeric and all(x > 0 for x in xs) and max(xs) / min(xs) >= 10:
            _log_axis(ax, xs)
        elif not numeric:
            ax.set_xticks(xs, values, rotation=30, ha="right")
            ax.set_xlim(-0.5, len(values) - 0.5)
        ax.set(xlabel=key, ylabel="mean C-index per value" if several else "C-index")
        ax.legend(fontsize="small")
    if several:
        fig.suptitle("Each point: the mean over the jobs with that value (the other swept keys vary)",
                     fontsize="medium")
    fig.tight_layout()
    return fig


def plot(jobs: list[dict[str, Any]], out: Path, chosen: dict[str, Any] | None = None) -> Path | None:
    """``out/sweep_report.png`` (see :func:`figure`), or None when nothing was swept."""
    fig = figure(jobs, chosen)
    if fig is None:
        return None
    import matplotlib.pyplot as plt

    from survopt_hydra.durable import write_atomic

    path = out / "sweep_report.png"
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    write_atomic(buffer.getvalue(), path, durable=False)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="survopt-report", description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path, help="a multirun dir (the one holding multirun.yaml)")
    parser.add_argument("--out", type=Path, help="where to write the report (default: sweep_dir)")
    args = parser.parse_args(argv)
    from survopt_hydra.errors import ConfigError, require_package

    try:
        require_package("matplotlib", "survopt-report")  # the plot is part of the report
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not args.sweep_dir.is_dir():
        print(f"error: {args.sweep_dir}: not a directory", file=sys.stderr)
        return 2
    try:
        jobs = collect(args.sweep_dir)
        chosen = sweeper_choice(args.sweep_dir, jobs)
    except ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not jobs:
        print(f"error: {args.sweep_dir}: no Hydra job dirs (.hydra/overrides.yaml) found", file=sys.stderr)
        return 2
    out = args.out or args.sweep_dir
    try:
        out.mkdir(parents=True, exist_ok=True)
        md_path, csv_path = write_tables(jobs, out, chosen)
        png = plot(jobs, out, chosen)
    except OSError as exc:
        print(f"error: {out}: cannot write the report ({exc.strerror or exc}); pass --out DIR", file=sys.stderr)
        return 2
    print(md_path.read_text(encoding="utf-8"))
    print(f"wrote {md_path}, {csv_path}" + (f", {png}" if png else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
