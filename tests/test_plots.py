"""The run's plots: the numbers they draw against lifelines, what each axis holds, and the app drawing them.

lifelines is the reference for every survival figure: ``KaplanMeierFitter`` (survival,
``confidence_interval_``, ``event_table``), ``add_at_risk_counts`` (its tick labels are parsed),
``multivariate_logrank_test`` / ``logrank_test``. Tolerances: 1e-9 on float64 sums of a few
hundred terms (any x86 CPU agrees far below that).
"""
from __future__ import annotations

import csv
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from survopt_hydra.app.km_stats import KaplanMeier, format_p, logrank_test, number_at_risk
from survopt_hydra.app.plots import (calibration_points, distinct_lr_lines, plot_calibration, plot_curves,
                                     plot_lr_steps, plot_risk_groups, read_rows)

lifelines = pytest.importorskip("lifelines")
from lifelines import KaplanMeierFitter  # noqa: E402
from lifelines.statistics import logrank_test as ll_logrank_test  # noqa: E402
from lifelines.statistics import multivariate_logrank_test  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TOL = 1e-9


def _data(kind: str, seed: int = 0, n: int = 150) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    if kind == "ties":  # integer days: many tied times, events and censorings at one time
        return rng.integers(1, 40, n).astype(float), (rng.random(n) < 0.6).astype(float)
    if kind == "ends_at_zero":  # the longest row is an event: S reaches 0
        t = rng.exponential(10, n)
        e = (rng.random(n) < 0.7).astype(float)
        e[np.argmax(t)] = 1.0
        return t, e
    if kind == "no_events":
        return rng.exponential(10, n), np.zeros(n)
    return rng.exponential(10, n), (rng.random(n) < 0.3).astype(float)  # heavy censoring


@pytest.mark.parametrize("kind", ["ties", "ends_at_zero", "no_events", "censored"])
def test_kaplan_meier_and_band_equal_lifelines(kind):
    t, e = _data(kind)
    km = KaplanMeier.fit(t, e)
    ref = KaplanMeierFitter().fit(t, e)
    at = km.times.numpy()
    np.testing.assert_allclose(km.survival, ref.survival_function_.loc[at].iloc[:, 0], rtol=0, atol=TOL)
    ci = ref.confidence_interval_.loc[at]
    np.testing.assert_allclose(km.lower, ci.iloc[:, 0], rtol=0, atol=TOL)
    np.testing.assert_allclose(km.upper, ci.iloc[:, 1], rtol=0, atol=TOL)
    table = ref.event_table.loc[at]
    np.testing.assert_array_equal(km.at_risk, table["at_risk"])
    np.testing.assert_array_equal(km.events, table["observed"])
    np.testing.assert_array_equal(km.censored, table["censored"])
    assert bool((km.lower <= km.survival).all() and (km.survival <= km.upper).all())
    # read at any time, before the first one included, as lifelines' step functions
    probe = np.array([0.0, *np.quantile(t, [0.1, 0.5, 0.9]), t.max() + 1])
    s, lo, hi = km.at(probe)
    np.testing.assert_allclose(s, ref.survival_function_at_times(probe), atol=TOL)
    ci_at = np.array([ref.confidence_interval_.loc[:p].iloc[-1].to_numpy() for p in probe])
    np.testing.assert_allclose(np.stack([lo.numpy(), hi.numpy()], 1), ci_at, atol=TOL)


def test_kaplan_meier_by_hand():
    """Four rows: S = 3/4, 1/2, 0; Greenwood sums 1/12, 1/4; log(-log) band at t=1 from those."""
    km = KaplanMeier.fit([1, 2, 2, 3], [1, 1, 0, 1])
    assert km.survival.tolist() == pytest.approx([0.75, 0.5, 0.0])
    log_s = math.log(0.75)
    lower = math.exp(-math.exp(math.log(-log_s) + 1.959963984540054 * math.sqrt(1 / 12) / abs(log_s)))
    assert float(km.lower[0]) == pytest.approx(lower, abs=1e-12)
    assert (float(km.lower[2]), float(km.upper[2])) == (0.0, 0.0)  # S = 0: no band


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_logrank_equals_lifelines(seed):
    t, e = _data("ties", seed, n=240)
    groups = np.random.default_rng(seed + 10).integers(0, 3, t.size)
    t = t + groups * seed * 3  # seed 0: same distribution; later seeds: separated groups
    ref = multivariate_logrank_test(t, groups, e)
    got = logrank_test(t, e, groups)
    assert got.df == ref.degrees_of_freedom == 2
    assert got.statistic == pytest.approx(ref.test_statistic, rel=1e-9)
    assert got.p_value == pytest.approx(ref.p_value, rel=1e-7, abs=1e-300)
    two = groups < 2
    a, b = two & (groups == 0), two & (groups == 1)
    ref2 = ll_logrank_test(t[a], t[b], e[a], e[b])
    got2 = logrank_test(t[two], e[two], groups[two])
    assert got2.df == 1 and got2.statistic == pytest.approx(ref2.test_statistic, rel=1e-9)
    assert got2.p_value == pytest.approx(ref2.p_value, rel=1e-7, abs=1e-300)
    with pytest.raises(ValueError, match="two groups"):
        logrank_test(t, e, np.zeros(t.size, dtype=int))


