"""Pre-flight: refuse bad input before Hydra runs anything or writes anything.

``survopt-train`` calls :func:`preflight` before ``hydra.main``. It reads the command line
with Hydra's own parsers, composes the config exactly as the app will (same search path,
same primary config; every point of a ``-m`` sweep), and checks:

* composition: unknown group options, unknown keys, wrong types, unparsable overrides -
  Hydra's multi-line reports become one line naming the key and what is allowed;
* every group's values against its schema (ranges, names), cross-group rules (plateau
  monitor and mode, warmup shorter than the run, CNN needs images, ...), the device;
* the data: the file is loaded and split with the app's own code (cached, so the trainer
  does not load it twice);
* resuming: an existing ``last.pt`` must have been written with a compatible config.

A problem prints ``error: <key or file>: <what is wrong and what is allowed>`` on stderr
and exits with status 2 before Hydra creates the run dir, ``.hydra/`` or ``train.log``.
``HYDRA_FULL_ERROR=1`` or ``trainer.debug=true`` raise the full traceback instead.

Bad config values fail before torch is imported (~0.5 s, not ~3 s); data and run-length
checks need torch, which the run imports anyway. The same rule functions
(:func:`check_config`, :func:`check_run`, :func:`resume_state`) are what
:class:`~survopt_hydra.app.trainer.Trainer` runs, so a direct ``train(cfg, run_dir)``
call is checked just the same.
"""
from __future__ import annotations

import contextlib
import io
import itertools
import math
import os
import re
import sys
from pathlib import Path
from typing import Any, Iterator

from ..errors import ConfigError
from .hydra_errors import explain
from .rules import NAME_FIELDS, TOP_LEVEL, batches_per_rank, check_config, check_launch, check_run  # noqa: F401
from .rules import load_cohort_once, resume_state
from .state import check_run_dir

CONFIG_PATH = "pkg://survopt_hydra.app.train_conf"
CONFIG_NAME = "train"
EXIT_USAGE = 2
#: Sweeps up to this many jobs are checked job by job; larger ones check every swept
#: value at least once (each job still checks itself before it writes its checkpoint).
MAX_SWEEP_JOBS = 128
# ================================================================== composing like hydra.main
def _loader(config_dir: str | None) -> Any:
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.utils import create_config_search_path
    from hydra.core.config_search_path import SearchPathQuery

    search_path = create_config_search_path(CONFIG_PATH)
    if config_dir is not None:
        directory = os.path.abspath(config_dir)
        if not os.path.isdir(directory):
            raise ConfigError("--config-dir", f"directory not found: {directory}")
        search_path.prepend(provider="command-line", path=f"file://{directory}",
                            anchor=SearchPathQuery(provider="schema"))
    return ConfigLoaderImpl(config_search_path=search_path)


