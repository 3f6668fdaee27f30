"""Real cohorts at scale: whole app runs at 10^4, 10^5 and 10^6 patients against their peers (issue 27, item 6).

Synthetic cohorts (``scripts/make_cohort.py``: 20 numeric features, ~50% events) are written as
CSV and as Parquet to a temporary directory. For each file, ``scripts/train.py data=csv
data.path=<file> trainer.max_epochs=E`` runs as a whole process (E = 5 by default, ``--epochs``;
early stopping off, every other setting the app's default) and its wall time is split with the
run's own ``timings.json`` (:mod:`survopt_hydra.app.timings`):

* start-up: the process's age when the data load began (imports, composing the config, the
  pre-flight's checks); ``setup`` (model, optimizer, engine, resume check) is added to it;
* load: read, split, standardize, check the splits;
* training (the epochs' batches), per-epoch validation (forward, C-index, Cox loss);
* final metrics: best weights, test C-index, Uno's C, IBS, td-AUC, bootstrap intervals, Breslow;
* writes: epochs.csv per epoch, checkpoints, predictor.json, test_predictions.csv, metrics.json and
  CSVs; plus what no phase claims (Hydra's run dir and log) and the interpreter's exit (``exit``:
  wall time after the last figure).

Peak RSS is the whole process's high-water mark (``ru_maxrss`` of the app forked by a small launcher,
:data:`LAUNCHER`: a child of this process would inherit its peak). In fresh interpreters, on the same files: ``pyarrow`` and ``pandas`` reading alone, the app's loader alone
(``load_csv``), lifelines ``CoxPHFitter`` (penalizer 0.01) fit on the app's training rows plus its
concordance on the test rows, scikit-survival's Harrell's C, Uno's C, td-AUC and IBS on the test
rows next to the app's own functions for the same four (``final metrics`` peer; run only where the
previous size's time times the growth it showed stays under ``--peer-cap`` seconds), and a plain
torch loop (the same MLP, loss, AdamW, cosine LR, clipping and epochs, one thread, no app). The
torch floor is a fresh interpreter's age after ``import torch`` and one AdamW step: what any torch
script pays before its own work.

The targets the issue names, printed as ratios measured in this run:

* at 10^6 patients, everything except training and torch's own start-up (the floor) is at most
  25% of the run's wall time: ``(wall - training - floor) / wall``;
* reading at most 2x pyarrow's time on the same file (the loader alone, and the app's whole load
  phase, which also splits, standardizes and checks);
* peak RSS at most 3x the float32 data: the 10^6 run's peak above the 10^4 run's (the fixed
  footprint: interpreter, torch, Hydra) over the float32 features, durations and events;
* cost close to n log n: the log-log slope of each phase's time against n (n log n is 1.09 from 10^4
  to 10^6, 1.08 from 10^5 to 10^6; n^2 would be 2).

App runs and peers alternate in ``--repeats`` rounds (medians; ratios per round); before each round
the script waits up to ``--quiet-wait`` seconds (60) for the 1-minute load average to fall under
``--quiet-load`` (3.0; the machine is shared) and records the load each run started at. Writes
``<out>/scale.json``, ``scale.md`` and the log-log plot ``scale.png`` (default
``benchmarks/results``). ``--quick``: 10^3 and 10^4 patients, one round, 2 epochs, no lifelines
or scikit-survival (a smoke run).

Usage: ``python benchmarks/bench_scale.py [--quick] [--epochs 5] [--repeats 2] [--sizes ...] [--out DIR]``.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "scripts"))

from make_cohort import FEATURES, write_cohort  # noqa: E402

#: Phases of the app's timings.json as the report groups them.
GROUPS = {"start-up": ("startup", "setup"), "load": ("load",), "training": ("train",),
          "validation": ("validate",), "final metrics": ("final_metrics",),
          "writes": ("record", "checkpoints", "writes", "other")}


def nlogn_slope(a: int, b: int) -> float:
    """The log-log slope of n log n between a and b patients (1.09 from 10^4 to 10^6)."""
    return math.log(b * math.log(b) / (a * math.log(a))) / math.log(b / a)


_PROBE = r"""
import json, os, resource, sys, time
tool, path, fmt, epochs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])

def age():
    with open("/proc/self/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    with open("/proc/uptime", "rb") as f:
        return float(f.read().split()[0]) - int(fields[19]) / os.sysconf("SC_CLK_TCK")

def rss_mb(field):
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith(field + ":")) / 1024

def reset_peak():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    return rss_mb("VmRSS")

out = {}
if tool == "floor":
    import torch
    m = torch.nn.Linear(20, 1)
    opt = torch.optim.AdamW(m.parameters())
    m(torch.randn(8, 20)).sum().backward()
    opt.step()
    out["seconds"] = age()
