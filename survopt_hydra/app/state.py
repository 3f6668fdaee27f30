"""Run state that must survive a restart, and the rules of a restart.

* :class:`Progress` - early stopping, best weights and logs; goes into ``last.pt`` whole,
  so a resumed run continues *exactly*;
* :func:`config_difference` - which config changes a resume accepts (see
  ``docs/failure_modes.md``);
* :class:`GracefulStop` - SIGTERM / Ctrl-C ask for a stop at the next safe point;
* :class:`FaultInjection` - ``trainer.fault_injection``, a TEST-ONLY switch that makes
  the failure windows (NaN losses, a kill mid-epoch or mid-checkpoint) hittable.

No torch import at module level: :mod:`survopt_hydra.app.schemas` uses the fault spec
check, and the pre-flight must stay cheap on bad input.
"""
from __future__ import annotations

import logging
import math
import signal
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Mapping

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

log = logging.getLogger(__name__)

# Trainer keys that change how a run is operated, not what it computes: a rerun that
# differs only in these still resumes (e.g. without the stop_after_epochs of the first try,
# or with a higher max_nonfinite_steps after a divergence stop).
OPERATIONAL_KEYS = ("trainer.stop_after_epochs", "trainer.progress_bar", "trainer.debug", "trainer.resume",
                    "trainer.checkpoint_every", "trainer.checkpoint_every_s", "trainer.plots", "trainer.tensorboard",
                    "trainer.max_nonfinite_steps", "trainer.max_loss_ratio", "trainer.fault_injection")
# Keys a resume may increase (train longer); a decrease is refused.
GROWABLE_KEYS = ("trainer.max_epochs",)

#: The metrics the trainer computes every epoch and hands to ``StepEngine.end_epoch``:
#: the only names ``scheduler.monitor`` (plateau) can read.
EPOCH_METRICS = ("train_loss", "val_cindex", "val_loss")


class Progress:
    """Epoch counter, early stopping on the monitored metric, best weights and logs."""

    def __init__(self) -> None:
        self.epoch = 0  # epochs completed
        self.best_score = -math.inf  # the monitored metric, oriented so that higher is better
        self.best_epoch = 0
        self.best_val_cindex = math.nan
        self.bad_epochs = 0
        self.done = False
        self.stopped_early = False
        self.improved_last = False
        self.train_seconds = 0.0
        self.history: list[dict[str, Any]] = []
        self.lr_steps: list[dict[str, Any]] = []
        self.best_weights: dict[str, torch.Tensor] | None = None

    def record(self, row: dict[str, Any], monitor: str, model: nn.Module, patience: int | None, seconds: float) -> None:
        """Account for a finished epoch (``row`` as written to epochs.csv)."""
        self.epoch = int(row["epoch"])
        self.history.append(row)
        self.train_seconds += seconds
        score = row["val_cindex"] if monitor == "val_cindex" else -row["val_loss"]
        self.improved_last = math.isfinite(score) and score > self.best_score
        if self.improved_last:
            self.best_score, self.best_epoch, self.best_val_cindex = score, self.epoch, row["val_cindex"]
            self.best_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
            self.bad_epochs = 0
        else:
            self.bad_epochs += 1
            if patience is not None and self.bad_epochs > patience:
                self.done = self.stopped_early = True

    # (the streak of non-finite steps is the engine's: StepEngine.consecutive_nonfinite, in its state)
    _FIELDS = ("epoch", "best_score", "best_epoch", "best_val_cindex", "bad_epochs", "done",
               "stopped_early", "train_seconds", "history", "lr_steps", "best_weights")

    def state_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self._FIELDS}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for name in self._FIELDS:
            setattr(self, name, state[name])


# ------------------------------------------------------------------ resume compatibility
def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, Mapping):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out or {prefix[:-1]: {}}
    return {prefix[:-1]: node}


def config_difference(saved: Mapping[str, Any], current: Mapping[str, Any]) -> str:
    """``"key: old -> new"`` for the first difference a resume cannot accept, else ``""``.

    Everything that shapes the computation (data, model, optimizer, scheduler, clipping,
    amp, seeds, batch size, device, threads, ...) must be equal; :data:`OPERATIONAL_KEYS`
    may differ; :data:`GROWABLE_KEYS` may increase.
    """
    a, b = _flatten(saved), _flatten(current)
    for key in sorted(set(a) | set(b)):
        if key in OPERATIONAL_KEYS:
            continue
        old, new = a.get(key, "<unset>"), b.get(key, "<unset>")
        if old == new:
            continue
        if key in GROWABLE_KEYS and isinstance(old, int) and isinstance(new, int) and new > old:
            if _schedule_is_length_free(current):
                continue
            return (f"{key}: {old!r} -> {new!r}; the LR schedule spans the whole run, so a longer run "
                    "cannot continue this one (only schedules that do not depend on the run length can)")
        why = " (may only grow on resume)" if key in GROWABLE_KEYS else ""
        return f"{key}: {old!r} -> {new!r}{why}"
    return ""


