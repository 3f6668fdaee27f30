"""Pre-flight: refuse bad input before Hydra writes anything, through Hydra's public callbacks.

``train.yaml`` registers :class:`Preflight` under ``hydra.callbacks``. Hydra calls

* ``on_run_start`` after composing a run's config and before ``run_job`` creates the run dir,
  writes ``.hydra/`` or opens ``train.log``. The pre-flight builds the whole
  :class:`~.trainer.Trainer` there: the one validation pass (:func:`~.run_plan.plan_run`:
  config, launch, device, data, run length), the model, optimizer and engine, and the resume
  from ``last.pt`` with every check of the checkpoint. The task function then only trains it.
  So a refused run, resume checks included, writes nothing, and a relative path is read before
  ``hydra.job.chdir`` moves the job elsewhere;
* ``on_multirun_start`` before the sweeper launches anything: every job of a ``-m`` sweep is
  composed (Hydra's ``compose``) and planned, so one bad value refuses the sweep before any
  job dir exists (each job still builds and checks itself when it runs).

A problem prints ``error: <key or file>: <what is wrong and what is allowed>`` on stderr and
exits with status 2. ``HYDRA_FULL_ERROR=1`` or ``trainer.debug=true`` raise the full
traceback instead. Composition errors (an unknown option, key or value) are Hydra's own
exceptions, worded in one line by :func:`.hydra_errors.explain` in ``survopt-train``'s main.
"""
from __future__ import annotations

import contextlib
import itertools
import math
import os
import re
import sys
from pathlib import Path
from typing import Any, Iterator

from hydra.experimental.callback import Callback

from ..errors import ConfigError
from .rules import check_config

EXIT_USAGE = 2
#: Sweeps up to this many jobs are checked job by job; larger ones check every swept
#: value at least once (each job still checks itself before it writes its checkpoint).
MAX_SWEEP_JOBS = 128
#: The trainer the pre-flight built for this process's run, taken by the task function.
PREPARED: list[Any] = []


class Preflight(Callback):
    """Hydra callback: plan (and for a single run, build) everything before Hydra writes anything."""

    def on_run_start(self, config: Any, config_name: str | None = None, **kwargs: Any) -> None:
        restore_error_reporting()  # composed: from here on Hydra reports as the user asked
        PREPARED.clear()
        with _refusals(config):
            run_dir = pin_run_dir(config)
            check_hydra_outputs(config, run_dir)
            task = task_config(config)
            settings = check_config(task)  # before torch is imported: a bad value is refused in well under a second
            from .run_plan import plan_run
            from .trainer import Trainer

            trainer = Trainer(task, run_dir, plan_run(task, settings))
            if os.environ.get("RANK", "0") in ("", "0"):
                claim_run_dir(run_dir, trainer)
            PREPARED.append(trainer)

    def on_multirun_start(self, config: Any, config_name: str | None = None, **kwargs: Any) -> None:
        with _refusals(config):  # the jobs are composed here: their composition errors still reach main
            check_sweep(config, config_name)
        restore_error_reporting()

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        restore_error_reporting()


def task_config(config: Any) -> Any:
    """The config the task function gets: the composed one without its ``hydra`` node."""
    import copy

    from omegaconf import open_dict, read_write

    task = copy.deepcopy(config)
    with read_write(task), open_dict(task):
        del task["hydra"]
    return task