elif tool in ("pyarrow", "pandas", "loader"):
    import numpy, pyarrow, pyarrow.csv, pyarrow.parquet, pyarrow.compute, pyarrow.dataset
    if tool == "pandas":
        import pandas
    if tool == "loader":
        import torch
        from survopt_hydra.survival.data import load_csv
    base = reset_peak()
    t0 = time.perf_counter()
    if tool == "pyarrow":
        table = pyarrow.csv.read_csv(path) if fmt == "csv" else pyarrow.parquet.read_table(path)
    elif tool == "pandas":
        table = pandas.read_csv(path) if fmt == "csv" else pandas.read_parquet(path)
    else:
        table = load_csv(path, "time", "event")
    out["seconds"] = time.perf_counter() - t0
    out["extra_mb"] = rss_mb("VmHWM") - base
elif tool in ("lifelines", "sksurv"):
    import numpy as np, pyarrow.parquet as pq, torch
    from survopt_hydra.survival.splits import split_indices
    df = pq.read_table(path).to_pandas()
    tr, va, te = split_indices(df["event"].to_numpy(), (0.7, 0.15, 0.15), 0)
    if tool == "lifelines":
        from lifelines import CoxPHFitter
        from lifelines.utils import concordance_index
        t0 = time.perf_counter()
        cph = CoxPHFitter(penalizer=0.01).fit(df.iloc[tr], "time", "event")
        out["fit_seconds"] = time.perf_counter() - t0
        test = df.iloc[te]
        t0 = time.perf_counter()
        risk = cph.predict_partial_hazard(test)
        out["cindex"] = concordance_index(test["time"], -risk, test["event"])
        out["cindex_seconds"] = time.perf_counter() - t0
        out["seconds"] = out["fit_seconds"] + out["cindex_seconds"]
    else:
        from sksurv.metrics import (concordance_index_censored, concordance_index_ipcw, cumulative_dynamic_auc,
                                    integrated_brier_score)
        from survopt_hydra.app.data import Split
        from survopt_hydra.app.predictor import IBS_POINTS, horizons, split_metrics
        from survopt_hydra.survival import concordance_index
        from survopt_hydra.survival.breslow import BreslowBaseline
        x = df[[f"x{j}" for j in range(20)]].to_numpy()
        lin = x[:, :4] @ np.array([0.6, -0.5, 0.4, 0.3])  # the generator's linear part: a fixed, good risk
        t, e = df["time"].to_numpy(), df["event"].to_numpy()
        split = lambda i: Split(torch.zeros(len(i), 1), torch.tensor(t[i], dtype=torch.float32),
                                torch.tensor(e[i], dtype=torch.float32))
        train, test = split(tr), split(te)
        base = BreslowBaseline.fit(torch.tensor(lin[tr]), train.durations, train.events)
        at = horizons(train)
        from sksurv.util import Surv
        y_tr, y_te = Surv.from_arrays(e[tr] > 0, t[tr]), Surv.from_arrays(e[te] > 0, t[te])
        risk = lin[te]
        tt = test.durations.double()
        grid = np.linspace(float(tt.min()), min(max(at), float(tt.max())), IBS_POINTS)
        grid = np.unique(grid[grid < float(tt.max())])
        surv = base.survival(torch.tensor(risk), torch.tensor(grid)).numpy()
        t0 = time.perf_counter()
        out["harrell"] = concordance_index_censored(e[te] > 0, t[te], risk)[0]
        t1 = time.perf_counter()
        out["uno"] = concordance_index_ipcw(y_tr, y_te, risk, tau=max(at))[0]
        t2 = time.perf_counter()
        inside = [h for h in at if t[te].min() <= h < t[te].max()]
        out["td_auc_mean"] = cumulative_dynamic_auc(y_tr, y_te, risk, inside)[1]
        t3 = time.perf_counter()
        out["ibs"] = integrated_brier_score(y_tr, y_te, surv, grid)
        t4 = time.perf_counter()
        out.update(harrell_seconds=t1 - t0, uno_seconds=t2 - t1, auc_seconds=t3 - t2, ibs_seconds=t4 - t3,
                   seconds=t4 - t0)
        t0 = time.perf_counter()
        ours_c = concordance_index(torch.tensor(risk), test.durations, test.events)
        ours = split_metrics("test", torch.tensor(risk), test, train, base, at)
        out["ours_seconds"] = time.perf_counter() - t0
        out["ours_harrell"], out["ours_uno"], out["ours_ibs"] = ours_c, ours["test_uno_cindex"], ours["test_ibs"]
