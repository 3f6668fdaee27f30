"""A run's PNG plots, rendered from the CSVs it leaves in its run dir (matplotlib, Agg, imported lazily).

Each follows the conventions of lifelines' and scikit-survival's plots and of survival papers:

* ``curves.png`` - per epoch (``epochs.csv``): the training loss, the validation loss and the
  validation C-index, each on its own axes. Both losses are the negative Cox partial
  log-likelihood divided by the number of events (per event), but the training one is the mean
  over mini-batches whose risk sets hold only the batch's rows, the validation one is computed
  once with risk sets over the whole validation split: with more rows in each risk set its value
  is higher by about log(rows / batch rows), so the two are not comparable and are not drawn on
  one axis (where they would look like overfitting);
* ``lr_schedule.png`` - the LR every applied optimizer step used (``lr_steps.csv``), one line per
  distinct trajectory; param groups that followed the same one share its line and legend entry;
* ``calibration.png`` - at each horizon, the test rows in groups (deciles, fewer for small test
  sets: >= 20 rows each) of predicted S(h): mean predicted S(h) against the Kaplan-Meier S(h)
  observed in the group with its 95% interval (error bars), and the diagonal (on it = calibrated);
* ``risk_groups.png`` - Kaplan-Meier curves of the test rows split into tertiles of predicted risk,
  with censoring ticks, 95% bands, a number-at-risk table under the time axis and the log-rank
  test across the groups (well separated curves = the ranking means something in time, not only
  in pairs).

The survival numbers (bands, counts, the log-rank test) come from :mod:`.km_stats`, tested against
lifelines. Why from files: importing matplotlib and drawing cost ~3 s of a ~3 s training run, so a
run draws nothing unless asked (``trainer.plots=true``); ``scripts/plot_run.py <run dir>`` draws
the same PNGs afterwards from the same files, at any time, for a finished or running run.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any, Sequence

Row = dict[str, Any]
PREDICTIONS = "test_predictions.csv"
SURV_PREFIX = "surv@"  # test_predictions.csv: one column of predicted S(h | x) per horizon h
RISK_GROUPS = ("low", "middle", "high")
MIN_CALIBRATION_ROWS = 20  # per calibration group: fewer rows give a KM interval wider than the plot


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt: Any, fig: Any, path: Path) -> Any:
    """Write ``fig`` as a PNG and close it; returned (closed, its artists intact) so callers and tests can
    read what was drawn. Written through a temporary file and a rename, as the run's other results: a
    ``path`` that is a link (a run dir is untrusted) is replaced, never followed, and never left torn."""
    import io

    from ..durable import write_atomic

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    write_atomic(buffer.getbuffer(), path, durable=False)
    return fig


def read_rows(path: Path) -> list[Row]:
    """A CSV the run wrote, numbers parsed (``repr`` floats round-trip exactly; empty cells -> NaN)."""
    def num(text: str) -> Any:
        try:
            return int(text)
        except ValueError:
            try:
                return float(text)
            except ValueError:
                return text if text else math.nan

    with Path(path).open(newline="", encoding="utf-8") as handle:
        return [{k: num(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def _best_epoch(history: Sequence[Row]) -> Any:
    finite = [r for r in history if math.isfinite(r["val_cindex"])]
    return max(finite, key=lambda r: r["val_cindex"])["epoch"] if finite else None


def plot_curves(history: Sequence[Row], path: Path) -> Any:
    """Training loss, validation loss and validation C-index against the epoch, on three axes."""
    plt = _pyplot()
    epochs = [r["epoch"] for r in history]
    best = _best_epoch(history)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.9))
    panels = [("train_loss", "tab:blue", "Training loss", "risk sets: each mini-batch's rows, mean over batches",
               "Cox loss per event"),
              ("val_loss", "tab:orange", "Validation loss", "risk sets: all validation rows",
               "Cox loss per event"),
              ("val_cindex", "tab:green", "Validation C-index", "Harrell's C (0.5 = random ranking)", "C-index")]
    for ax, (key, color, title, note, ylabel) in zip(axes, panels):
        ax.plot(epochs, [r[key] for r in history], color=color)
        if best is not None:
            ax.axvline(best, color="grey", linestyle=":", label=f"best epoch {best}")
        ax.set_title(f"{title}\n{note}", fontsize=10)
        ax.set(xlabel="epoch", ylabel=ylabel)
    if best is not None:
        axes[2].legend(loc="lower right")
    fig.text(0.5, 0.005, "Cox loss per event = -log partial likelihood / number of events. Larger risk sets "
             "give larger values: the two losses differ in scale and are not comparable.", ha="center",
             fontsize=8, color="dimgrey")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return _save(plt, fig, path)


def distinct_lr_lines(lr_steps: Sequence[Row]) -> list[tuple[list[str], list[float]]]:
    """(param groups, LR per step) per distinct trajectory, in column order: identical groups share one."""
    lines: dict[tuple[float, ...], list[str]] = {}
    for key in [k for k in (lr_steps[0] if lr_steps else {}) if k.startswith("lr/")]:
        lines.setdefault(tuple(r[key] for r in lr_steps), []).append(key[3:])
    return [(names, list(values)) for values, names in lines.items()]


def plot_lr_steps(lr_steps: Sequence[Row], path: Path, title: str = "LR applied per optimizer step") -> Any:
    """One line per distinct LR trajectory, its legend naming every param group that followed it."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 3.9))
    steps = [r["step"] for r in lr_steps]
    lines = distinct_lr_lines(lr_steps)
    for names, values in lines:
        ax.plot(steps, values, label=", ".join(names) if len(names) < 4 else f"{names[0]} and {len(names) - 1} more",
                drawstyle="steps-post")
    ax.set(xlabel="optimizer step", ylabel="learning rate", title=title)
    if lines:
        ax.legend(title="param group" + ("s" if any(len(n) > 1 for n, _ in lines) else ""), fontsize=9)
    if lr_steps and all(v > 0 for _, values in lines for v in values):
        ax.set_yscale("log")
    fig.tight_layout()
    return _save(plt, fig, path)