def test_format_p():
    assert [format_p(p) for p in (0.5, 0.0312, 0.00024, 9e-5, 0.0)] == \
        ["p = 0.5", "p = 0.031", "p = 0.00024", "p < 0.0001", "p < 0.0001"]


def _at_risk_from_lifelines(fitters, ticks) -> list[list[int]]:
    """Numbers at risk per fitter and tick as lifelines' ``add_at_risk_counts`` prints them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from lifelines.plotting import add_at_risk_counts

    fig, ax = plt.subplots()
    for f in fitters:
        f.plot_survival_function(ax=ax)
    ax.set_xlim(0, max(ticks) + 1)
    add_at_risk_counts(*fitters, ax=ax, rows_to_show=["At risk"], xticks=list(ticks))
    labels = [lbl.get_text() for lbl in fig.axes[-1].get_xticklabels()]
    plt.close(fig)
    counts = [[int(m) for m in re.findall(r"(\d+)\s*$", line, re.M)] for line in
              [lbl.split("\n") for lbl in labels] for line in ["\n".join(line)]]
    return [list(col) for col in zip(*counts)]


def test_number_at_risk_equals_add_at_risk_counts():
    t, e = _data("ties", 3, n=200)  # integer times: ticks fall on durations, where the convention shows
    halves = [slice(0, 100), slice(100, 200)]
    fitters = [KaplanMeierFitter(label=f"g{i}").fit(t[h], e[h]) for i, h in enumerate(halves)]
    ticks = [0.0, 5.0, 10.0, 20.0, 30.0, 39.0]
    assert [number_at_risk(t[h], ticks).tolist() for h in halves] == _at_risk_from_lifelines(fitters, ticks)


def _write_predictions(path: Path, t, e, risk, horizons, surv) -> list[dict]:
    keys = ["duration", "event", "risk", *[f"surv@{h:g}" for h in horizons]]
    with path.open("w", newline="") as handle:
        w = csv.writer(handle)
        w.writerow(keys)
        for i in range(len(t)):
            w.writerow([repr(float(t[i])), repr(float(e[i])), repr(float(risk[i])), *[repr(float(s)) for s in surv[i]]])
    return read_rows(path)


@pytest.fixture(scope="module")
def gbsg2_rows(tmp_path_factory):
    """GBSG2 (lifelines' copy) with a crude risk score (positive nodes, tied values) and a Weibull-like S(t|x)."""
    df = lifelines.datasets.load_gbsg2()
    t, e = df["time"].to_numpy(float), df["cens"].to_numpy(float)
    risk = df["pnodes"].to_numpy(float) / 10.0
    horizons = [365.0, 1000.0, 1800.0]
    surv = np.exp(-np.outer(np.exp(risk - 0.5), (np.array(horizons) / 2500.0) ** 1.2))
    rows = _write_predictions(tmp_path_factory.mktemp("pred") / "test_predictions.csv", t, e, risk, horizons, surv)
    return rows, t, e, risk, horizons, surv


def test_risk_group_plot_draws_lifelines_numbers(gbsg2_rows, tmp_path):
    rows, t, e, risk, _, _ = gbsg2_rows
    fig = plot_risk_groups(rows, tmp_path / "risk_groups.png")
    ax, table = fig.axes
    tertiles = np.array_split(np.argsort(risk, kind="stable"), 3)
    fitters = [KaplanMeierFitter().fit(t[g], e[g]) for g in tertiles]
    curves = [line for line in ax.get_lines() if line.get_drawstyle() == "steps-post"]
    ticks = [line for line in ax.get_lines() if line.get_marker() == "|" and len(line.get_xdata())]
    assert len(curves) == len(ticks) == 3
    for f, g, curve, cens in zip(fitters, tertiles, curves, ticks):
        sf = f.survival_function_.iloc[:, 0]  # lifelines' timeline starts at 0 with S = 1, as the plot does
        np.testing.assert_allclose(curve.get_xdata(), sf.index, atol=0)
        np.testing.assert_allclose(curve.get_ydata(), sf.to_numpy(), atol=TOL)
        censored = f.event_table.index[f.event_table["censored"] > 0]
        np.testing.assert_allclose(cens.get_xdata(), censored)
        np.testing.assert_allclose(cens.get_ydata(), f.survival_function_at_times(censored), atol=TOL)
        assert f"(n={len(g)})" in " ".join(x.get_text() for x in ax.get_legend().get_texts())
    bands = ax.collections[:3]
    for f, band in zip(fitters, bands):  # fill_between(step="post"): its vertices hold lower and upper
        ys = band.get_paths()[0].vertices[:, 1]
        ci = f.confidence_interval_.to_numpy().ravel()
        assert np.abs(ci[:, None] - ys[None, :]).min(1).max() < TOL  # every bound is drawn
        assert ys.min() >= ci.min() - TOL and ys.max() <= ci.max() + TOL  # and nothing else
    groups = np.concatenate([np.full(len(g), i) for i, g in enumerate(tertiles)])
    ref = multivariate_logrank_test(t[np.concatenate(tertiles)], groups, e[np.concatenate(tertiles)])
    title = ax.get_legend().get_title().get_text()
    assert format_p(ref.p_value) in title and f"{ref.test_statistic:.1f}" in title and "df = 2" in title
    xticks = [x for x in ax.get_xticks() if 0 <= x <= ax.get_xlim()[1]]
    drawn = [[int(x.get_text()) for x in table.texts if x.get_position()[1] == row] for row in range(3)]
    assert drawn == _at_risk_from_lifelines(fitters, xticks)
    assert [x.get_text() for x in table.get_yticklabels()] == ["low risk", "middle risk", "high risk"]


def test_calibration_points_are_lifelines_km_per_decile(gbsg2_rows, tmp_path):
    rows, t, e, _, horizons, surv = gbsg2_rows
    fig = plot_calibration(rows, tmp_path / "calibration.png")
    assert len(fig.axes) == len(horizons)
    for j, (ax, h) in enumerate(zip(fig.axes, horizons)):
        deciles = np.array_split(np.argsort(surv[:, j], kind="stable"), 10)
        got = calibration_points(torch.tensor(surv[:, j]), torch.tensor(t), torch.tensor(e), h)
        assert len(got) == 10 and [p["n"] for p in got] == [len(g) for g in deciles]
        for p, g in zip(got, deciles):
            f = KaplanMeierFitter().fit(t[g], e[g])
            assert p["predicted"] == pytest.approx(surv[g, j].mean(), abs=1e-12)
            assert p["observed"] == pytest.approx(float(f.survival_function_at_times(h).iloc[0]), abs=TOL)
            lo, hi = (float(v) for v in f.confidence_interval_.loc[:h].iloc[-1])
            assert (p["lower"], p["upper"]) == pytest.approx((lo, hi), abs=TOL)
        line = next(x for x in ax.get_lines() if x.get_marker() == "o")
        np.testing.assert_allclose(np.asarray(line.get_xdata(), float), [p["predicted"] for p in got])
        np.testing.assert_allclose(np.asarray(line.get_ydata(), float), [p["observed"] for p in got])
        bars = ax.collections[-1].get_segments()  # the error bars: lower to upper at each point
        np.testing.assert_allclose([[s[0][1], s[1][1]] for s in bars], [[p["lower"], p["upper"]] for p in got])
        diagonal = next(x for x in ax.get_lines() if x.get_linestyle() == "--")
        assert list(diagonal.get_xdata()) == list(diagonal.get_ydata()) == [0, 1]


def test_calibration_drops_a_group_whose_follow_up_ends_before_the_horizon():
    t = torch.tensor([1.0, 2, 3, 4, 5, 6, 7, 8, 50, 60, 70, 80] * 5)
    e = torch.zeros_like(t)
    pred = torch.where(t < 10, 0.1, 0.9) + torch.linspace(0, 0.01, t.numel())
    pts = calibration_points(pred, t, e, 20.0)
    assert len(pts) == 1 and pts[0]["predicted"] > 0.9  # the short-follow-up half has no KM at t = 20


def test_curves_put_each_loss_on_its_own_axes(tmp_path):
    history = [{"epoch": i + 1, "train_loss": 5.7 - 0.01 * i, "val_loss": 6.4 - 0.005 * i,
                "val_cindex": 0.6 + 0.01 * (i % 4)} for i in range(8)]
    fig = plot_curves(history, tmp_path / "curves.png")
    train, val, cindex = fig.axes
    for ax, key in ((train, "train_loss"), (val, "val_loss"), (cindex, "val_cindex")):
        (line,) = [x for x in ax.get_lines() if x.get_linestyle() == "-"]
        assert list(line.get_ydata()) == [r[key] for r in history]
    assert "per event" in train.get_ylabel() and "per event" in val.get_ylabel()
    assert "mini-batch" in train.get_title() and "validation rows" in val.get_title()
    best = [x for x in cindex.get_lines() if x.get_linestyle() == ":"]
    assert best and list(best[0].get_xdata()) == [4, 4]  # first epoch at the highest C-index


def test_lr_plot_draws_one_line_per_distinct_trajectory(tmp_path):
    steps = [{"step": s, "lr/default": 0.1 * 0.9**s, "lr/default/no_decay": 0.1 * 0.9**s,
              "lr/backbone.*": 0.01 * 0.9**s, "lr/backbone.*/no_decay": 0.01 * 0.9**s, "lr/head": 0.1}
             for s in range(20)]
    assert [names for names, _ in distinct_lr_lines(steps)] == \
        [["default", "default/no_decay"], ["backbone.*", "backbone.*/no_decay"], ["head"]]
    fig = plot_lr_steps(steps, tmp_path / "lr.png")
    (ax,) = fig.axes
    assert len(ax.get_lines()) == 3
    assert [x.get_text() for x in ax.get_legend().get_texts()] == \
        ["default, default/no_decay", "backbone.*, backbone.*/no_decay", "head"]


def _nontrivial_png(path: Path, min_size: tuple[int, int]) -> None:
    from PIL import Image

    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[0] >= min_size[0] and im.size[1] >= min_size[1], (path, im.size)
        pixels = np.asarray(im.convert("RGB"))
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50, path  # drawn, not a blank canvas
    assert (pixels < 200).any(axis=2).mean() > 0.01, path  # some ink


@pytest.mark.slow
def test_app_with_plots_writes_images_and_plot_run_redraws_them(tmp_path):
    """``scripts/train.py trainer.plots=true`` writes the four PNGs; ``scripts/plot_run.py`` on the run dir
    redraws them from its CSVs, byte for byte (Agg's PNGs carry no timestamp)."""
    run = tmp_path / "run"
    proc = subprocess.run([sys.executable, "scripts/train.py", f"hydra.run.dir={run}", "trainer.plots=true",
                           "trainer.max_epochs=5", "trainer.progress_bar=false"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    sizes = {"curves.png": (1200, 350), "lr_schedule.png": (600, 350), "calibration.png": (1200, 400),
             "risk_groups.png": (850, 500)}
    drawn = {}
    for name, size in sizes.items():
        _nontrivial_png(run / name, size)
        drawn[name] = (run / name).read_bytes()
        (run / name).unlink()
    proc = subprocess.run([sys.executable, "scripts/plot_run.py", str(run)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == [str(run / n) for n in sizes]
    for name, data in drawn.items():
        assert (run / name).read_bytes() == data, name


def _plot_run_main():
    import importlib.util

    spec = importlib.util.spec_from_file_location("plot_run_under_test", ROOT / "scripts" / "plot_run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def test_plot_run_refuses_a_bad_csv_in_one_line_naming_it(gbsg2_rows, tmp_path, capsys):
    main = _plot_run_main()
    (tmp_path / "test_predictions.csv").write_text("duration,event,risk\n1,x,2\n")
    assert main([str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(tmp_path / "test_predictions.csv") in err[0] and "'x'" in err[0]
    (tmp_path / "test_predictions.csv").write_text("duration,event\n1,1\n")  # no risk column
    assert main([str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "test_predictions.csv" in err[0] and "risk" in err[0]


def test_plots_never_write_through_a_link(gbsg2_rows, tmp_path):
    """A run dir is untrusted: a ``risk_groups.png`` that links elsewhere is replaced or refused, never
    followed (the file it points to keeps its bytes)."""
    from survopt_hydra.app.plots import render_run

    rows = gbsg2_rows[0]
    _write_predictions(tmp_path / "test_predictions.csv", [r["duration"] for r in rows], [r["event"] for r in rows],
                       [r["risk"] for r in rows], [], [[] for _ in rows])
    outside = tmp_path.parent / f"{tmp_path.name}-outside.txt"
    outside.write_text("keep")
    (tmp_path / "risk_groups.png").symlink_to(outside)
    try:
        render_run(tmp_path)
    except OSError:
        pass  # refusing the link is as good as replacing it
    assert outside.read_text() == "keep"


@pytest.mark.parametrize("kind", ["ties", "ends_at_zero"])
def test_kaplan_meier_equals_the_metrics_one(kind):
    """The plots' KM and the time-dependent metrics' (survival/timedep.py) are one estimate."""
    from survopt_hydra.survival.timedep import kaplan_meier

    t, e = _data(kind, 5)
    times, surv = kaplan_meier(t, e)
    km = KaplanMeier.fit(t, e)
    assert torch.equal(km.times, times[1:]) and torch.allclose(km.survival, surv[1:], rtol=0, atol=1e-12)