elif tool == "torch_loop":
    import numpy as np, pyarrow.csv, pyarrow.parquet, torch
    from torch import nn
    torch.set_num_threads(1)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    table = pyarrow.csv.read_csv(path) if fmt == "csv" else pyarrow.parquet.read_table(path)
    x = np.column_stack([table.column(f"x{j}").to_numpy() for j in range(20)]).astype(np.float32)
    t = torch.tensor(table.column("time").to_numpy(), dtype=torch.float32)
    e = torch.tensor(table.column("event").to_numpy(), dtype=torch.float32)
    perm = np.random.default_rng(0).permutation(len(x))
    tr = perm[: int(0.7 * len(x))]
    mean, std = x[tr].mean(0), x[tr].std(0)
    xt = torch.from_numpy((x[tr] - mean) / std)
    tt, et = t[tr], e[tr]
    out["load_seconds"] = time.perf_counter() - t0
    model = nn.Sequential(nn.Linear(20, 16), nn.GELU(), nn.Dropout(0.1), nn.Linear(16, 1, bias=False))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=1e-2)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    def cox(risk, time_, event):  # Breslow's partial likelihood without tie handling: the peer's own few lines
        order = torch.argsort(time_, descending=True)
        r, ev = risk[order], event[order]
        return -((r - torch.logcumsumexp(r, 0)) * ev).sum() / ev.sum().clamp(min=1)
    out["start_seconds"] = age()
    t0 = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        for idx in torch.randperm(len(xt)).split(512):
            loss = cox(model(xt[idx]).squeeze(-1), tt[idx], et[idx])
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
        sched.step()
    out["train_seconds"] = time.perf_counter() - t0
    out["seconds"] = age()
out["peak_mb"] = rss_mb("VmHWM")
print(json.dumps(out))
"""


def probe(tool: str, path: Path | str = "", fmt: str = "", epochs: int = 0, timeout: float = 1800) -> dict:
    """One measurement in a fresh interpreter; {"skipped": why} when it runs past ``timeout``."""
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    try:
        proc = subprocess.run([sys.executable, "-c", _PROBE, tool, str(path), fmt, str(epochs)], capture_output=True,
                              text=True, timeout=timeout, env=env, cwd=REPO)
    except subprocess.TimeoutExpired:
        return {"skipped": f"stopped after {timeout:.0f} s"}
    if proc.returncode:
        raise RuntimeError(f"{tool} on {path}: {proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


#: Runs a command as the child of a small process and writes its wall time and peak RSS to a file. Why: a
#: child spawned by this (large) benchmark process inherits its high-water mark at exec, so ``wait4``'s
#: ``ru_maxrss`` would report at least this process's own peak (Linux keeps the larger of the two).
LAUNCHER = """import json, os, sys, time
t0 = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as out:
    json.dump({"rc": os.waitstatus_to_exitcode(status), "maxrss_kb": usage.ru_maxrss,
               "wall_s": time.perf_counter() - t0}, out)
"""


def app_run(path: Path, run_dir: Path, epochs: int, tree: Path | None = None) -> dict:
    """``scripts/train.py`` on ``path`` as a whole process: wall time, peak RSS, its timings and metrics.

    ``tree``: run the code of that folder (:func:`checkout`) instead of this one's; it may predate
    timings.json (then only the wall time, the peak and metrics.json's figures)."""
    root = tree or REPO
    cmd = [sys.executable, str(root / "scripts" / "train.py"), "data=csv", f"data.path={path}",
           f"trainer.max_epochs={epochs}", "trainer.early_stopping_patience=null", "trainer.progress_bar=false",
           f"hydra.run.dir={run_dir}"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(tree or ""), os.environ.get("PYTHONPATH")])))
    log, measured = run_dir.with_suffix(".log"), run_dir.with_suffix(".rusage.json")
    with open(log, "wb") as sink:
        subprocess.run([sys.executable, "-c", LAUNCHER, str(measured), *cmd], cwd=root, stdout=sink,
                       stderr=subprocess.STDOUT, env=env, check=False)
    usage = json.loads(measured.read_text())
    wall, peak_mb = usage["wall_s"], usage["maxrss_kb"] / 1024
    if usage["rc"]:
        raise RuntimeError(f"{' '.join(cmd)} exited {usage['rc']}: {log.read_text()[-3000:]}")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    if tree is not None:
        return {"wall_s": wall, "peak_mb": peak_mb, "train_seconds": metrics["train_seconds"],
                "test_cindex": metrics["test_cindex"],
                "test_predictions_bytes": (run_dir / "test_predictions.csv").stat().st_size}
    timings = json.loads((run_dir / "timings.json").read_text())
    sizes = {name: (run_dir / name).stat().st_size for name in
             ("predictor.json", "test_predictions.csv", "last.pt", "best.pt", "metrics.json")}
    groups = {g: sum(timings.get(k, 0.0) for k in keys) for g, keys in GROUPS.items()}
    groups["writes"] += max(0.0, wall - sum(timings.values()))  # the interpreter's exit after the last figure
    return {"wall_s": wall, "peak_mb": peak_mb, "timings": timings, "groups": groups,
            "test_cindex": metrics["test_cindex"], "train_seconds": metrics["train_seconds"],
            "n_train": metrics["n_train"], "file_bytes": sizes}


