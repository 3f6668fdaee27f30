"""What a run leaves in its Hydra run dir, besides checkpoints.

* ``epochs.csv`` - one row per epoch (epoch, train_loss, val_cindex, val_loss, lr/<group>,
  seconds), rewritten atomically from the in-memory history each epoch, so it always
  matches ``last.pt`` and a resumed run's file equals an uninterrupted run's;
* ``lr_steps.csv`` - the LR of every param group at every applied optimizer step;
* ``metrics.json`` - the final figures, and ``metrics.csv`` - the same figures as one CSV row
  (lists such as td-AUC flattened to ``test_td_auc@<horizon>``, intervals such as ``test_cindex_ci``
  to ``test_cindex_ci_lo`` / ``_hi``), beside ``epochs.csv``;
* ``test_predictions.csv`` (written by :func:`.predictor.finish_run`) - the data behind the
  survival plots;
* ``tb/`` - TensorBoard scalars, only with ``trainer.tensorboard=true``: each epoch's row at
  step = epoch, and the final figures (Uno's C, IBS, td-AUC, test C-index) at the best epoch;
* PNG plots (:mod:`.plots`) only with ``trainer.plots=true``; ``scripts/plot_run.py <run dir>``
  draws them later from the CSVs;
* the summary line, the last line the app prints to stdout.

Why opt-in: importing tensorboard (~0.3 s) and matplotlib (~1 s) and drawing (~2 s) cost more
than a default run's training; nothing here imports either unless asked.
"""
from __future__ import annotations

import csv
import io
import json
import logging
from pathlib import Path
from typing import Any, Sequence

from ..durable import write_text_atomic
from .plots import plot_curves, plot_lr_steps  # noqa: F401 (re-exported: scripts/plot_schedule.py)

log = logging.getLogger(__name__)

Row = dict[str, Any]


def summary_line(metrics: dict[str, Any]) -> str:
    """``test C-index: 0.xxxx (95% CI 0.xxx-0.xxx) (best epoch N, val C-index 0.xxxx)``; without the
    interval when metrics has none (an older run's, or a resample-free split)."""
    ci = metrics.get("test_cindex_ci")
    interval = f" (95% CI {ci[0]:.3f}-{ci[1]:.3f})" if ci else ""
    return (f"test C-index: {metrics['test_cindex']:.4f}{interval} (best epoch {metrics['best_epoch']}, "
            f"val C-index {metrics['val_cindex']:.4f})")


def csv_text(rows: Sequence[Row]) -> str:
    """Rows as CSV text: every key any row has is a column (first-seen order), floats as ``repr`` (exact)."""
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (repr(v) if isinstance(v, float) else v) for k, v in row.items()})
    return buf.getvalue()


def flat_metrics(metrics: dict[str, Any]) -> Row:
    """metrics.json as one flat row: a list ``key`` paired with ``horizons`` becomes ``key@<h>`` columns,
    an interval ``key_ci`` (``[lo, hi]`` or None) ``key_ci_lo`` and ``key_ci_hi``."""
    at = metrics.get("horizons") or []
    row: Row = {}
    for key, value in metrics.items():
        if key.endswith("_ci"):
            row[f"{key}_lo"], row[f"{key}_hi"] = value if isinstance(value, list) else (None, None)
        elif isinstance(value, list) and key != "horizons" and len(value) == len(at):
            row.update({f"{key}@{h:g}": v for h, v in zip(at, value)})
        elif isinstance(value, list):
            row.update({f"{key}[{i}]": v for i, v in enumerate(value)})
        else:
            row[key] = value
    return row


#: metrics.json figures that go to TensorBoard at the best epoch (with every ``*@<horizon>`` td-AUC).
TB_FINAL = ("test_cindex", "test_uno_cindex", "test_ibs", "test_td_auc_mean", "val_uno_cindex", "val_ibs",
            "val_td_auc_mean")