def pin_run_dir(config: Any) -> Path:
    """``hydra.run.dir`` resolved once and written back, so ``run_job`` creates the very dir the
    pre-flight checked (``${now:...}`` resolved twice may name two different seconds); an empty one
    is refused (Hydra would write checkpoints, logs and plots among the user's files)."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf, open_dict, read_write

    HydraConfig.instance().set_config(config)  # what ${hydra:...} in the dir reads (run_job sets it again)
    value = OmegaConf.select(config, "hydra.run.dir")
    if value is None or not str(value).strip():
        raise ConfigError("hydra.run.dir", "is empty, so the run would write into the current directory; give a "
                          "directory, e.g. hydra.run.dir=outputs/run1 (or hydra.run.dir=. to mean the current one)")
    with read_write(config.hydra), open_dict(config.hydra):
        config.hydra.run.dir = str(value)
    from .state import check_run_dir

    check_run_dir(value)  # a file, /proc, an unwritable parent: before Hydra tries to create it
    return Path(str(value)).absolute()


def check_hydra_outputs(config: Any, run_dir: Path) -> None:
    """What Hydra writes into the run dir itself (``.hydra/*.yaml``, ``<job name>.log``) opens its path
    and follows links: a link there would write outside the run dir, so it is refused first."""
    from omegaconf import OmegaConf

    subdir = OmegaConf.select(config, "hydra.output_subdir")
    names = [f"{OmegaConf.select(config, 'hydra.job.name')}.log"]
    if subdir is not None:
        names += [str(subdir), *(f"{subdir}/{n}" for n in ("config.yaml", "hydra.yaml", "overrides.yaml"))]
    for name in names:
        if (run_dir / name).is_symlink():
            raise ConfigError("hydra.run.dir", f"{run_dir / name} is a symbolic link; Hydra would write through it, "
                                               "outside the run dir: move it away or use another hydra.run.dir")


def claim_run_dir(run_dir: Path, trainer: Any) -> None:
    """A read-only run dir of a finished run is re-reported here (Hydra would fail writing ``.hydra/``);
    a read-only one otherwise is refused; a writable one is locked for this process, so a second run
    in it is refused in one line (:func:`.state.lock_run_dir`)."""
    from .state import lock_run_dir, run_dir_writable

    resumed = trainer.resumed
    if run_dir.is_dir() and not run_dir_writable(run_dir):
        if resumed is not None and resumed.get("finished") and resumed.get("metrics"):
            from .outputs import summary_line

            print(f"run already finished (read-only run dir {run_dir}: nothing written); reporting its metrics",
                  file=sys.stderr, flush=True)
            print(summary_line(resumed["metrics"]), flush=True)
            sys.exit(0)
        raise ConfigError("hydra.run.dir", f"{run_dir} is not writable (read-only file system or permissions); "
                          "choose a writable directory")
    lock_run_dir(run_dir)


# ================================================================== sweeps
def sweep_jobs(overrides: list[str]) -> list[list[str]]:
    """The override lists of a ``-m`` sweep's jobs (every job, or every swept value once).

    Non-discrete sweeps (``interval(...)``, sampled by e.g. the Optuna sweeper) are left out."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parsed = OverridesParser.create().parse_overrides(overrides)
    choices: list[list[str]] = []
    for override in parsed:
        key = override.get_key_element()
        if not override.is_sweep_override():
            choices.append([f"{key}={override.get_value_element_as_str()}"])
            continue
        try:
            values = [f"{key}={v}" for v in override.sweep_string_iterator()] if override.is_discrete_sweep() else []
        except HydraException:
            values = []
        if values:
            choices.append(values)
    total = math.prod(len(c) for c in choices)
    if total <= MAX_SWEEP_JOBS:
        return [list(job) for job in itertools.product(*choices)]
    width = max(len(c) for c in choices)
    return [[c[j % len(c)] for c in choices] for j in range(width)]


def check_sweep(config: Any, config_name: str | None) -> int:
    """Compose (Hydra's ``compose``) and plan every job of a sweep; returns how many were checked.

    Jobs a launcher runs elsewhere (Slurm, joblib's worker processes) check their data and device
    where they run; their configs are checked here."""
    from hydra import compose
    from omegaconf import OmegaConf

    overrides = [str(o) for o in OmegaConf.to_container(config.hydra.overrides.task, resolve=False)]
    tasks = [compose(config_name, overrides=job) for job in sweep_jobs(overrides)]
    launcher = str(OmegaConf.select(config, "hydra.launcher._target_", default="") or "")
    check_tasks(tasks, local=launcher.endswith("BasicLauncher"))
    make_sweep_dir(config)
    return len(tasks)


def check_tasks(tasks: list[Any], local: bool = True) -> None:
    """Every task config first (fast, no torch), then, for jobs that run here, their data and run length."""
    from .rules import check_config
    from .run_plan import plan_run

    checked = []
    for task in tasks:
        with _refusals(task):
            checked.append((task, check_config(task)))
    for task, settings in checked if local else ():
        with _refusals(task):
            plan_run(task, settings)


def check_command(overrides: list[str], multirun: bool = False) -> int:
    """What ``survopt-train [-m] <overrides>`` would check, without running it: for tests and tools.

    Raises the first ConfigError / DataError (no exit); returns how many jobs were checked."""
    from omegaconf import OmegaConf

    from .compose import compose_train
    from .rules import check_config
    from .run_plan import plan_run

    jobs = sweep_jobs(list(overrides)) if multirun else [list(overrides)]
    tasks = [compose_train(job, return_hydra_config=True) for job in jobs]
    launcher = str(OmegaConf.select(tasks[0], "hydra.launcher._target_", default="") or "")
    tasks = [task_config(task) for task in tasks]
    settings = [check_config(task) for task in tasks]
    for task, checked in zip(tasks, settings) if launcher.endswith("BasicLauncher") else ():
        plan_run(task, checked)
    return len(tasks)


def make_sweep_dir(config: Any) -> None:
    """The sweep's parent dir: not a file, and creatable (created now that every job passed; Hydra's
    launcher would next anyway): a place no permission bit reveals (``/proc``) fails here in one line."""
    from omegaconf import OmegaConf

    from .state import check_run_dir

    sweep_dir = OmegaConf.select(config, "hydra.sweep.dir")
    if sweep_dir is None or not str(sweep_dir).strip():
        raise ConfigError("hydra.sweep.dir", "is empty, so the jobs would write into the current directory; give a "
                                             "directory, e.g. hydra.sweep.dir=multirun/sweep1")
    try:
        check_run_dir(sweep_dir)
        Path(str(sweep_dir)).mkdir(parents=True, exist_ok=True)
    except ConfigError as exc:
        raise ConfigError("hydra.sweep.dir", str(exc).removeprefix("hydra.run.dir: ")) from None
    except OSError as exc:
        raise ConfigError("hydra.sweep.dir", f"{sweep_dir}: cannot create it ({exc.strerror or exc}); "
                                             "choose a writable directory") from None


# ================================================================== refusals
_USER_FULL_ERROR: list[str | None] = []  # the user's HYDRA_FULL_ERROR while composition errors are raised


@contextlib.contextmanager
def composition_errors_raised() -> Iterator[None]:
    """Let Hydra's composition errors reach the caller as exceptions, to be worded in one line.

    Hydra prints a composition error in several lines and exits 1, unless ``HYDRA_FULL_ERROR=1``
    (its documented switch), in which case it raises it. That switch is on while Hydra composes
    and off again (the user's own setting back) as soon as a callback sees the composed config,
    so the run, its jobs and their workers see the user's setting."""
    _USER_FULL_ERROR[:] = [os.environ.get("HYDRA_FULL_ERROR")]
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        yield
    finally:
        restore_error_reporting()


def restore_error_reporting() -> None:
    if _USER_FULL_ERROR:
        value = _USER_FULL_ERROR.pop()
        if value is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = value


def wants_traceback(config: Any = None, argv: list[str] | None = None) -> bool:
    """The user's ``HYDRA_FULL_ERROR=1``, or ``trainer.debug=true`` in the config or on the command line."""
    user = _USER_FULL_ERROR[0] if _USER_FULL_ERROR else os.environ.get("HYDRA_FULL_ERROR")
    if user == "1":
        return True
    if config is not None:
        from omegaconf import OmegaConf

        if OmegaConf.select(config, "trainer.debug", default=False) is True:
            return True
    return any(re.fullmatch(r"\+*trainer\.debug=(?i:true|1|yes|on)", a.strip()) for a in (argv or []))


@contextlib.contextmanager
def _refusals(config: Any) -> Iterator[None]:
    """End the process on any error inside: Hydra turns an exception in a callback into a warning and
    carries on (it would write the run dir next), so nothing may escape a callback as an exception.

    A ConfigError / DataError or a composition error is one line on stderr and exit status 2; with
    ``HYDRA_FULL_ERROR=1`` or ``trainer.debug=true`` its traceback instead; anything else (a bug) a
    traceback and exit status 1, as an uncaught exception would give."""
    import traceback

    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        yield
    except Exception as exc:
        composing = isinstance(exc, (HydraException, OmegaConfBaseException))
        if (is_user_error(exc) or composing) and not wants_traceback(config):
            if composing:
                from .hydra_errors import explain

                exc = explain(exc)
            print("error: " + " ".join(str(exc).split()), file=sys.stderr, flush=True)
            sys.exit(EXIT_USAGE)
        traceback.print_exc()
        sys.exit(EXIT_USAGE if is_user_error(exc) or composing else 1)


_YAML_INF = re.compile(r"([^=\s]+)=([+-]?)\.inf", re.IGNORECASE)


def yaml_infinity(argv: list[str]) -> list[str]:
    """``key=.inf`` (YAML's spelling, as in the config files) as ``key=inf``, which Hydra's override
    grammar reads as a float; Hydra would hand ``.inf`` over as a string, which a float field refuses.
    Where infinity is not allowed the schema still refuses it ("must be a finite number")."""
    out = []
    for arg in argv:
        match = _YAML_INF.fullmatch(arg)
        out.append(f"{match.group(1)}={match.group(2)}inf" if match and not arg.startswith("-") else arg)
    return out


def is_user_error(exc: BaseException) -> bool:
    """A ConfigError or a DataError (without importing the data module, which imports torch)."""
    data = sys.modules.get("survopt_hydra.survival.schema")
    return isinstance(exc, ConfigError) or (data is not None and isinstance(exc, data.DataError))