def checkout(ref: str, folder: Path) -> Path:
    """The package, its config groups, scripts (and Hydra plugins, which older code had) at git ref ``ref``,
    laid out as the editable install maps them (``conf/`` as ``survopt_hydra/conf``), in ``folder``."""
    import shutil

    listed = subprocess.run(["git", "ls-tree", "--name-only", ref], cwd=REPO, check=True, capture_output=True,
                            text=True).stdout.split()
    parts = [p for p in ("survopt_hydra", "conf", "scripts", "hydra_plugins") if p in listed]  # plugins: older code
    archive = subprocess.run(["git", "archive", ref, *parts], cwd=REPO, check=True, capture_output=True).stdout
    folder.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    if (folder / "conf").is_dir() and not (folder / "survopt_hydra" / "conf").exists():
        shutil.move(str(folder / "conf"), str(folder / "survopt_hydra" / "conf"))
    return folder


def before_after(ref: str, folder: Path, n: int, epochs: int, repeats: int) -> dict:
    """The app at ``ref`` and now on the same n-patient CSV file (older code reads no Parquet), alternating
    run by run."""
    tree = checkout(ref, folder / "before")
    path = write_cohort(folder / f"before_{n}.csv", n)
    rounds = []
    for r in range(repeats):
        old = app_run(path, folder / f"old_{r}", epochs, tree)
        new = app_run(path, folder / f"new_{r}", epochs)
        rounds.append((old, new))
        print(f"before/after {r}: {old['wall_s']:.2f} s / {new['wall_s']:.2f} s", flush=True)
    med = lambda side, key: statistics.median(rd[side][key] for rd in rounds)  # noqa: E731
    return {"ref": ref, "n": n, "epochs": epochs,
            "before": {k: med(0, k) for k in ("wall_s", "peak_mb", "train_seconds", "test_cindex",
                                              "test_predictions_bytes")},
            "after": {"wall_s": med(1, "wall_s"), "peak_mb": med(1, "peak_mb"), "test_cindex": med(1, "test_cindex"),
                      "train_seconds": med(1, "train_seconds"),
                      "test_predictions_bytes": statistics.median(rd[1]["file_bytes"]["test_predictions.csv"]
                                                                  for rd in rounds),
                      "groups": _median_dicts([rd[1]["groups"] for rd in rounds])},
            "speedup": statistics.median(rd[0]["wall_s"] / rd[1]["wall_s"] for rd in rounds),
            "overhead_before": statistics.median(rd[0]["wall_s"] - rd[0]["train_seconds"] for rd in rounds),
            "overhead_after": statistics.median(rd[1]["wall_s"] - rd[1]["train_seconds"] for rd in rounds)}


def _machine() -> dict:
    import numpy
    import pyarrow
    import torch
    from run import cpu_model

    return {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
            "numpy": numpy.__version__, "pyarrow": pyarrow.__version__,
            "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)}


def _median_dicts(rows: list[dict]) -> dict:
    return {k: statistics.median(r[k] for r in rows) for k in rows[0]}


def slope(ns: list[int], values: list[float]) -> float | None:
    """Least-squares slope of log(value) on log(n); None with fewer than two positive points."""
    pts = [(math.log(n), math.log(v)) for n, v in zip(ns, values) if v and v > 0]
    if len(pts) < 2:
        return None
    mx, my = sum(p[0] for p in pts) / len(pts), sum(p[1] for p in pts) / len(pts)
    return sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)


def wait_for_quiet(limit: float, wait: float) -> float:
    """Wait up to ``wait`` seconds for the 1-minute load average to fall under ``limit``; the seconds waited."""
    t0 = time.monotonic()
    while os.getloadavg()[0] >= limit and time.monotonic() - t0 < wait:
        time.sleep(5)
    return time.monotonic() - t0


