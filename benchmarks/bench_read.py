"""Reading cohorts: the app's loader against pyarrow and pandas on the same files (issue 27, items 1, 4, 6).

Synthetic cohorts of 10^4, 10^5 and 10^6 patients (20 numeric features, two text columns of 3 and
8 levels, duration, event; about 2% of the cells missing in two numeric columns and one text
column) are written to a temporary directory as CSV and as Parquet. Each measurement runs in a
fresh interpreter that first imports everything it needs, then times one call and reports its wall
time and its peak RSS above the imported interpreter (the high-water mark ``VmHWM`` after the call,
reset to the current RSS just before it through ``/proc/self/clear_refs``, minus that RSS; where
that is not available, ``getrusage``'s high-water marks):

* ``ours``: ``load_csv(path, "duration", "event", missing="impute")``, the app's training load:
  reading, schema inference (numbers, levels, constant columns), missing-value bookkeeping and the
  float32 feature matrix;
* ``pyarrow``: ``pyarrow.csv.read_csv(path)`` / ``pyarrow.parquet.read_table(path)``, with its own
  type inference and its threads: reading alone, no matrix;
* ``pandas``: ``pandas.read_csv(path)`` / ``pandas.read_parquet(path)``.

The three alternate call by call in each round (the order rotates), and a ratio is taken per
round before the median over rounds, so load from other processes hits both sides alike. Targets
(issue 27): ours at most 2x pyarrow's time, peak RSS at most 3x the float32 matrix (``x.nbytes``).

``predict``: peak RSS and time of ``predict_file`` (survopt-predict) on the 10^5 and 10^6-row CSV
files, with a run trained on the 10^4 cohort (bounded memory: the two peaks should be alike).
``--before REF`` also times the loader as it was at git ref REF (``git archive``) on the CSV files
up to 2 x 10^5 rows, for a before/after table.

Usage: ``python benchmarks/bench_read.py [--quick] [--repeats 3] [--before REF] [--out DIR]``;
writes ``DIR/read.json`` and ``DIR/read.md`` (default ``benchmarks/results``) and prints the table.
``run(quick)`` returns the dict.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

_PROBE = r"""
import json, resource, sys, time
tool, path, fmt, extra = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
import numpy, pyarrow, pyarrow.csv, pyarrow.compute, pyarrow.parquet, pyarrow.dataset
if tool == "before":
    sys.path.insert(0, extra)
if tool in ("ours", "before", "predict"):
    import torch
    import survopt_hydra.survival.data as data
    assert tool != "before" or data.__file__.startswith(extra), data.__file__
if tool == "predict":
    from survopt_hydra.app.predict import predict_file
    import survopt_hydra.app.predictor
if tool == "pandas":
    import pandas
import logging
logging.disable(logging.WARNING)

def rss_kb(field):
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

try:  # reset the high-water mark to the current RSS (Linux), so imports' transient peak does not hide the call's
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
except OSError:
    pass
base = rss_kb("VmRSS")
t0 = time.perf_counter()
nbytes = 0
if tool in ("ours", "before"):
    table = data.load_csv(path, "duration", "event", missing="impute")
    nbytes = table.x.nbytes
elif tool == "pyarrow":
    table = pyarrow.csv.read_csv(path) if fmt == "csv" else pyarrow.parquet.read_table(path)
elif tool == "pandas":
    table = pandas.read_csv(path) if fmt == "csv" else pandas.read_parquet(path)
elif tool == "predict":
    out, n = predict_file(extra, path, path + ".predictions.csv", [30.0, 90.0, 365.0], overwrite=True)
seconds = time.perf_counter() - t0
peak = rss_kb("VmHWM")
print(json.dumps({"seconds": seconds, "base_mb": base / 1024, "peak_mb": peak / 1024,
                  "extra_mb": (peak - base) / 1024, "x_bytes": nbytes}))