def sweep_jobs(overrides: list[str], loader: Any = None) -> list[list[str]]:
    """The override lists of a ``-m`` sweep's jobs (every job, or every swept value once).

    Non-discrete sweeps (``interval(...)``, sampled by e.g. the Optuna sweeper) are left out.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parsed = OverridesParser.create(config_loader=loader).parse_overrides(overrides)
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


def _compose(loader: Any, config_name: str, overrides: list[str]) -> Any:
    from hydra.errors import HydraException
    from hydra.types import RunMode
    from omegaconf.errors import OmegaConfBaseException

    try:
        return loader.load_configuration(config_name, overrides, RunMode.RUN, from_shell=True)
    except (HydraException, OmegaConfBaseException) as exc:
        raise explain(exc) from exc


class _Composer:
    """Compose the jobs of a sweep without paying a full composition (~0.1 s) for each.

    Hydra composes a config from the defaults list (group choices) and *then* applies
    the value overrides (``ConfigLoaderImpl._apply_overrides_to_config``). So jobs that
    differ only in swept values share one composition of everything else; the swept
    values are applied to a copy with that same Hydra function. Returns task configs
    (without the ``hydra`` node: a sweep's jobs never resume from ``hydra.run.dir``).
    """

    def __init__(self, loader: Any, config_name: str, swept: set[str]) -> None:
        from hydra.core.override_parser.overrides_parser import OverridesParser

        self.loader, self.config_name, self.swept = loader, config_name, swept
        self.parser = OverridesParser.create(config_loader=loader)
        self.bases: dict[tuple[str, ...], Any] = {}
        self.sweep_dir: str | None = None
        self.remote = False  # a launcher that runs the jobs elsewhere (Slurm): data and device are checked there

    def _late(self, override: Any) -> bool:
        """A swept value override (not a group choice): applied after composition."""
        if override.get_key_element() not in self.swept or override.is_hydra_override():
            return False
        return isinstance(override.value(), dict) or not self.loader.repository.group_exists(override.key_or_group)

    def __call__(self, job: list[str]) -> Any:
        import copy

        from hydra._internal.config_loader_impl import ConfigLoaderImpl
        from hydra.errors import HydraException
        from omegaconf import OmegaConf
        from omegaconf.errors import OmegaConfBaseException

        try:
            parsed = self.parser.parse_overrides(job)
        except HydraException as exc:
            raise explain(exc) from exc
        late = [o for o in parsed if self._late(o)]
        base = tuple(o.input_line for o in parsed if not self._late(o))
        if base not in self.bases:
            cfg = _compose(self.loader, self.config_name, list(base))
            self.sweep_dir = self.sweep_dir or _check_sweep_dir(cfg)  # a file ...: before Hydra's launcher
            launcher = OmegaConf.select(cfg, "hydra.launcher._target_", default="") or ""
            self.remote = self.remote or not launcher.endswith("BasicLauncher")
            self.bases[base] = _task_config(cfg)
        cfg = copy.deepcopy(self.bases[base]) if late else self.bases[base]
        try:
            ConfigLoaderImpl._apply_overrides_to_config(late, cfg)
        except (HydraException, OmegaConfBaseException) as exc:
            raise explain(exc) from exc
        return cfg


def _swept_keys(overrides: list[str], loader: Any) -> set[str]:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create(config_loader=loader).parse_overrides(overrides)
    return {o.get_key_element() for o in parsed if o.is_sweep_override()}


def _task_config(cfg: Any) -> Any:
    """The config the task function gets: the composed one without its ``hydra`` node."""
    import copy

    from omegaconf import open_dict, read_write

    task = copy.deepcopy(cfg)
    with read_write(task), open_dict(task):
        del task["hydra"]
    return task


def _wants_traceback(overrides: list[str]) -> bool:
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        return True
    return any(re.fullmatch(r"\+*trainer\.debug=(?i:true|1|yes|on)", o.strip()) for o in overrides)


def check_jobs(overrides: list[str], multirun: bool = False, config_name: str = CONFIG_NAME,
               config_dir: str | None = None, claim: bool = False) -> int:
    """Compose and check every job of a command line; returns how many were checked.

    Raises ConfigError / DataError (one-line messages) on the first problem. ``claim``: once
    everything is fine, lock a single run's ``hydra.run.dir`` for this process (:func:`claim_run_dir`).
    """
    from hydra.core.utils import setup_globals
    from hydra.errors import HydraException
    from omegaconf import OmegaConf

    from ..schemas import register_configs
    from .schemas import register_app_configs

    register_configs(), register_app_configs()  # idempotent; the app module did it already
    setup_globals()  # the ${now:...} resolver of the default run dir
    loader = _loader(config_dir)
    try:
        jobs = sweep_jobs(list(overrides), loader) if multirun else [list(overrides)]
        compose = _Composer(loader, config_name, _swept_keys(overrides, loader)) if multirun else None
    except HydraException as exc:  # an unparsable override
        raise explain(exc) from exc
    checked = []
    for job in jobs:  # first every job's config (fast, no torch), then the data and run length
        if compose is not None:
            cfg = task = compose(job)
        else:
            cfg = _compose(loader, config_name, job)
            task = _task_config(cfg)
            _COMPOSED.clear()
            _COMPOSED[_compose_key(loader, config_name, job)] = cfg
        debug = OmegaConf.select(task, "trainer.debug", default=False) is True
        with _mark(debug):
            checked.append((cfg, task, debug, check_config(task)))
    if compose is not None and compose.remote:
        return len(jobs)  # the jobs run on other machines: their data and device are checked there
    for cfg, task, debug, settings in checked:
        with _mark(debug):
            world = check_launch(task)  # ddp/zero/fsdp without torchrun, none under torchrun
            t = settings["trainer"]
            from .components import pick_device  # imports torch: only once every config is known to be sane

            pick_device(t["device"])
            cohort = load_cohort_once(settings["data"])
            rows = math.ceil(len(cohort.train) / world)
            check_run(task, t, batches_per_rank(len(cohort.train), t["batch_size"], world), rows)
            run_dir = None if multirun else _output_dir(cfg, "hydra.run.dir")
            if run_dir:
                check_run_dir(run_dir)  # a file, /proc, an unwritable parent: before Hydra tries to create it
            state = None
            if run_dir and t["resume"]:
                config = OmegaConf.to_container(task, resolve=True)
                state = resume_state(Path(str(run_dir)), config, verify=False, mmap=True)  # type: ignore[arg-type]
            if claim and run_dir:
                claim_run_dir(Path(str(run_dir)), state[0] if state else None, _pinned(cfg))
    if compose is not None and compose.sweep_dir:
        _make_sweep_dir(compose.sweep_dir)  # the last step: every job passed
    return len(jobs)


def _output_dir(cfg: Any, key: str) -> str | None:
    """``hydra.run.dir`` / ``hydra.sweep.dir`` resolved; an empty one is refused (Hydra would write the
    run's checkpoints, logs and plots straight into the current directory, among the user's files)."""
    from omegaconf import OmegaConf

    if OmegaConf.select(cfg, "hydra") is None:
        return None  # a sweep job's task config: its dir is the sweep's
    value = OmegaConf.select(cfg, key, throw_on_resolution_failure=False)
    if value is not None and not str(value).strip():
        raise ConfigError(key, "is empty, so the run would write into the current directory; give a directory, "
                               f"e.g. {key}=outputs/run1 (or {key}=. to mean the current one)")
    return value


def _check_sweep_dir(cfg: Any) -> str | None:
    """The sweep's parent dir: not a file, creatable (the jobs' own dirs are created beneath it)."""
    sweep_dir = _output_dir(cfg, "hydra.sweep.dir")
    if not sweep_dir:
        return None
    try:
        check_run_dir(sweep_dir)
    except ConfigError as exc:
        raise ConfigError("hydra.sweep.dir", str(exc).removeprefix("hydra.run.dir: ")) from None
    return str(sweep_dir)


def _make_sweep_dir(sweep_dir: str) -> None:
    """Create the sweep dir once every job passed (Hydra's launcher creates it next anyway): a place
    no permission bit reveals (``/proc``, ``/sys``) fails here in one line, not in the launcher."""
    try:
        Path(sweep_dir).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError("hydra.sweep.dir", f"{sweep_dir}: cannot create it ({exc.strerror or exc}); "
                                             "choose a writable directory") from None


#: The single run's composed config, handed to ``hydra.main`` by :func:`hand_over` (composing ~0.1-0.2 s).
_COMPOSED: dict[tuple[Any, ...], Any] = {}


def _compose_key(loader: Any, config_name: str | None, overrides: list[str]) -> tuple[Any, ...]:
    """Everything a composition depends on besides the files and the ConfigStore (same in both)."""
    path = tuple((e.provider, e.path) for e in loader.get_search_path().get_path())
    return path, config_name, tuple(overrides)


def hand_over() -> None:
    """Let ``hydra.main`` use the pre-flight's composition instead of composing the same config again.

    The next ``load_configuration`` call of a run (not a sweep) gets the config the pre-flight
    composed and checked, when its search path, config name and overrides are the same (a key
    of all three: anything else composes as usual). One use only; Hydra then adds its runtime
    fields to it as to its own. Only Hydra's composition is skipped, not any of its steps after.

    Before that call Hydra composes the same config once more only to read ``hydra.mode``
    (``Hydra.get_mode``: multirun mode, which only skips missing defaults and sweep checks - a
    config the pre-flight composed as a run has neither). That first multirun-mode call gets the
    same config, read-only and unconsumed; a second one (a config that sets ``hydra.mode:
    MULTIRUN`` itself) composes as usual. Hydra's run then asks for the overrides plus
    ``hydra.mode=RUN`` (the mode left unset): it gets the config with that override applied as
    composing would apply it. Two compositions (~0.3 s each here) saved per run.
    """
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra.core.utils import JobRuntime
    from hydra.types import RunMode
    from omegaconf import open_dict

    if not _COMPOSED:
        return
    original = ConfigLoaderImpl.load_configuration
    mode_read = [False]
    early_name = JobRuntime().get("name")  # what composing put in hydra.job.name before hydra.main named the task

    def load_configuration(self: Any, config_name: Any, overrides: list[str], run_mode: Any,
                           *args: Any, **kwargs: Any) -> Any:
        key = _compose_key(self, config_name, list(overrides))
        if run_mode == RunMode.MULTIRUN and not mode_read[0] and key in _COMPOSED:
            mode_read[0] = True  # Hydra.get_mode: it reads cfg.hydra.mode and drops the config
            return _COMPOSED[key]
        ConfigLoaderImpl.load_configuration = original  # type: ignore[method-assign]
        # Hydra's run appends "hydra.mode=RUN" to the overrides when the config leaves the mode unset.
        mode_added = list(overrides[-1:]) == ["hydra.mode=RUN"] and key not in _COMPOSED
        cfg = _COMPOSED.pop(_compose_key(self, config_name, list(overrides[:-1])) if mode_added else key, None)
        _COMPOSED.clear()
        if cfg is None or run_mode != RunMode.RUN:
            return original(self, config_name, overrides, run_mode, *args, **kwargs)
        with open_dict(cfg.hydra):
            if mode_added:  # what composing with that override does: the value, and the override on record
                cfg.hydra.mode = RunMode.RUN
                cfg.hydra.overrides.hydra.append("hydra.mode=RUN")
            if cfg.hydra.job.name == early_name:  # not set by the user: the task's name, as composing now gives
                cfg.hydra.job.name = JobRuntime().get("name")
        return cfg

    ConfigLoaderImpl.load_configuration = load_configuration  # type: ignore[method-assign]


def reuse_sweep_compositions() -> None:
    """Compose each job of an in-process ``-m`` sweep once, not twice.

    Hydra's sweepers first compose every job of a batch to check it
    (``Sweeper.validate_batch_is_legal``), then the basic launcher composes each job again to run
    it - the same call, ~0.2-0.3 s each here. The check's compositions are queued per job
    overrides (a sweep may repeat the same overrides: a queue, in order) and the launcher's calls
    take them; the launcher then sets the job's id and runtime fields on it, as on its own. Only
    for Hydra's basic launcher: launchers in other processes (joblib, Slurm) compose in their
    workers, so nothing is queued for them.
    """
    from collections import deque

    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra.plugins.sweeper import Sweeper

    compose = getattr(ConfigLoaderImpl, "load_sweep_config", None)
    check = getattr(Sweeper, "validate_batch_is_legal", None)
    if compose is None or check is None or getattr(compose, "reuses_compositions", False):
        return
    queued: dict[tuple[int, tuple[str, ...]], deque] = {}
    checking = [False]

    def validate_batch_is_legal(self: Any, batch: Any) -> None:
        checking[0] = type(getattr(self, "launcher", None)).__name__ == "BasicLauncher"
        try:
            check(self, batch)
        finally:
            checking[0] = False

    def load_sweep_config(self: Any, master_config: Any, sweep_overrides: list[str]) -> Any:
        key = (id(self), tuple(sweep_overrides))
        if not checking[0] and queued.get(key):
            return queued[key].popleft()
        cfg = compose(self, master_config, sweep_overrides)
        if checking[0]:
            queued.setdefault(key, deque()).append(cfg)
        return cfg

    load_sweep_config.reuses_compositions = True  # type: ignore[attr-defined]
    Sweeper.validate_batch_is_legal = validate_batch_is_legal  # type: ignore[method-assign]
    ConfigLoaderImpl.load_sweep_config = load_sweep_config  # type: ignore[method-assign]


def _pinned(cfg: Any) -> bool:
    """Whether ``hydra.run.dir`` is a fixed path (not time-stamped with ``${now:...}``, which Hydra
    resolves again a moment later, possibly to another second)."""
    from omegaconf import OmegaConf

    raw = OmegaConf.to_container(cfg.hydra.run, resolve=False).get("dir", "")
    return "${now:" not in str(raw)


def claim_run_dir(run_dir: Path, state: dict[str, Any] | None, pinned: bool) -> None:
    """The last pre-flight step: a read-only run dir of a finished run is re-reported here (Hydra
    would fail writing ``.hydra/``); a read-only one otherwise is refused; a writable one is locked
    for this process, so a second run in it is refused in one line (:func:`.state.lock_run_dir`)."""
    from .state import lock_run_dir, run_dir_writable

    if run_dir.is_dir() and not run_dir_writable(run_dir):
        if state is not None and state.get("finished") and state.get("metrics"):
            from .outputs import summary_line

            print(f"run already finished (read-only run dir {run_dir}: nothing written); reporting its metrics",
                  file=sys.stderr, flush=True)
            print(summary_line(state["metrics"]), flush=True)
            sys.exit(0)
        raise ConfigError("hydra.run.dir", f"{run_dir} is not writable (read-only file system or permissions); "
                          "choose a writable directory")
    if pinned:
        lock_run_dir(run_dir)


@contextlib.contextmanager
def _mark(debug: bool) -> Iterator[None]:
    """Tag an error raised inside with whether the job's config asked for tracebacks."""
    try:
        yield
    except Exception as exc:
        exc.traceback_wanted = debug  # type: ignore[attr-defined]
        raise


def preflight(argv: list[str] | None = None) -> None:
    """Check the command line ``argv`` (default ``sys.argv[1:]``); exit 2 with one line if it is bad.

    Returns quietly when the input is fine, or when Hydra is asked for something other
    than a run (``--help``, ``--cfg``, ``--info``, shell completion, ``--config-path``).
    """
    from hydra._internal.utils import get_args_parser

    if argv is None:
        sys.argv[1:] = argv = yaml_infinity(sys.argv[1:])  # hydra.main reads sys.argv next
    argv = yaml_infinity(list(argv))
    try:
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            args = get_args_parser().parse_args(argv)
    except SystemExit:  # argparse's own usage error: hydra.main reports it (once)
        return
    if (args.help or args.hydra_help or args.cfg or args.info or args.shell_completion or args.config_path
            or getattr(args, "experimental_rerun", None)):
        return
    overrides = list(args.overrides)
    full = _wants_traceback(overrides)
    multirun = bool(args.multirun) or "hydra.mode=MULTIRUN" in overrides
    _COMPOSED.clear()
    try:
        check_jobs(overrides, multirun, args.config_name or CONFIG_NAME, args.config_dir,
                   claim=os.environ.get("RANK", "0") in ("", "0"))
        hand_over()
        if multirun:
            reuse_sweep_compositions()
    except Exception as exc:
        if full or getattr(exc, "traceback_wanted", False):
            raise
        if is_user_error(exc):
            print("error: " + " ".join(str(exc).split()), file=sys.stderr, flush=True)
            sys.exit(EXIT_USAGE)
        # anything else is a gap in the pre-flight, which must not block a run: hydra.main and
        # the trainer check everything again and report it their way


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
    data = sys.modules.get("survopt_hydra.survival.data")
    return isinstance(exc, ConfigError) or (data is not None and isinstance(exc, data.DataError))
