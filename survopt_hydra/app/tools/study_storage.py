"""One Optuna study shared by several ``survopt-tune`` processes (``--storage``, ``--study-name``): the RDB
storage, the settings every process of a study must share, and the trial records read back from it."""
from __future__ import annotations

import time
from typing import Any

from ..compose import override_key
from .search_space import COX_ONLY, family_keys


def study_records(study: Any) -> list[dict[str, Any]]:
    """Every finished trial's record (trials.csv's rows), by trial number, whichever process ran it."""
    return [t.user_attrs["record"] for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
            if "record" in t.user_attrs]


def study_settings(base: list[str], cfg: Any, folds: int, space: dict[str, Any],
                   families: tuple[str, ...] = COX_ONLY) -> dict[str, Any]:
    """What every process of one stored study must share: the base overrides (data file paths may differ
    between machines), the folds, the monitored figure, the searched keys and the searched families
    (recorded only when not the Cox-only preset's, so studies stored before families read the same)."""
    from survopt_hydra.app.components import DATA_PATH_KEYS

    paths = {f"data.{key}" for key in DATA_PATH_KEYS}
    settings = {"overrides": sorted(o for o in base if override_key(o) not in paths), "folds": folds,
                "monitor": str(cfg.trainer.monitor), "space": sorted(space)}
    if families != COX_ONLY:
        settings.update(families=list(families), family_space=family_keys(base, families))
    return settings


#: How long a process waits for SQLite's lock (SQLAlchemy's default, 5 s, is shorter than a busy moment of
#: several processes writing trial results).
SQLITE_TIMEOUT_S = 60


def rdb_storage(url: str) -> Any:
    """Optuna's RDB storage at ``url`` (SQLAlchemy's URL: ``sqlite:///study.db``, ``postgresql://...``,
    ``mysql+pymysql://...``); a one-line ConfigError on ``--storage`` when it cannot be opened. Opening
    is retried a few times: processes started together may create the tables at the same moment."""
    import optuna
    import sqlalchemy

    from survopt_hydra.errors import ConfigError, first_line

    try:
        shown = sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparseable URL: refused below, in SQLAlchemy's words
        shown = url
    kwargs = {"connect_args": {"timeout": SQLITE_TIMEOUT_S}} if url.startswith("sqlite") else None
    for attempt in range(5):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
        except ImportError as exc:  # the database's driver
            raise ConfigError("--storage", f"{shown}: its database driver is not installed ({exc}); e.g. pip install "
                              "psycopg2-binary for PostgreSQL or PyMySQL for MySQL") from None
        except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.IntegrityError) as exc:  # locked; a table made twice
            if attempt == 4:
                raise ConfigError("--storage", f"{shown}: cannot open the database ({first_line(exc)[:200]})") from None
            time.sleep(0.5 * (attempt + 1))
        except (sqlalchemy.exc.SQLAlchemyError, ValueError) as exc:
            raise ConfigError("--storage", f"{shown}: not a usable database URL ({first_line(exc)[:200]}); e.g. "
                              "sqlite:///study.db") from None


def open_study(storage: str | None, name: str | None, settings: dict[str, Any], sampler_seed: int,
               pruner: Any = None, create: bool = True) -> tuple[Any, bool]:
    """(the Optuna study, whether this call created it).

    In memory without ``storage``. With it, the study ``name`` is created, or joined when another process
    created it first; a study made with other settings (:func:`study_settings`) is refused in one line. The
    creating process's TPE sampler is seeded with ``sampler_seed`` (one process with a storage draws what it
    would in memory); a joining process's sampler takes fresh entropy, so processes never draw the same
    configs. ``create=False`` (``--final-only``) only joins."""
    import optuna
    import warnings

    from survopt_hydra.errors import ConfigError

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # multivariate TPE
    direction = "minimize" if settings["monitor"] == "val_loss" else "maximize"
    # several families: each draws its own keys, a search space that changes by trial (TPE's group mode)
    group = len(settings.get("families", ())) > 1
    sampler = optuna.samplers.TPESampler(seed=sampler_seed, multivariate=True, **({"group": True} if group else {}))
    if storage is None:
        return optuna.create_study(direction=direction, pruner=pruner, sampler=sampler), True
    rdb = rdb_storage(storage)
    study, created = None, create
    if create:
        try:
            study = optuna.create_study(storage=rdb, study_name=name, direction=direction, pruner=pruner,
                                        sampler=sampler)
        except optuna.exceptions.DuplicatedStudyError:  # another process was first: join it
            created = False
    if study is None:
        try:
            study = optuna.load_study(study_name=name, storage=rdb, pruner=pruner, sampler=optuna.samplers.TPESampler(
                multivariate=True, **({"group": True} if group else {})))
        except KeyError:
            raise ConfigError("--study-name", f"no study {name!r} in --storage; run the search first") from None
    if study.user_attrs.get("survopt_tune") is None:
        study.set_user_attr("survopt_tune", settings)
    same_settings(study, name, settings)
    return study, created


def same_settings(study: Any, name: str | None, settings: dict[str, Any]) -> None:
    """ConfigError unless the stored study was made with ``settings`` (:func:`study_settings`)."""
    from survopt_hydra.errors import ConfigError

    stored = study.user_attrs.get("survopt_tune")
    if stored is not None and stored != settings:
        raise ConfigError("--study-name", f"study {name!r} tunes {stored}, this command {settings}; every process "
                          "of a study uses the same overrides, --folds and monitor (or pass another --study-name)")


def check_study(storage: str, name: str, settings: dict[str, Any]) -> None:
    """Before anything is written: the storage opens, and a study already stored under ``name`` was made with
    ``settings``. Nothing is created."""
    import optuna

    try:
        study = optuna.load_study(study_name=name, storage=rdb_storage(storage))
    except KeyError:  # a new study: created by the search
        return
    same_settings(study, name, settings)

def check_storage_flags(storage: str | None, study_name: str | None, search_only: bool, final_only: bool) -> None:
    """One-line ConfigError for a combination of the shared-study flags that cannot work."""
    from survopt_hydra.errors import ConfigError

    if storage is not None and not study_name:
        raise ConfigError("--storage", "needs --study-name: the name every process of the study gives")
    if study_name is not None and storage is None:
        raise ConfigError("--study-name", "names a study in a database; give --storage too (e.g. sqlite:///study.db)")
    if search_only and final_only:
        raise ConfigError("--search-only/--final-only", "give one of them")
    if (search_only or final_only) and storage is None:
        flag = "--search-only" if search_only else "--final-only"
        raise ConfigError(flag, "works on a study stored in --storage (a process without one keeps its trials in "
                          "memory)")