"""


def write_cohort(folder: Path, n: int, seed: int = 0) -> dict[str, Path]:
    """CSV and Parquet files of one synthetic cohort (the same rows)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 20))
    risk = x[:, :4] @ np.array([0.5, -0.4, 0.3, 0.2])
    event_time, censor = rng.exponential(100 * np.exp(-risk)), rng.exponential(120, n)
    columns: dict[str, Any] = {"duration": pa.array(np.round(np.minimum(event_time, censor), 3)),
                               "event": pa.array((event_time <= censor).astype(np.int64))}
    for j in range(20):
        values = np.round(x[:, j] * (10 if j % 3 else 1) + (50 if j % 4 == 0 else 0), 4)
        mask = rng.random(n) < 0.02 if j in (3, 7) else None
        columns[f"x{j}"] = pa.array(values, mask=mask)
    columns["grade"] = pa.array(np.array(["I", "II", "III"])[rng.integers(0, 3, n)])
    site = np.array([f"site{k}" for k in range(8)])[rng.integers(0, 8, n)]
    columns["site"] = pa.array(site, mask=rng.random(n) < 0.02)
    table = pa.table(columns)
    paths = {"csv": folder / f"cohort_{n}.csv", "parquet": folder / f"cohort_{n}.parquet"}
    pcsv.write_csv(table, paths["csv"], pcsv.WriteOptions(quoting_style="none"))
    pq.write_table(table, paths["parquet"])
    return paths