def _column(rows: Sequence[Row], key: str) -> Any:
    import torch

    return torch.tensor([float(r[key]) for r in rows], dtype=torch.float64)


def _groups(score: Any, k: int) -> list[Any]:
    """Row indices in ``k`` groups of (nearly) equal size, by increasing ``score``."""
    import torch

    order = torch.argsort(score, stable=True)
    return [g for g in torch.tensor_split(order, k) if g.numel()]


def _calibration_groups(n: int) -> int:
    """Deciles, or fewer groups of >= MIN_CALIBRATION_ROWS rows each; at least two (a single group shows no trend)."""
    return min(10, max(2, n // MIN_CALIBRATION_ROWS)) if n >= 2 else 1


def calibration_points(pred: Any, durations: Any, events: Any, horizon: float) -> list[dict[str, float]]:
    """Per group of predicted S(horizon): its size, mean prediction and KM S(horizon) with the 95% band.

    A group whose rows all left before ``horizon`` while its KM was above 0 has no observed S there
    (the KM stops at its last time) and is left out."""
    from .km_stats import KaplanMeier

    points = []
    for g in _groups(pred, _calibration_groups(pred.numel())):
        km = KaplanMeier.fit(durations[g], events[g])
        s, lo, hi = (float(v[0]) for v in km.at([horizon]))
        if float(durations[g].max()) < horizon and s > 0:
            continue
        points.append({"n": g.numel(), "predicted": float(pred[g].mean()), "observed": s, "lower": lo, "upper": hi})
    return points


def plot_calibration(rows: Sequence[Row], path: Path) -> Any:
    """At each horizon: mean predicted S(t) per group against the Kaplan-Meier S(t) with its 95% interval."""
    plt = _pyplot()
    col = lambda key: _column(rows, key)  # noqa: E731
    t, e = col("duration"), col("event")
    at = [k for k in (rows[0] if rows else {}) if k.startswith(SURV_PREFIX)]
    k = _calibration_groups(len(rows))
    fig, axes = plt.subplots(1, max(len(at), 1), figsize=(4.2 * max(len(at), 1), 4.6), squeeze=False)
    for ax, key in zip(axes[0], at):
        h = float(key[len(SURV_PREFIX):])
        pts = calibration_points(col(key), t, e, h)
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--", label="perfect calibration")
        x, y = [p["predicted"] for p in pts], [p["observed"] for p in pts]
        err = [[p["observed"] - p["lower"] for p in pts], [p["upper"] - p["observed"] for p in pts]]
        ax.errorbar(x, y, yerr=err, fmt="o-", ms=4, capsize=3, lw=1, label="Kaplan-Meier, 95% CI")
        ax.set(xlim=(-0.02, 1.02), ylim=(-0.02, 1.02), aspect="equal", xlabel=f"predicted S({h:g})",
               ylabel=f"observed S({h:g}) (Kaplan-Meier)", title=f"t = {h:g}")
        ax.legend(loc="upper left", fontsize=8)
    groups = {10: "deciles", 5: "quintiles", 4: "quartiles", 3: "tertiles", 2: "halves"}.get(k, f"{k} groups")
    fig.suptitle(f"Calibration on the test set: {groups} of predicted survival "
                 f"({len(rows) // max(k, 1)}+ rows each)")
    fig.tight_layout()
    return _save(plt, fig, path)


def plot_risk_groups(rows: Sequence[Row], path: Path) -> Any:
    """Kaplan-Meier curves of the predicted-risk tertiles: censoring ticks, 95% bands, the number at risk
    at each time tick (lifelines' ``add_at_risk_counts`` convention) and the log-rank p-value."""
    import torch

    from .km_stats import KaplanMeier, format_p, logrank_test, number_at_risk

    plt = _pyplot()
    col = lambda key: _column(rows, key)  # noqa: E731
    t, e, risk = col("duration"), col("event"), col("risk")
    groups = _groups(risk, len(RISK_GROUPS))
    names = [f"{n} risk" for n in RISK_GROUPS[: len(groups)]] if len(groups) == len(RISK_GROUPS) else \
        [f"group {i + 1}" for i in range(len(groups))]
    fig, (ax, table) = plt.subplots(2, 1, figsize=(9.2, 5.6), gridspec_kw={"height_ratios": [4, 1.1], "hspace": 0.32})
    colors = ["tab:blue", "tab:orange", "tab:red"] if len(groups) == 3 else [f"C{i}" for i in range(len(groups))]
    for name, g, color in zip(names, groups, colors):
        km = KaplanMeier.fit(t[g], e[g])
        start = torch.zeros(1, dtype=torch.float64)
        one = torch.ones(1, dtype=torch.float64)
        x = torch.cat([start, km.times]).numpy()
        ax.step(x, torch.cat([one, km.survival]).numpy(), where="post", color=color, lw=1.5,
                label=f"{name} (n={g.numel()})")
        ax.fill_between(x, torch.cat([one, km.lower]).numpy(), torch.cat([one, km.upper]).numpy(), step="post",
                        color=color, alpha=0.2, lw=0)
        cens = km.censored > 0
        ax.plot(km.times[cens].numpy(), km.survival[cens].numpy(), ls="none", marker="|", ms=5, mew=0.8,
                color=color)
    title = "Test set by tertile of predicted risk"
    if len(groups) > 1:
        labels = torch.cat([torch.full((g.numel(),), i) for i, g in enumerate(groups)])
        lr = logrank_test(t[torch.cat(groups)], e[torch.cat(groups)], labels)
        legend_title = f"log-rank {format_p(lr.p_value)} (\u03c7\u00b2 = {lr.statistic:.1f}, df = {lr.df})"
    else:
        legend_title = None
    ax.plot([], [], ls="none", marker="|", ms=6, color="black", label="censored")
    ax.fill_between([], [], [], color="grey", alpha=0.3, lw=0, label="95% CI (Greenwood, log-log)")
    ax.legend(title=legend_title, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, title_fontsize=9,
              alignment="left", frameon=False)  # outside: a legend inside would hide curves or bands
    ax.set(ylabel="survival probability", ylim=(0, 1.02), title=title)
    ax.set_xlim(0, float(t.max()) * 1.02 if t.numel() else 1.0)
    ax.set_xlabel("time")
    ticks = [x for x in ax.get_xticks() if ax.get_xlim()[0] <= x <= ax.get_xlim()[1]]
    table.set_xlim(ax.get_xlim())
    table.set_ylim(len(groups) - 0.5, -0.5)
    for i, (g, color) in enumerate(zip(groups, colors)):
        for x, n in zip(ticks, number_at_risk(t[g], ticks).tolist()):
            table.text(x, i, str(n), ha="center", va="center", fontsize=9, color=color)
    table.set_yticks(range(len(groups)), names)
    for label, color in zip(table.get_yticklabels(), colors):
        label.set_color(color)
    table.set_xticks([])
    table.tick_params(axis="y", length=0, pad=22)
    for side in ("top", "right", "bottom", "left"):
        table.spines[side].set_visible(False)
    table.set_title("Number at risk", loc="left", fontsize=9, pad=2)
    fig.subplots_adjust(left=0.13, right=0.66, top=0.94, bottom=0.02)
    return _save(plt, fig, path)


def plot_survival(rows: Sequence[Row], run_dir: Path) -> list[Path]:
    """``calibration.png`` and ``risk_groups.png`` from ``test_predictions.csv``'s rows (none without rows)."""
    if not rows:
        return []
    plot_calibration(rows, run_dir / "calibration.png")
    plot_risk_groups(rows, run_dir / "risk_groups.png")
    return [run_dir / "calibration.png", run_dir / "risk_groups.png"]


def _plot_epochs(rows: Sequence[Row], run_dir: Path) -> list[Path]:
    plot_curves(rows, run_dir / "curves.png")
    return [run_dir / "curves.png"]


def _plot_lr(rows: Sequence[Row], run_dir: Path) -> list[Path]:
    plot_lr_steps(rows, run_dir / "lr_schedule.png")
    return [run_dir / "lr_schedule.png"]


def render_run(run_dir: str | Path) -> list[Path]:
    """Every plot whose CSV exists in ``run_dir``; returns the PNGs written (FileNotFoundError: no CSV;
    ValueError naming the CSV: one without the columns or numbers its plot needs)."""
    run_dir = Path(run_dir)
    written: list[Path] = []
    for name, draw in (("epochs.csv", _plot_epochs), ("lr_steps.csv", _plot_lr), (PREDICTIONS, plot_survival)):
        if (run_dir / name).is_file():
            try:
                written += draw(read_rows(run_dir / name), run_dir)
            except (KeyError, ValueError, TypeError) as exc:
                raise ValueError(f"{run_dir / name}: not a survopt-train {name} ({type(exc).__name__}: {exc})") \
                    from None
    if not written:
        raise FileNotFoundError(f"{run_dir}: no epochs.csv, lr_steps.csv or {PREDICTIONS}; pass a survopt-train "
                                "run directory")
    return written