def _schedule_is_length_free(config: Mapping[str, Any]) -> bool:
    """Whether the scheduler's LR curve is independent of ``trainer.max_epochs``."""
    sched = config.get("scheduler") or {}
    name = sched.get("name")
    if name in ("cosine", "warmup_cosine"):
        return sched.get("T_max") is not None
    return name != "onecycle"


# ------------------------------------------------------------------ graceful stop
class RunInterrupted(Exception):
    """SIGTERM / SIGINT stopped the run at a safe point after saving ``last.pt``."""

    def __init__(self, signum: int, epoch: int) -> None:
        self.signum, self.epoch = int(signum), int(epoch)
        self.exit_code = 128 + self.signum  # 143 for SIGTERM, 130 for SIGINT
        name = signal.Signals(self.signum).name
        super().__init__(f"{name} received: stopped after epoch {epoch} with last.pt saved; "
                         "rerun the same command to resume")


class GracefulStop:
    """While active, SIGTERM and SIGINT only *request* a stop (see :attr:`signum`).

    The trainer polls :attr:`requested` at its safe point (after an epoch's checkpoint).
    A second signal stops at once, without saving: ``last.pt`` is still the previous
    complete checkpoint. A no-op outside the main thread (signals cannot be set there).
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None:  # asked twice: stop now
            self.__exit__()
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            raise SystemExit(128 + signum)
        self.signum = signum

    def __enter__(self) -> "GracefulStop":
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


# ------------------------------------------------------------------ one run per run dir
_HELD_LOCKS: dict[str, int] = {}  # realpath of a run dir -> its open, flock'ed directory descriptor


def lock_run_dir(run_dir: Any, create: bool = True) -> None:
    """Hold an exclusive advisory lock (``fcntl.flock``) on the run dir itself until this process
    ends, so a second run in the same dir is refused instead of mixing files with this one.

    The lock is taken on the directory's own descriptor: no lock file is created, so taking it
    writes nothing (a refused run leaves the dir as it was) and there is no file a link could
    redirect. The kernel drops it when the process dies (SIGKILL included). Re-entrant within
    one process. ``create``: make the dir first (a new run); else a missing dir is not locked.
    ConfigError (``hydra.run.dir``) when another live process holds it or the dir is unusable.
    """
    import os
    from pathlib import Path

    from ..errors import ConfigError

    run_dir = Path(run_dir)
    key = os.path.realpath(run_dir)
    if key in _HELD_LOCKS:
        return
    try:
        import fcntl
    except ImportError:  # pragma: no cover (Windows): no advisory locks
        return
    check_run_dir(run_dir)
    if not create and not run_dir.is_dir():
        return
    from .outputs import check_run_dir_links  # before the app appends to or truncates a planted link

    check_run_dir_links(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(run_dir, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise ConfigError("hydra.run.dir", f"{run_dir}: cannot write here ({exc.strerror or exc}); "
                          "choose a writable directory") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise ConfigError("hydra.run.dir", f"{run_dir} is in use by another run that is still running; wait for "
                          "it to end or use another hydra.run.dir") from None
    _HELD_LOCKS[key] = fd


def unlock_run_dir(run_dir: Any) -> None:
    """Release :func:`lock_run_dir`'s lock (the end of a sweep job: the next job uses another dir)."""
    import os

    fd = _HELD_LOCKS.pop(os.path.realpath(run_dir), None)
    if fd is not None:
        os.close(fd)  # closing the only descriptor drops the flock


def check_run_dir(run_dir: Any) -> None:
    """ConfigError (``hydra.run.dir``) when ``run_dir`` exists but is no directory, or a parent
    cannot hold it (a file on the way, ``/proc``, no permission, a read-only file system)."""
    import os
    from pathlib import Path

    from ..errors import ConfigError

    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError("hydra.run.dir", f"{run_dir} exists and is not a directory; choose another path")
    parent = run_dir
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError("hydra.run.dir", f"{parent} is a file, so {run_dir} cannot be created; choose another path")
    if parent != run_dir and not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError("hydra.run.dir", f"{run_dir} cannot be created: {parent} is not writable; "
                          "choose a writable directory")


def run_dir_writable(run_dir: Any) -> bool:
    """Whether files can be created in the (existing) ``run_dir`` (False on a read-only mount)."""
    import os

    return os.access(run_dir, os.W_OK | os.X_OK)


# ------------------------------------------------------------------ fault injection (tests only)
FAULTS = {
    "nan_loss": "nan_loss@A or nan_loss@A-B: the loss of training batches A..B (1-based, counted across epochs) is NaN",
    "sleep_step": "sleep_step@B[:seconds]: sleep inside training batch B, between backward and the optimizer step",
    "sleep_save": "sleep_save@E[:seconds]: sleep while writing epoch E's last.pt, after the temp file is complete",
    "sleep_rotate": "sleep_rotate@E[:seconds]: sleep between moving last.pt to last.prev.pt and the new one in place",
    "sleep_best": "sleep_best@E[:seconds]: sleep while writing best.pt for a best epoch >= E, after last.pt holds it",
    "disk_full": "disk_full@E: writing epoch E's last.pt fails with ENOSPC (no space left on device)",
}