def run(quick: bool = False, epochs: int = 5, repeats: int = 3, sizes: list[int] | None = None,
        peer_cap: float = 300.0, quiet_load: float = 3.0, quiet_wait: float = 60.0) -> dict:
    sizes = sizes or ([1_000, 10_000] if quick else [10_000, 100_000, 1_000_000])
    repeats, epochs = (1, 2) if quick else (repeats, epochs)
    started = dt.datetime.now(dt.timezone.utc)
    result: dict[str, Any] = {"machine": _machine(), "started_utc": started.isoformat(timespec="seconds"),
                              "load_before": os.getloadavg()[0], "epochs": epochs, "repeats": repeats,
                              "sizes": sizes, "runs": [], "peers": [], "floor": {}}
    with tempfile.TemporaryDirectory(prefix="bench_scale_") as tmp:
        folder = Path(tmp)
        timed: dict[str, list[tuple[int, float]]] = {}  # (n, seconds) of each peer that ran
        for n in sizes:
            files = {fmt: write_cohort(folder / f"cohort_{n}.{fmt}", n) for fmt in ("csv", "parquet")}
            for fmt, path in files.items():
                rounds = []
                for r in range(repeats):
                    waited = wait_for_quiet(quiet_load, 0 if quick else quiet_wait)
                    load = os.getloadavg()[0]
                    app = app_run(path, folder / f"run_{n}_{fmt}_{r}", epochs)
                    app.update(waited_s=waited, load=load)
                    peers = {tool: probe(tool, path, fmt) for tool in ("floor", "pyarrow", "pandas", "loader")}
                    rounds.append((app, peers))
                apps = [a for a, _ in rounds]
                case = {"n": n, "format": fmt, "file_mb": path.stat().st_size / 2**20,
                        "float32_mb": n * (FEATURES + 2) * 4 / 2**20,
                        "wall_s": statistics.median(a["wall_s"] for a in apps),
                        "peak_mb": statistics.median(a["peak_mb"] for a in apps),
                        "groups": _median_dicts([a["groups"] for a in apps]),
                        "timings": _median_dicts([a["timings"] for a in apps]),
                        "test_cindex": apps[0]["test_cindex"], "n_train": apps[0]["n_train"],
                        "file_bytes": apps[0]["file_bytes"], "loads": [a["load"] for a in apps],
                        "walls": [a["wall_s"] for a in apps], "peaks_mb": [a["peak_mb"] for a in apps],
                        "waited_s": sum(a["waited_s"] for a in apps)}
                for tool in ("pyarrow", "pandas", "loader"):
                    case[f"{tool}_s"] = statistics.median(p[tool]["seconds"] for _, p in rounds)
                    case[f"{tool}_extra_mb"] = statistics.median(p[tool]["extra_mb"] for _, p in rounds)
                case["loader_over_pyarrow"] = statistics.median(p["loader"]["seconds"] / p["pyarrow"]["seconds"]
                                                                for _, p in rounds)
                case["load_over_pyarrow"] = statistics.median(a["timings"]["load"] / p["pyarrow"]["seconds"]
                                                              for a, p in rounds)
                case["floor_s"] = statistics.median(p["floor"]["seconds"] for _, p in rounds)
                case["epochs_for_25pct"] = statistics.median(_epochs_for(a, p["floor"]["seconds"], epochs, 0.25)
                                                             for a, p in rounds)
                case["overhead_share"] = statistics.median(  # each round against the floor measured beside it
                    (a["wall_s"] - a["timings"]["train"] - p["floor"]["seconds"]) / a["wall_s"] for a, p in rounds)
                result["runs"].append(case)
                print(_run_row(case), flush=True)
            loops = [probe("torch_loop", files["parquet"], "parquet", epochs) for _ in range(repeats)]
            result["peers"].append({"n": n, "tool": "torch_loop", **_median_dicts(loops)})
            print(f"torch loop {n}: {result['peers'][-1]}", flush=True)
            if not quick:
                for tool in ("lifelines", "sksurv"):
                    done = timed.setdefault(tool, [])
                    # the growth it showed between the last two sizes (n^2 until there are two)
                    power = slope(*zip(*done[-2:])) if len(done) >= 2 else 2.0
                    guess = done[-1][1] * (n / done[-1][0]) ** max(power or 2.0, 1.0) if done else 0.0
                    if guess > peer_cap:
                        result["peers"].append({"n": n, "tool": tool, "skipped":
                                                f"not run: {done[-1][1]:.1f} s at {done[-1][0]:,} patients, growing as "
                                                f"n^{power:.1f}: ~{guess:.0f} s expected > --peer-cap {peer_cap:.0f} s"})
                    else:
                        got = probe(tool, files["parquet"], "parquet", timeout=max(peer_cap, 60.0))
                        result["peers"].append({"n": n, "tool": tool, **got})
                        if "seconds" in got:
                            done.append((n, got["seconds"]))
                    print(f"{tool} {n}: {result['peers'][-1]}", flush=True)
    result["floor"] = {"seconds": statistics.median(c["floor_s"] for c in result["runs"])}
    result["load_after"] = os.getloadavg()[0]
    result["finished_utc"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    result["targets"] = targets(result)
    return result


def _epochs_for(app: dict, floor: float, epochs: int, share: float) -> float:
    """The fewest epochs at which this run's overhead share would be ``share``: its fixed part (wall -
    training - validation - floor) and its per-epoch validation held, training and validation per epoch
    as measured. inf when the validation alone costs more than ``share`` of an epoch."""
    t, v = app["timings"]["train"] / epochs, app["timings"]["validate"] / epochs
    fixed = app["wall_s"] - app["timings"]["train"] - app["timings"]["validate"] - floor
    gain = share * (t + v) - v
    return max(0.0, ((1 - share) * fixed - share * floor) / gain) if gain > 0 else math.inf


def targets(result: dict) -> dict:
    """The issue's four targets as ratios of this run's figures."""
    runs, big = result["runs"], max(result["sizes"])
    small = min(result["sizes"])
    out: dict[str, Any] = {}
    for fmt in ("csv", "parquet"):
        at = {c["n"]: c for c in runs if c["format"] == fmt}
        b, s = at[big], at[small]
        out[fmt] = {
            "overhead_share": b["overhead_share"],
            "epochs_for_25pct": b["epochs_for_25pct"],
            "loader_over_pyarrow": b["loader_over_pyarrow"],
            "load_over_pyarrow": b["load_over_pyarrow"],
            "rss_above_smallest_mb": b["peak_mb"] - s["peak_mb"],
            "rss_over_float32": (b["peak_mb"] - s["peak_mb"]) / b["float32_mb"],
            "slopes": {g: slope(sorted(at), [at[n]["groups"][g] for n in sorted(at)]) for g in GROUPS},
            "slopes_upper": {g: slope(sorted(at)[-2:], [at[n]["groups"][g] for n in sorted(at)[-2:]])
                             for g in GROUPS},
        }
        out[fmt]["slopes"]["whole run"] = slope(sorted(at), [at[n]["wall_s"] for n in sorted(at)])
        out[fmt]["slopes_upper"]["whole run"] = slope(sorted(at)[-2:], [at[n]["wall_s"] for n in sorted(at)[-2:]])
    return out


def _run_row(c: dict) -> str:
    g = c["groups"]
    return (f"| {c['n']:,} | {c['format']} | {c['wall_s']:.2f} | {g['start-up']:.2f} | {g['load']:.2f} | "
            f"{g['training']:.2f} | {g['validation']:.2f} | {g['final metrics']:.2f} | {g['writes']:.2f} | "
            f"{c['overhead_share']:.0%} | {c['peak_mb']:.0f} | {c['pyarrow_s']:.3f} | {c['pandas_s']:.3f} | "
            f"{c['loader_s']:.3f} | {c['loader_over_pyarrow']:.2f} | {c['load_over_pyarrow']:.2f} | "
            f"{c['test_cindex']:.4f} | {'/'.join(f'{x:.1f}' for x in c.get('loads', []))} |")


def _peer_cell(p: dict | None, key: str = "seconds") -> str:
    if p is None:
        return "-"
    if "skipped" in p:
        return p["skipped"]
    return f"{p[key]:.2f}"


def markdown(result: dict) -> str:
    m, fl, e = result["machine"], result["floor"], result["epochs"]
    lines = [
        "# Real cohorts at scale: whole app runs and their peers",
        "",
        f"Machine: {m['cores']}-core {m['cpu']}, {m['memory_gb']} GiB, Python {m['python']}, torch {m['torch']}, "
        f"numpy {m['numpy']}, pyarrow {m['pyarrow']}; {result['started_utc']} to {result['finished_utc']}; load "
        f"average {result['load_before']:.1f} before, {result['load_after']:.1f} after (a shared machine). Command: "
        f"`{result.get('command', 'python benchmarks/bench_scale.py')}` ({result['repeats']} round(s), medians; "
        "ratios per round). Every figure and `scale.png` are regenerated by the script (`scale.json` beside this "
        "file).",
        "",
        f"Each run: `python scripts/train.py data=csv data.path=<file> trainer.max_epochs={e} "
        "trainer.early_stopping_patience=null` (70/15/15 split, batch 512, the app's defaults otherwise). Seconds; "
        "start-up = process start to the data load plus building the model, optimizer and engine (torch's own "
        f"start-up, the floor, is {fl['seconds']:.2f} s here (median): a fresh interpreter's age after `import torch` "
        "and one AdamW step, measured in every round beside the run); writes = epochs.csv, checkpoints, predictor.json, test_predictions.csv, metrics.json/CSVs, "
        "Hydra's run dir and the interpreter's exit. overhead = (wall - training - floor) / wall. Peak RSS: the "
        "whole process, MB. Readers alone (fresh interpreters): pyarrow, pandas, the app's loader (`load_csv`); "
        "loader / pyarrow and the app's whole load phase / pyarrow. load avg: the 1-minute load average as each "
        "round's run started (2 cores: 2 = busy).",
        "",
        "| patients | format | wall | start-up | load | training | validation | final metrics | writes | "
        "overhead | peak RSS | pyarrow | pandas | loader | loader / pyarrow | load / pyarrow | test C | load avg |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        *(_run_row(c) for c in result["runs"]),
        "",
    ]
    peers = {(p["n"], p["tool"]): p for p in result["peers"]}
    apps = {c["n"]: c for c in result["runs"] if c["format"] == "parquet"}
    lines += ["Peers on the Parquet files (seconds). The plain torch loop: pyarrow read + standardize + the "
              f"same MLP, Breslow loss, AdamW, cosine and clipping for {e} epochs on one thread; its start = "
              "process age when training began. lifelines: `CoxPHFitter(penalizer=0.01)` on the app's training "
              "rows, then its concordance on the test rows. scikit-survival: Harrell's C, Uno's C, td-AUC (3 "
              "horizons), IBS (50 times) on the test rows for a fixed linear risk; `ours` = the app's own functions "
              "on the same rows (`concordance_index` + `split_metrics` without intervals).", "",
              "| patients | app training | torch loop training | torch loop start | torch loop whole | "
              "lifelines fit | lifelines C | scikit-survival metrics | ours, same metrics |",
              "|---|---|---|---|---|---|---|---|---|"]
    for n in result["sizes"]:
        loop, lf, sk = peers.get((n, "torch_loop")), peers.get((n, "lifelines")), peers.get((n, "sksurv"))
        lines.append(f"| {n:,} | {apps[n]['groups']['training']:.2f} | {_peer_cell(loop, 'train_seconds')} | "
                     f"{_peer_cell(loop, 'start_seconds')} | {_peer_cell(loop)} | {_peer_cell(lf, 'fit_seconds')} | "
                     f"{_peer_cell(lf, 'cindex_seconds')} | {_peer_cell(sk)} | {_peer_cell(sk, 'ours_seconds')} |")
    t = result["targets"]
    big = max(result["sizes"])
    lines += ["", f"Targets (issue 27) at {big:,} patients, this run:", "",
              "| target | CSV | Parquet | met |", "|---|---|---|---|"]

    def row(label: str, key: str, limit: float | None, fmt: str = "{:.2f}") -> None:
        if any(key not in t[f] for f in ("csv", "parquet")):  # a scale.json from an older version of this script
            return
        vals = [t[f][key] for f in ("csv", "parquet")]
        met = "-" if limit is None else "yes" if all(v <= limit for v in vals) else "no"
        lines.append(f"| {label} | {fmt.format(vals[0])} | {fmt.format(vals[1])} | {met} |")

    row("everything but training and torch's start-up, share of the wall time (<= 25%)", "overhead_share", 0.25,
        "{:.0%}")
    row("the epochs from which that share is 25% (fixed parts held, per-epoch parts as measured)",
        "epochs_for_25pct", None, "{:.1f}")
    row("reading: the loader / pyarrow (<= 2x)", "loader_over_pyarrow", 2.0, "{:.2f}x")
    row("the app's whole load phase / pyarrow's read", "load_over_pyarrow", None, "{:.2f}x")
    row(f"peak RSS above the {min(result['sizes']):,}-patient run / float32 data (<= 3x)", "rss_over_float32", 3.0,
        "{:.2f}x")
    lines += ["", "Growth with n: log-log slope of each part's time against the number of patients, over all "
              f"sizes / between the two largest (n log n: {nlogn_slope(min(result['sizes']), big):.2f} / "
              f"{nlogn_slope(sorted(result['sizes'])[-2], big):.2f}; n: 1; "
              "n^2: 2). Fixed costs (start-up, a few files) make a slope below 1.", "",
              "| part | CSV | Parquet | CSV, two largest | Parquet, two largest |", "|---|---|---|---|---|"]
    for g in [*GROUPS, "whole run"]:
        cells = [t[f][k][g] for k in ("slopes", "slopes_upper") for f in ("csv", "parquet")]
        lines.append(f"| {g} | " + " | ".join("-" if v is None else f"{v:.2f}" for v in cells) + " |")
    ba = result.get("before_after")
    if ba:
        b, a = ba["before"], ba["after"]
        lines += ["", f"Before / after: the app at `{ba['ref']}` and now on the same {ba['n']:,}-patient CSV file, "
                  f"{ba['epochs']} epochs, alternating run by run ({ba['started_utc']}, load average {ba['load']:.1f}; "
                  f"`{ba['command']}`). train = metrics.json's `train_seconds` (training + per-epoch validation).", "",
                  "| code | wall s | train s | wall - train s | peak RSS MB | test_predictions.csv bytes | test C |",
                  "|---|---|---|---|---|---|---|",
                  f"| `{ba['ref']}` | {b['wall_s']:.2f} | {b['train_seconds']:.2f} | {ba['overhead_before']:.2f} | "
                  f"{b['peak_mb']:.0f} | {b['test_predictions_bytes']:,.0f} | {b['test_cindex']:.4f} |",
                  f"| now | {a['wall_s']:.2f} | {a['train_seconds']:.2f} | {ba['overhead_after']:.2f} | "
                  f"{a['peak_mb']:.0f} | {a['test_predictions_bytes']:,.0f} | {a['test_cindex']:.4f} |",
                  "", f"Speed-up of the whole run: {ba['speedup']:.2f}x (per round, median)."]
    sizes = result["runs"][-1]["file_bytes"]
    lines += ["", f"Files of the {big:,}-patient Parquet run, bytes: "
              + ", ".join(f"{k} {v:,}" for k, v in sizes.items()) + ".", "", "![time against n](scale.png)", ""]
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    """The log-log plot: each part of the app's run, the whole run and the peers, against n."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    apps = {c["n"]: c for c in result["runs"] if c["format"] == "parquet"}
    ns = sorted(apps)
    fig, ax = plt.subplots(figsize=(8.5, 5.5))
    ax.plot(ns, [apps[n]["wall_s"] for n in ns], "k-o", lw=2, label="app: whole run (Parquet)")
    csv = {c["n"]: c for c in result["runs"] if c["format"] == "csv"}
    ax.plot(ns, [csv[n]["wall_s"] for n in ns], "k--o", lw=1, label="app: whole run (CSV)")
    for g, style in (("training", "C0-o"), ("load", "C1-o"), ("final metrics", "C2-o"), ("validation", "C3-o"),
                     ("writes", "C4-o"), ("start-up", "C5-o")):
        ax.plot(ns, [max(apps[n]["groups"][g], 1e-3) for n in ns], style, label=f"app: {g}")
    peers = {(p["n"], p["tool"]): p for p in result["peers"]}
    for tool, key, style, label in (("torch_loop", "train_seconds", "C0:s", "plain torch loop: training"),
                                    ("lifelines", "seconds", "C6:s", "lifelines CoxPH fit + C"),
                                    ("sksurv", "seconds", "C2:s", "scikit-survival metrics")):
        pts = [(n, peers[(n, tool)][key]) for n in ns if key in peers.get((n, tool), {})]
        if pts:
            ax.plot(*zip(*pts), style, label=label)
    ax.plot(ns, [apps[n]["pyarrow_s"] for n in ns], "C1:s", label="pyarrow read alone")
    ref = apps[ns[-1]]["groups"]["training"]
    ax.plot(ns, [ref * n * math.log(n) / (ns[-1] * math.log(ns[-1])) for n in ns], color="grey", lw=6, alpha=0.25,
            label="∝ n log n")
    ax.axhline(result["floor"]["seconds"], color="grey", ls=":", lw=1, label="torch floor")
    ax.set(xscale="log", yscale="log", xlabel="patients", ylabel="seconds",
           title=f"survopt-train, {result['epochs']} epochs, {result['machine']['cores']}-core "
                 f"{result['machine']['cpu']}, {result['started_utc'][:10]}")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    fig.subplots_adjust(left=0.09, right=0.68, top=0.93, bottom=0.1)
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10^3 and 10^4 patients, one round, 2 epochs, no "
                                                             "lifelines or scikit-survival")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="+")
    parser.add_argument("--peer-cap", type=float, default=300.0,
                        help="seconds a lifelines / scikit-survival call may be expected to take (else not run)")
    parser.add_argument("--quiet-load", type=float, default=3.0,
                        help="before each round, wait for the 1-minute load average to fall under this")
    parser.add_argument("--quiet-wait", type=float, default=60.0, help="... for at most this many seconds")
    parser.add_argument("--before", help="git ref: also run the app at that ref and now on a CSV cohort "
                                         "(--before-n patients), alternating (a before/after table)")
    parser.add_argument("--before-n", type=int, help="patients of the --before cohort (default: the largest size; "
                                                     "the old code may need minutes per run at 10^6)")
    parser.add_argument("--only-before", action="store_true", help="only the --before comparison; merge it into "
                                                                   "an existing <out>/scale.json")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    stem = "scale-quick" if args.quick else "scale"
    if args.only_before:
        result = json.loads((args.out / f"{stem}.json").read_text())
    else:
        result = run(args.quick, args.epochs, args.repeats, args.sizes, args.peer_cap, args.quiet_load,
                     args.quiet_wait)
        result["command"] = " ".join(["python benchmarks/bench_scale.py", *sys.argv[1:]])
    if args.before:
        with tempfile.TemporaryDirectory(prefix="bench_scale_before_") as tmp:
            started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
            result["before_after"] = before_after(args.before, Path(tmp), args.before_n or max(result["sizes"]),
                                                  result["epochs"], result["repeats"])
            result["before_after"].update(started_utc=started, load=os.getloadavg()[0],
                                          command=" ".join(["python benchmarks/bench_scale.py", *sys.argv[1:]]))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    text = markdown(result).replace("scale.png", f"{stem}.png")
    (args.out / f"{stem}.md").write_text(text)
    plot(result, args.out / f"{stem}.png")
    print(text)


if __name__ == "__main__":
    main()