class RunOutputs:
    """Writes the per-epoch and final files of one run into ``run_dir``.

    ``tensorboard``/``plots``: ``trainer.tensorboard``/``trainer.plots`` (both off by default)."""

    def __init__(self, run_dir: Path, purge_epoch: int | None = None, *, tensorboard: bool = False,
                 plots: bool = False) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.plots = plots
        self._tb = self._open_tensorboard(purge_epoch) if tensorboard else None

    def _open_tensorboard(self, purge_epoch: int | None) -> Any:
        from ..engine.monitors import SinkUnavailableError, TensorBoardSink

        try:  # purge_step drops events a killed run logged after its last checkpoint
            return TensorBoardSink(self.run_dir / "tb", step_key="epoch", purge_step=purge_epoch)
        except SinkUnavailableError:
            log.warning("trainer.tensorboard: the tensorboard package is not installed (pip install tensorboard); "
                        "no TensorBoard scalars, epochs.csv and metrics.csv hold the same figures")
            return None

    def epoch_end(self, history: Sequence[Row]) -> None:
        write_text_atomic(csv_text(history), self.run_dir / "epochs.csv", durable=False)
        if self._tb is not None and history:
            self._tb(history[-1])

    def write_lr_steps(self, lr_steps: Sequence[Row]) -> None:
        write_text_atomic(csv_text(lr_steps), self.run_dir / "lr_steps.csv", durable=False)

    def finish(self, metrics: dict[str, Any], history: Sequence[Row], lr_steps: Sequence[Row]) -> None:
        self.write_lr_steps(lr_steps)
        flat = flat_metrics(metrics)
        write_text_atomic(csv_text([flat]), self.run_dir / "metrics.csv", durable=False)
        write_text_atomic(json.dumps(metrics, indent=2, sort_keys=True) + "\n", self.run_dir / "metrics.json")
        if self._tb is not None:
            final = {k: v for k, v in flat.items() if k in TB_FINAL or k.startswith(("test_td_auc@", "val_td_auc@"))}
            self._tb({**final, "epoch": metrics["best_epoch"]})
            self._tb.flush()
        if self.plots:
            self.render()

    def render(self) -> None:
        """The PNG plots (:func:`.plots.render_run`); a broken matplotlib costs the plots, never the results."""
        from .plots import render_run

        try:
            render_run(self.run_dir)
        except ImportError as exc:
            log.warning("trainer.plots: matplotlib unavailable (%s); no plots", exc)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None


#: What a run leaves in its run dir (besides Hydra's ``.hydra/`` and ``train.log``): moved aside
#: by :func:`archive_old_results` before a fresh start, so old results never sit beside new ones.
RESULT_FILES = ("last.pt", "last.prev.pt", "best.pt", "metrics.json", "epochs.csv", "lr_steps.csv", "monitors.csv",
                "curves.png", "lr_schedule.png", "tb", "status.json", "predictor.json", "calibration.png",
                "risk_groups.png", "metrics.csv", "test_predictions.csv", "timings.json")
RESULT_PATTERNS = ("last.pt.shards-*", "last.prev.pt.shards-*", ".*.pt.*.tmp")


def check_run_dir_links(run_dir: Path) -> None:
    """ConfigError (``hydra.run.dir``) when a name the app writes in ``run_dir`` (:data:`RESULT_FILES`:
    ``monitors.csv`` appended to and truncated on resume, ``epochs.csv``, ``metrics.json``, ``tb/``, the
    plots ...) is a symbolic link: a write there would land outside the run dir, so the run is refused
    before the app opens any of them (Hydra's own ``.hydra/`` and log: ``preflight.check_hydra_outputs``).
    Reads directory entries only."""
    import os

    from ..errors import ConfigError

    run_dir = Path(run_dir)
    for name in RESULT_FILES:
        if os.path.islink(run_dir / name):
            raise ConfigError("hydra.run.dir", f"{run_dir / name} is a symbolic link; the app never writes through a "
                              "link (it would change a file outside the run dir): move it away or use another "
                              "hydra.run.dir")


def archive_old_results(run_dir: Path) -> Path | None:
    """Move an earlier run's results (``trainer.resume=false``, or no usable checkpoint left) into
    ``<run_dir>/replaced-<n>/`` - nothing is deleted - and return that folder (None: nothing to move)."""
    import os

    old = [run_dir / name for name in RESULT_FILES if os.path.lexists(run_dir / name)]
    old += [p for pattern in RESULT_PATTERNS for p in sorted(run_dir.glob(pattern))]
    if not old:
        return None
    n = 1
    while (run_dir / f"replaced-{n}").exists():
        n += 1
    target = run_dir / f"replaced-{n}"
    target.mkdir()
    for path in old:
        os.replace(path, target / path.name)
    log.warning("%s held results of an earlier run (%s); moved them to %s", run_dir,
                ", ".join(p.name for p in old[:4]) + (", ..." if len(old) > 4 else ""), target.name)
    return target