def parse_faults(spec: str | None) -> dict[str, tuple[float, float]]:
    """``"nan_loss@4-6+sleep_save@3:1.5"`` -> ``{"nan_loss": (4, 6), "sleep_save": (3, 1.5)}``.

    Raises ValueError with what is allowed.
    """
    out: dict[str, tuple[float, float]] = {}
    for item in filter(None, (s.strip() for s in (spec or "").split("+"))):
        kind, at, arg = item.partition("@")
        if kind not in FAULTS or not at:
            from ..errors import did_you_mean

            raise ValueError(f"'{item}' is not a fault{did_you_mean(kind, FAULTS)}; allowed (joined by '+'): "
                             "nan_loss@A[-B], sleep_step@B[:s], sleep_save@E[:s], sleep_rotate@E[:s], sleep_best@E[:s], "
                             "disk_full@E (test only)")
        try:
            if kind == "disk_full":
                out[kind] = (int(arg), 0.0)
                ok = out[kind][0] >= 1
            elif kind == "nan_loss":
                lo, _, hi = arg.partition("-")
                first, last = int(lo), int(hi or lo)
                ok = 1 <= first <= last
                out[kind] = (first, last)
            else:
                where, _, secs = arg.partition(":")
                out[kind] = (int(where), float(secs or 5.0))
                ok = out[kind][0] >= 1 and out[kind][1] >= 0
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(f"'{item}': expected {FAULTS[kind]}")
    return out


def check_fault_spec(spec: Any) -> str | None:
    """Range check of ``trainer.fault_injection`` (see :data:`FAULTS`)."""
    try:
        parse_faults(spec)
    except ValueError as exc:
        return str(exc)
    return None


class FaultInjection:
    """TEST ONLY: the faults of ``trainer.fault_injection``; every hook is a no-op without it.

    The training loop carries none of it: :meth:`wrap_backward` replaces the engine's
    ``backward`` only when a batch fault is asked for, and the save hooks are ``None``
    unless a checkpoint fault is.
    """

    def __init__(self, spec: str | None) -> None:
        self.faults = parse_faults(spec)

    def __bool__(self) -> bool:
        return bool(self.faults)

    def wrap_backward(self, engine: Any, batches_done: int) -> None:
        """Make ``engine.backward`` inject the batch faults (NaN loss, a sleep before the optimizer
        step); batches are counted 1-based across epochs, ``batches_done`` before this run's first."""
        if "nan_loss" not in self.faults and "sleep_step" not in self.faults:
            return
        backward, count = engine.backward, [batches_done]

        def faulty_backward(loss: Any) -> None:
            count[0] += 1
            backward(self.loss(loss, count[0]))
            self.step(count[0])

        engine.backward = faulty_backward

    def loss(self, loss: Any, batch: int) -> Any:
        """``loss`` or NaN for an injected training batch (``batch`` 1-based across epochs)."""
        span = self.faults.get("nan_loss")
        if span and span[0] <= batch <= span[1]:
            return loss * math.nan
        return loss

    def step(self, batch: int) -> None:
        self._sleep("sleep_step", batch)

    def save_hook(self, epoch: int) -> Callable[[str], None] | None:
        """``before(stage)`` for :func:`~survopt_hydra.app.checkpoint.save_checkpoint`, or None."""
        if not any(k in self.faults for k in ("sleep_save", "sleep_rotate", "disk_full")):
            return None

        def hook(stage: str) -> None:  # "written": temp file complete; "rotated": last.pt moved aside
            where = self.faults.get("disk_full")
            if stage == "written" and where and int(where[0]) == epoch:
                import errno
                import os

                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "last.pt")
            self._sleep({"written": "sleep_save", "rotated": "sleep_rotate"}[stage], epoch)

        return hook

    def best_hook(self, epoch: int) -> Callable[[str], None] | None:
        """``before(stage)`` for best.pt's write: sleeps once, at the first best epoch >= E."""
        where = self.faults.get("sleep_best")
        if not where or epoch < where[0] or getattr(self, "_best_slept", False):
            return None

        def hook(stage: str) -> None:
            self._best_slept = True
            self._sleep("sleep_best", int(where[0]))

        return hook

    def _sleep(self, kind: str, at: int) -> None:
        where = self.faults.get(kind)
        if where and int(where[0]) == at:
            # tests wait for this line (stdout, through Hydra's logging) before they kill the run
            log.warning("fault injection: %s@%d, sleeping %gs", kind, at, where[1])
            time.sleep(where[1])
