"""Summarize a Hydra multirun of survopt-train: a Markdown + CSV table and a plot.

    python scripts/train.py -m optimizer.lr=1e-3,3e-3,1e-2 model.dropout=0.1,0.3
    python scripts/sweep_report.py multirun/2025-01-01/12-00-00 [--out DIR]

Each job dir holds ``.hydra/overrides.yaml`` (what was swept) and, once finished,
``metrics.json``. The table has one row per job, one column per override key, and
the job's validation and test C-index. The row with the best *validation* C-index is
marked: choosing by test C-index would leak the test set into the model selection.
The plot shows both C-indices against each swept key (mean over the other keys).
Jobs without ``metrics.json`` (failed or still running) are listed with status.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path
from typing import Any

import yaml

METRICS = ("val_cindex", "test_cindex", "best_epoch", "epochs_run", "train_seconds")


def parse_override(text: str) -> tuple[str, str]:
    """``'+optimizer.lr=1e-3'`` -> ``('optimizer.lr', '1e-3')``; ``'~x'`` -> ``('x', '<deleted>')``."""
    text = text.strip()
    if text.startswith("~"):
        return text[1:].split("=")[0], "<deleted>"
    key, _, value = text.lstrip("+").partition("=")
    return key, value


def collect(sweep_dir: Path) -> list[dict[str, Any]]:
    """One dict per job: ``job``, the override values and the metrics (or a status)."""
    jobs = []
    for overrides_file in sorted(sweep_dir.glob("**/.hydra/overrides.yaml")):
        job_dir = overrides_file.parent.parent
        if not (job_dir / ".hydra" / "config.yaml").exists() or (job_dir / "multirun.yaml").exists():
            continue
        row: dict[str, Any] = {"job": str(job_dir.relative_to(sweep_dir))}
        row.update(parse_override(o) for o in (yaml.safe_load(overrides_file.read_text()) or []))
        metrics_file = job_dir / "metrics.json"
        if metrics_file.exists():
            metrics = json.loads(metrics_file.read_text())
            row.update({k: metrics.get(k) for k in METRICS})
            row["status"] = "done"
        else:
            row["status"] = "stopped" if (job_dir / "last.pt").exists() else "failed"
        jobs.append(row)
    jobs.sort(key=lambda r: [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in Path(r["job"]).parts])
    return jobs


def _keys(jobs: list[dict[str, Any]]) -> list[str]:
    keys: list[str] = []
    for row in jobs:
        keys += [k for k in row if k not in keys and k not in ("job", "status", *METRICS)]
    return keys


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"
    return "" if value is None else str(value)


def write_tables(jobs: list[dict[str, Any]], out: Path) -> tuple[Path, Path]:
    keys = _keys(jobs)
    columns = ["job", *keys, *METRICS, "status"]
    done = [r for r in jobs if r["status"] == "done" and r.get("val_cindex") is not None]
    best = max(done, key=lambda r: r["val_cindex"]) if done else None
    csv_path, md_path = out / "sweep_report.csv", out / "sweep_report.md"
    with csv_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(jobs)
    lines = [f"# Sweep report: {out}", "", f"{len(done)} of {len(jobs)} jobs finished.", ""]
    lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in jobs:
        cells = [_fmt(row.get(c)) for c in columns]
        if row is best:
            cells[0] = f"**{cells[0]}** (best val)"
        lines.append("| " + " | ".join(cells) + " |")
    if best is not None:
        chosen = " ".join(f"{k}={best[k]}" for k in keys if k in best)
        lines += ["", f"Best by validation C-index: job {best['job']} ({chosen}): val {best['val_cindex']:.4f}, "
                  f"test {best['test_cindex']:.4f}."]
    md_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return md_path, csv_path


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def plot(jobs: list[dict[str, Any]], out: Path) -> Path | None:
    """Val/test C-index against every key that takes more than one value."""
    done = [r for r in jobs if r["status"] == "done"]
    swept = [k for k in _keys(done) if len({str(r.get(k)) for r in done}) > 1]
    if not swept:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(swept), figsize=(4.5 * len(swept), 3.6), squeeze=False)
    for ax, key in zip(axes[0], swept):
        values = sorted({str(r.get(k)) for r in done for k in [key]},
                        key=lambda v: (_number(v) is None, _number(v) or 0.0, v))
        numeric = all(_number(v) is not None for v in values)
        xs = [_number(v) if numeric else i for i, v in enumerate(values)]
        for metric, marker in (("val_cindex", "o"), ("test_cindex", "s")):
            means = []
            for v in values:
                ys = [r[metric] for r in done if str(r.get(key)) == v and r.get(metric) is not None]
                means.append(sum(ys) / len(ys) if ys else math.nan)
            ax.plot(xs, means, marker=marker, label=metric.replace("_cindex", " C-index"))
        if numeric and all(x > 0 for x in xs) and max(xs) / min(xs) >= 10:
            ax.set_xscale("log")
        if not numeric:
            ax.set_xticks(xs, values, rotation=30, ha="right")
        ax.set(xlabel=key, ylabel="C-index")
        ax.legend()
    fig.tight_layout()
    path = out / "sweep_report.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path, help="a multirun dir (the one holding multirun.yaml)")
    parser.add_argument("--out", type=Path, help="where to write the report (default: sweep_dir)")
    args = parser.parse_args(argv)
    if not args.sweep_dir.is_dir():
        print(f"error: {args.sweep_dir}: not a directory", file=sys.stderr)
        return 2
    jobs = collect(args.sweep_dir)
    if not jobs:
        print(f"error: {args.sweep_dir}: no Hydra job dirs (.hydra/overrides.yaml) found", file=sys.stderr)
        return 2
    out = args.out or args.sweep_dir
    out.mkdir(parents=True, exist_ok=True)
    md_path, csv_path = write_tables(jobs, out)
    png = plot(jobs, out)
    print(md_path.read_text(encoding="utf-8"))
    print(f"wrote {md_path}, {csv_path}" + (f", {png}" if png else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