# ------------------------------------------------------------------ the tools' output files
def tool_output_path(out: Path | None, tool: str, name: str, force: bool = False) -> Path:
    """Where a tool (``scripts/*.py``) writes ``name``: ``out`` (a file with a suffix, or a directory
    for ``out/name``), else a fresh ``outputs/<tool>/<date>/<time>/`` under the current directory like
    the app's run dirs - never the current directory itself, never an installed package.

    Checked before any work is done, each a one-line ConfigError on ``--out``: an existing file
    (unless ``force``), a directory or a symbolic link where the file goes, a folder that does not exist
    (only ``out`` itself, a new directory, or the default tree is created), or is not writable."""
    import datetime
    import os

    from ..errors import ConfigError

    if out is None:
        stamp = datetime.datetime.now()
        base = Path("outputs") / tool / stamp.strftime("%Y-%m-%d") / stamp.strftime("%H-%M-%S")
        run, n = base, 1
        while run.exists():  # two calls in one second: a sibling, not the same folder
            run, n = base.with_name(f"{base.name}_{n}"), n + 1
        path, creatable = run / name, True
    else:
        out = Path(out)
        path = out / name if out.is_dir() or not out.suffix else out
        creatable = path.parent == out  # --out DIR may name a new directory (its parent must exist)
    if path.is_symlink():
        raise ConfigError("--out", f"{path} is a symbolic link; outputs are never written through a link")
    if path.is_dir():
        raise ConfigError("--out", f"{path} is a directory; give a file name or another --out")
    if path.exists() and not force:
        raise ConfigError("--out", f"{path} exists; pass another --out or --force to overwrite it")
    folder = path.parent
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing != folder and not (creatable and (out is None or existing == folder.parent)):
        raise ConfigError("--out", f"{folder} does not exist; create it first or choose another --out")
    if not existing.is_dir():
        raise ConfigError("--out", f"{existing} is not a directory; choose another --out")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError("--out", f"{existing} is not writable; choose another --out")
    return path


def tool_file_path(path: Path, flag: str) -> Path:
    """A file a tool's ``flag`` names (``--json out.json``), checked before any work: not a directory or a
    link, in an existing, writable folder (ConfigError on ``flag``, one line). Replaced if it exists."""
    import os

    from ..errors import ConfigError

    path = Path(path)
    if path.is_symlink() or path.is_dir():
        raise ConfigError(flag, f"{path} is a {'symbolic link' if path.is_symlink() else 'directory'}; give a file")
    folder = path.parent
    if not folder.is_dir():
        raise ConfigError(flag, f"{folder} does not exist; create it first")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(flag, f"{folder} is not writable")
    return path


def tool_sibling_path(path: Path, suffix: str, force: bool = False) -> Path:
    """``path`` with another suffix (the CSV or JSON beside a tool's PNG), checked like
    :func:`tool_output_path` (its folder already was)."""
    from ..errors import ConfigError

    other = path.with_suffix(suffix)
    if other.is_symlink() or other.is_dir():
        raise ConfigError("--out", f"{other} is a {'symbolic link' if other.is_symlink() else 'directory'}; "
                          "choose another --out")
    if other.exists() and not force:
        raise ConfigError("--out", f"{other} exists; pass another --out or --force to overwrite it")
    return other


def write_tool_output(path: Path, data: str | bytes) -> None:
    """Write a tool's output file atomically (mode per the umask, never through a link); an OS error
    (a full disk, a folder that became read-only) is a one-line ConfigError on ``--out``."""
    from ..durable import write_atomic
    from ..errors import ConfigError

    try:
        write_atomic(data.encode("utf-8") if isinstance(data, str) else data, path, durable=False)
    except OSError as exc:
        raise ConfigError("--out", f"{path}: cannot write ({exc.strerror or exc})") from None


def draw_tool_output(draw: Any, path: Path) -> None:
    """``draw(path)`` (a matplotlib figure saved to ``path``), its folder created; an OS error is a
    one-line ConfigError on ``--out``."""
    from ..errors import ConfigError

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink():
            raise ConfigError("--out", f"{path} is a symbolic link; outputs are never written through a link")
        draw(path)
    except OSError as exc:
        raise ConfigError("--out", f"{path}: cannot write ({exc.strerror or exc})") from None