def probe(tool: str, path: Path, fmt: str, extra: str = "") -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    if tool == "before":
        env["PYTHONPATH"] = extra  # the old package only
    proc = subprocess.run([sys.executable, "-c", _PROBE, tool, str(path), fmt, extra], capture_output=True,
                          text=True, timeout=1800, env=env, cwd=REPO)
    if proc.returncode:
        raise RuntimeError(f"{tool} on {path}: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def train_run(folder: Path, csv: Path) -> Path:
    run_dir = folder / "run"
    cmd = [sys.executable, "scripts/train.py", f"hydra.run.dir={run_dir}", "data=csv", f"data.path={csv}",
           "data.duration_col=duration", "data.event_col=event", "data.missing=impute", "trainer.max_epochs=1",
           "trainer.progress_bar=false", "trainer.plots=false"]
    subprocess.run(cmd, cwd=REPO, check=True, capture_output=True, text=True, timeout=600)
    return run_dir


def _loadavg() -> float:
    return os.getloadavg()[0]


def _machine() -> dict:
    import numpy
    import pandas
    import pyarrow
    from run import cpu_model

    return {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
            "pyarrow": pyarrow.__version__, "pandas": pandas.__version__, "numpy": numpy.__version__}


def run(quick: bool = False, repeats: int = 3, before: str | None = None, sizes: list[int] | None = None) -> dict:
    sizes = sizes or ([10_000, 100_000] if quick else [10_000, 100_000, 1_000_000])
    repeats = 1 if quick else repeats
    started = dt.datetime.now(dt.timezone.utc)
    result: dict[str, Any] = {"machine": _machine(), "started_utc": started.isoformat(timespec="seconds"),
                              "load_before": _loadavg(), "repeats": repeats, "cases": [], "predict": [],
                              "before": []}
    with tempfile.TemporaryDirectory(prefix="bench_read_") as tmp:
        folder = Path(tmp)
        files = {n: write_cohort(folder, n) for n in sizes}
        for n in sizes:
            for fmt in ("csv", "parquet"):
                path = files[n][fmt]
                tools = ["ours", "pyarrow", "pandas"]
                rounds = []
                for r in range(repeats):
                    order = tools[r % 3:] + tools[: r % 3]
                    rounds.append({tool: probe(tool, path, fmt) for tool in order})
                case = {"n": n, "format": fmt, "file_mb": path.stat().st_size / 2**20,
                        "float32_mb": rounds[0]["ours"]["x_bytes"] / 2**20}
                for tool in tools:
                    case[f"{tool}_s"] = statistics.median(r[tool]["seconds"] for r in rounds)
                    case[f"{tool}_extra_mb"] = statistics.median(r[tool]["extra_mb"] for r in rounds)
                for peer in ("pyarrow", "pandas"):
                    case[f"ours_over_{peer}"] = statistics.median(r["ours"]["seconds"] / r[peer]["seconds"]
                                                                  for r in rounds)
                case["ours_rss_over_float32"] = case["ours_extra_mb"] / case["float32_mb"]
                result["cases"].append(case)
                print(_row(case), flush=True)
        if not quick:
            run_dir = train_run(folder, files[sizes[0]]["csv"])
            for n in [s for s in sizes if s >= 100_000]:
                runs = [probe("predict", files[n]["csv"], "csv", str(run_dir)) for _ in range(repeats)]
                result["predict"].append({"n": n, "seconds": statistics.median(r["seconds"] for r in runs),
                                          "extra_mb": statistics.median(r["extra_mb"] for r in runs),
                                          "peak_mb": statistics.median(r["peak_mb"] for r in runs)})
                print(f"predict {n}: {result['predict'][-1]}", flush=True)
        if before:
            old = folder / "before"
            old.mkdir()
            archive = subprocess.run(["git", "archive", before, "survopt_hydra"], cwd=REPO, check=True,
                                     capture_output=True).stdout
            subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
            for n in [s for s in sorted({*sizes, 200_000}) if s <= 200_000]:
                path = files[n]["csv"] if n in files else write_cohort(folder, n)["csv"]
                rounds = [{"before": probe("before", path, "csv", str(old)), "ours": probe("ours", path, "csv")}
                          for _ in range(max(1, repeats - 1))]
                entry = {"n": n, "ref": before}
                for tool in ("before", "ours"):
                    entry[f"{tool}_s"] = statistics.median(r[tool]["seconds"] for r in rounds)
                    entry[f"{tool}_extra_mb"] = statistics.median(r[tool]["extra_mb"] for r in rounds)
                entry["speedup"] = statistics.median(r["before"]["seconds"] / r["ours"]["seconds"] for r in rounds)
                result["before"].append(entry)
                print(f"before/after {n}: {entry}", flush=True)
    result["load_after"] = _loadavg()
    result["finished_utc"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    return result


def _row(c: dict) -> str:
    return (f"| {c['n']:,} | {c['format']} | {c['file_mb']:.1f} | {c['float32_mb']:.1f} | {c['ours_s']:.3f} | "
            f"{c['pyarrow_s']:.3f} | {c['pandas_s']:.3f} | {c['ours_over_pyarrow']:.2f} | {c['ours_over_pandas']:.2f}"
            f" | {c['ours_extra_mb']:.0f} | {c['pyarrow_extra_mb']:.0f} | {c['pandas_extra_mb']:.0f} | "
            f"{c['ours_rss_over_float32']:.2f} |")


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = [
        "# Reading cohorts: the app's loader, pyarrow and pandas on the same files",
        "",
        f"Machine: {m['cores']}-core {m['cpu']}, Python {m['python']}, pyarrow {m['pyarrow']}, pandas "
        f"{m['pandas']}, numpy {m['numpy']}; {result['started_utc']} to {result['finished_utc']}; load average "
        f"{result['load_before']:.1f} before, {result['load_after']:.1f} after (other jobs shared the machine). "
        f"Command: `{result.get('command', 'python benchmarks/bench_read.py')}` ({result['repeats']} rounds, "
        "medians; ratios per round). "
        "Every figure is regenerated by the script (`read.json` beside this file).",
        "",
        "Times in seconds; RSS = peak above the interpreter with its imports done, MB; float32 = the "
        "feature matrix the loader returns. Targets (issue 27): ours <= 2x pyarrow, RSS <= 3x float32.",
        "",
        "| patients | format | file MB | float32 MB | ours s | pyarrow s | pandas s | ours / pyarrow | "
        "ours / pandas | ours RSS | pyarrow RSS | pandas RSS | ours RSS / float32 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        *(_row(c) for c in result["cases"]),
    ]
    if result["predict"]:
        lines += ["", "`survopt-predict` (`predict_file`, 3 times S(t), default `--batch-size` 4096) on the CSV "
                  "files, a run trained on the 10^4 cohort:", "",
                  "| rows | seconds | peak RSS above the interpreter, MB |", "|---|---|---|",
                  *(f"| {p['n']:,} | {p['seconds']:.2f} | {p['extra_mb']:.0f} |" for p in result["predict"])]
    if result["before"]:
        lines += ["", f"Before / after (CSV, the loader at `{result['before'][0]['ref']}` vs now):", "",
                  "| patients | before s | after s | speed-up | before RSS MB | after RSS MB |",
                  "|---|---|---|---|---|---|",
                  *(f"| {b['n']:,} | {b['before_s']:.2f} | {b['ours_s']:.3f} | {b['speedup']:.1f}x | "
                    f"{b['before_extra_mb']:.0f} | {b['ours_extra_mb']:.0f} |" for b in result["before"])]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10^4 and 10^5 rows, one round, no predict")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="+")
    parser.add_argument("--before", help="git ref of the loader to compare with (CSV, up to 2 x 10^5 rows)")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    result = run(args.quick, args.repeats, args.before, args.sizes)
    result["command"] = " ".join(["python benchmarks/bench_read.py", *sys.argv[1:]])
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "read-quick" if args.quick else "read"
    (args.out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / f"{stem}.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
