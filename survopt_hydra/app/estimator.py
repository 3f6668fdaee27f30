"""``DeepCoxRegressor``: the training app as a scikit-learn estimator, for notebooks and pipelines.

One training path: :meth:`DeepCoxRegressor.fit` composes the app's own config
(:func:`.compose.compose_train`, as ``survopt-train data=csv`` sees it) with the estimator's
settings, reads ``X`` and ``y`` into a cohort exactly as the CLI reads a data file
(:func:`.data.cohort_from_table`: the same schema inference, one-hot levels, missing-value
policies and checks), plans the run with :func:`.run_plan.plan_run` and trains it with
:class:`.trainer.Trainer` in a run dir (a temporary one unless ``run_dir`` is given). So the
same config and seed give the CLI's numbers (``tests/test_estimator.py`` compares them). The
validation rows for early stopping are split off ``X`` by ``data.val_fraction`` (or
``data.folds``), never taken from what :meth:`score` is given later; no test rows are split off.

Predictions go through the run's :class:`.predictor.Predictor` (``predictor.json`` +
``best.pt``, what ``survopt-predict`` loads): risks (higher = earlier event), S(t | x) and
H(t | x) from the Breslow baseline of the training rows, in scikit-survival's conventions
(``predict_survival_function(X, return_array=...)`` at ``unique_times_``, ``score`` = Harrell's C).

Settings. Each config group is one constructor parameter: ``model``, ``optimizer``,
``scheduler``, ``clipping``, ``ema``, ``amp``, ``trainer`` and ``data`` (how ``X`` is split and
read). A group's value is None (the app's default), an option name (``"sgd"``), a dict (the
option's name under its name key, e.g. ``{"name": "sgd", "lr": 0.1}``, or just the keys to
change in the current option, ``{"lr": 1e-3}``) or the library's config dataclass
(``AdamWConfig(lr=1e-3)``: that option with every field as given). ``overrides`` takes
command-line strings (``["optimizer.lr=1e-3", "+preset=large_model"]``), applied first; the
group parameters are applied on top. ``set_params(optimizer__lr=1e-3)`` changes one key of a
group, so ``GridSearchCV(est, {"optimizer__lr": [...]})`` searches it, as does a grid over
whole groups (``{"optimizer": ["adamw", SGDConfig(lr=0.1)]}``).
"""
from __future__ import annotations

import contextlib
import dataclasses
import random
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
from sklearn.base import BaseEstimator

from ..survival.cells import DataError
from ..survival.frames import survival_table, targets
from .estimator_params import GROUPS, check_data, group_values, with_values

FIT, PREDICT = "fit(X, y)", "X"


@contextlib.contextmanager
def _own_state() -> Iterator[None]:
    """Leave the caller's process as it was: the trainer fixes torch's thread count (1 for tables) and
    seeds torch's, numpy's and Python's global generators, as a CLI run does in its own process."""
    import torch

    threads = torch.get_num_threads()
    np_state, py_state = np.random.get_state(), random.getstate()
    with torch.random.fork_rng(devices=[]):
        try:
            yield
        finally:
            torch.set_num_threads(threads)
            np.random.set_state(np_state)
            random.setstate(py_state)


def saved_times(predictor: Any) -> np.ndarray:
    """The time grid a saved model carries, where a loaded estimator gives its curves: a Cox run's baseline
    steps (the training event times, up to ``BASELINE_KNOTS`` of them, compacted above), a discrete family's cuts,
    Cox-Time's baseline times, an AFT family's 100 geometric steps over exp(mean log time +- 3 sd) of its
    training rows; an ensemble's: the union of its members'."""
    members = getattr(predictor, "members", None)
    if members is not None:
        return np.unique(np.concatenate([saved_times(m) for m in members]))
    if predictor.baseline is not None:
        return predictor.baseline.times.double().numpy()
    family = predictor.family
    grid = getattr(family, "cuts", None) or getattr(family, "base_times", None)
    if grid is None:  # parametric AFT: its fitted log-time location and scale
        grid = np.exp(np.linspace(family.log_loc - 3 * family.log_scale, family.log_loc + 3 * family.log_scale, 100))
    return np.unique(np.asarray(grid, dtype=np.float64))


class DeepCoxRegressor(BaseEstimator):
    """A deep Cox proportional-hazards network (DeepSurv), trained by survopt-train's own recipe.

    Parameters (each a config group of the app: None, an option name, a dict or a config dataclass;
    see the module docstring): ``model`` (``mlp``, ``linear``), ``family`` (``cox``, the default, or another
    model family: docs/families.md), ``optimizer``, ``scheduler``,
    ``clipping``, ``ema``, ``amp``, ``trainer`` (epochs, batch size, seed, early stopping ...),
    ``data`` (``val_fraction``, ``split_seed``, ``folds``/``fold``, ``missing``, ``unseen``,
    ``max_levels``, ``feature_cols``, and ``duration_col``/``event_col``: the names of y's columns);
    ``overrides``: command-line strings applied first; ``run_dir``: where the run's files go (kept;
    default a temporary folder, removed after ``fit``).

    Attributes after ``fit``: ``predictor_`` (the run's :class:`.predictor.Predictor`),
    ``unique_times_`` (the training rows' distinct times), ``val_cindex_``, ``best_epoch_``,
    ``metrics_`` (the run's validation figures), ``history_`` (one row per epoch), ``config_``
    (the composed config, plain), ``n_features_in_`` and, for a DataFrame, ``feature_names_in_``.
    """

    def __init__(self, model: Any = None, optimizer: Any = None, scheduler: Any = None, clipping: Any = None,
                 ema: Any = None, amp: Any = None, trainer: Any = None, data: Any = None,
                 overrides: Any = (), run_dir: Any = None, family: Any = None) -> None:
        self.model = model
        self.family = family
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.clipping = clipping
        self.ema = ema
        self.amp = amp
        self.trainer = trainer
        self.data = data
        self.overrides = overrides
        self.run_dir = run_dir

    # -- scikit-learn parameters ----------------------------------------------------------
    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor's parameters; with ``deep``, also ``<group>__<key>`` for the keys a dict or
        dataclass group holds (what ``set_params`` and a grid search over ``optimizer__lr`` change)."""
        params = super().get_params(deep=False)
        if deep:
            for group in GROUPS:
                value = params[group]
                if isinstance(value, Mapping):
                    params.update({f"{group}__{k}": v for k, v in value.items() if not str(k).startswith("_")})
                elif dataclasses.is_dataclass(value) and not isinstance(value, type):
                    params.update({f"{group}__{f.name}": getattr(value, f.name) for f in dataclasses.fields(value)
                                   if not f.name.startswith("_")})  # not Hydra's _target_ / _partial_
        return params

    def set_params(self, **params: Any) -> "DeepCoxRegressor":
        """Set parameters; ``<group>__<key>=value`` changes one key of a group (a new dict or dataclass,
        never the object given before), e.g. ``set_params(optimizer__lr=1e-3)``."""
        nested: dict[str, dict[str, Any]] = {}
        plain = {}
        for key, value in params.items():
            group, sep, sub = key.partition("__")
            if sep and group in GROUPS:
                nested.setdefault(group, {})[sub] = value
            else:
                plain[key] = value
        super().set_params(**plain)
        for group, changes in nested.items():
            setattr(self, group, with_values(group, getattr(self, group), changes))
        return self

    # -- the config -------------------------------------------------------------------------
    def compose(self) -> Any:
        """The run's config: the app's (``compose_train``, ``data=csv``) with ``overrides`` and the group
        parameters on top, checked later by the run's one validation pass. ConfigError (one line)."""
        from omegaconf import OmegaConf, open_dict

        from .compose import compose_train

        overrides = [self.overrides] if isinstance(self.overrides, str) else list(self.overrides or ())
        chosen = {group: group_values(group, getattr(self, group)) for group in GROUPS}
        check_data(*chosen["data"], overrides)
        options = [f"{group}={option}" for group, (option, _) in chosen.items()
                   if option is not None and group != "data"]
        cfg = compose_train(["data=csv", *options, *overrides])
        with open_dict(cfg):
            for group, (_, values) in chosen.items():
                if values:
                    cfg[group] = OmegaConf.merge(cfg[group], values)
            cfg.data.path = FIT  # what the run's files and messages call the rows
            cfg.trainer.resume = False  # a run dir cannot tell which X it was trained on: always start afresh
        return cfg

    # -- fit --------------------------------------------------------------------------------
    def fit(self, X: Any, y: Any = None) -> "DeepCoxRegressor":
        """Train on ``X`` (a DataFrame with number and text columns, or a numeric array) and ``y`` (a
        scikit-survival structured array, a (durations, events) pair, or None with the duration and event
        columns in the DataFrame ``X``). ConfigError / DataError (one line) before anything is trained."""
        from omegaconf import OmegaConf

        from ..survival.frames import is_frame
        from .data import cohort_from_table
        from .predictor import Predictor
        from .run_plan import plan_run
        from .divergence import TrainingError
        from .trainer import Trainer, train
        from .user_models import targets_in

        cfg = self.compose()
        names = (str(cfg.data.duration_col), str(cfg.data.event_col))
        features: list[str] = []

        def read(data: dict[str, Any]) -> Any:
            table, found = survival_table(X, y, names, FIT)
            features.extend(found)
            return cohort_from_table(data, table, FIT, holdout=False)

        temporary = self.run_dir is None
        run_dir = Path(tempfile.mkdtemp(prefix="survopt-fit-")) if temporary else Path(self.run_dir)
        try:
            with _own_state():
                plan = plan_run(cfg, load_data=read)
                trainer = Trainer(cfg, run_dir, plan)
                metrics = train(cfg, run_dir, trainer, report=False)
                history = list(trainer.progress.history)
                del trainer
            if not metrics:
                raise TrainingError("training stopped before the end (trainer.stop_after_epochs): nothing to predict "
                                    "with; leave trainer.stop_after_epochs null")
            # model=custom: the class this process's own config named (a file never chooses code to import)
            trust = tuple(target for _, target in targets_in(OmegaConf.to_container(cfg.model), "model"))
            self.predictor_ = Predictor.load(run_dir, trust=trust)
        finally:
            if temporary:
                shutil.rmtree(run_dir, ignore_errors=True)
        self.config_ = OmegaConf.to_container(cfg, resolve=True)
        self.unique_times_ = np.unique(plan.cohort.train.durations.cpu().double().numpy())
        self.metrics_ = {k: v for k, v in metrics.items()  # the run's "test" rows are its validation rows
                         if not k.startswith(("test_", "bootstrap_")) and k != "n_test"}
        self.val_cindex_, self.best_epoch_ = metrics["val_cindex"], metrics["best_epoch"]
        self.history_ = history
        self.n_features_in_ = len(features)
        if is_frame(X):
            self.feature_names_in_ = np.asarray(features, dtype=object)
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        return self

    @classmethod
    def load(cls, path: str | Path, trust: Sequence[str] = ()) -> "DeepCoxRegressor":
        """A fitted estimator from a finished run dir (``predictor.json`` + ``best.pt``) or an ensemble folder
        (``survopt-tune``'s bags, :func:`.ensemble.save_ensemble`): ``predict``, ``predict_survival_function``
        and ``score`` give what ``survopt-predict`` gives on the same rows (an ensemble: the mean standardized
        risk and the mean curves). Read as untrusted data, as the tool reads them (``trust``: the
        ``model._target_`` paths of a ``model=custom`` run you vouch for, ``--trust``). ``unique_times_`` is
        the saved model's own time grid (:func:`saved_times`). ``fit`` trains anew from this estimator's
        parameters (the defaults), not from the saved run."""
        from .ensemble import load_predictor

        predictor = load_predictor(path, tuple(trust))
        schema = getattr(predictor, "members", [predictor])[0].schema
        est = cls()
        est.predictor_ = predictor
        est.config_ = {"data": {"name": "csv", "duration_col": schema.duration_col, "event_col": schema.event_col},
                       "trainer": {"num_threads": None}}  # set_threads' rule: one thread for a table
        est.unique_times_ = saved_times(predictor)
        est.n_features_in_ = len(predictor.columns)
        est.feature_names_in_ = np.asarray(predictor.columns, dtype=object)
        return est

    # -- predictions ------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, "predictor_")

    def _table(self, X: Any) -> Any:
        """``X`` as a table; a plain array of the fitted width takes the fitted DataFrame's column names."""
        from ..survival.frames import arrow_table, is_frame

        table = arrow_table(X, PREDICT)
        names = getattr(self, "feature_names_in_", None)
        if names is not None and not is_frame(X) and table.num_columns == len(names):
            table = table.rename_columns([str(n) for n in names])
        return table

    @contextlib.contextmanager
    def _threads(self) -> Iterator[None]:
        """The run's CPU thread count (1 for tables: tiny matmuls and the bootstrap's passes run 10-25x
        slower with a thread per core on a busy 2-core machine), the caller's back afterwards."""
        import torch

        from .components import set_threads

        with _own_state():
            set_threads(self.config_["trainer"], self.config_["data"], torch.device("cpu"))
            yield

    def predict(self, X: Any) -> np.ndarray:
        """Risk scores (the log-hazard ratio; higher = earlier event), one per row of ``X``, encoded with the
        training schema (columns by name, any order; extra columns ignored)."""
        import torch

        from ..survival.readers import TableSource
        from .predict import scored_batches
        from .data import EVAL_ROWS

        self._check_fitted()
        source = TableSource(self._table(X), PREDICT)
        with self._threads():
            parts = [risk for _, _, risk, _ in scored_batches(self.predictor_, source, PREDICT, EVAL_ROWS)]
        return torch.cat(parts).double().numpy() if parts else np.zeros(0)

    def _all_curves(self, X: Any, times: Any) -> np.ndarray:
        """A family run's curves at ``times``: (n, 1 + causes, len(times)) with S(t | x) first, then CIF_k(t | x)
        of each competing cause (S = 1 - their sum), as ``survopt-predict`` computes them."""
        import torch

        from ..survival.readers import TableSource
        from .predict import scored_batches
        from .data import EVAL_ROWS

        times, causes = [float(t) for t in times], self.predictor_.causes
        with self._threads():
            parts = [surv for *_, surv in scored_batches(self.predictor_, TableSource(self._table(X), PREDICT),
                                                          PREDICT, EVAL_ROWS, times)]
        curves = torch.cat(parts).double() if parts else torch.zeros(0, len(times) * causes, dtype=torch.float64)
        curves = curves.reshape(len(curves), causes, len(times))
        return (curves if causes == 1 else torch.cat([1.0 - curves.sum(1, keepdim=True), curves], 1)).numpy()

    def _curves(self, X: Any, times: Any) -> np.ndarray:
        """A family run's S(t | x) at ``times`` (n, len(times))."""
        return self._all_curves(X, times)[:, 0]

    def _functions(self, X: Any, survival: bool, return_array: bool) -> np.ndarray:
        if getattr(self.predictor_, "baseline", None) is None:  # a family's own curve, or an ensemble's mean; H = -log S
            values = self._curves(X, self.unique_times_)
            values = values if survival else -np.log(np.clip(values, np.finfo(np.float64).tiny, None))
        else:
            base = self.predictor_.baseline
            risk = self.predict(X)
            values = (base.survival if survival else base.cumulative_hazard)(risk, self.unique_times_).numpy()
        if return_array:
            return values
        try:
            from sksurv.functions import StepFunction
        except ImportError:
            raise ImportError('step functions are scikit-survival\'s: pip install scikit-survival, or pass '
                              'return_array=True') from None
        out = np.empty(len(values), dtype=object)
        for i, row in enumerate(values):
            out[i] = StepFunction(self.unique_times_, row)
        return out

    def predict_survival_function(self, X: Any, return_array: bool = False) -> np.ndarray:
        """S(t | x) = exp(-H0(t) exp(risk)), H0 Breslow's baseline of the training rows: scikit-survival's
        ``StepFunction`` per row, or with ``return_array`` an (n, len(unique_times_)) array at ``unique_times_``."""
        return self._functions(X, True, return_array)

    def predict_cumulative_hazard_function(self, X: Any, return_array: bool = False) -> np.ndarray:
        """H(t | x) = H0(t) exp(risk), as :meth:`predict_survival_function` gives S."""
        return self._functions(X, False, return_array)

    # -- scores -----------------------------------------------------------------------------
    def _scored(self, X: Any, y: Any) -> tuple[Any, Any, Any]:
        """(risk, durations, events) as float64 tensors; DataError for durations or events the loader refuses."""
        import torch

        names = (self.config_["data"]["duration_col"], self.config_["data"]["event_col"])
        pair = targets(y, names, X)
        if pair is None:
            absent = [c for c in names if c not in X.columns]
            if absent:
                raise DataError(f"X: no column {absent[0]!r} (data.duration_col, data.event_col) and no y")
            pair = (X[names[0]], X[names[1]])
        t, e = (np.ascontiguousarray(v, dtype=np.float64).reshape(-1) for v in pair)
        if not (np.isfinite(t).all() and (t >= 0).all()):
            raise DataError("y: durations must be finite and >= 0")
        causes = self.predictor_.causes
        if not np.isin(e, np.arange(causes + 1)).all():
            raise DataError("y: events must be 0 or 1 (False/True)" if causes == 1 else
                            f"y: events must be 0 (censored) or a cause 1..{causes}")
        risk = self.predict(X)
        if len(risk) != len(t):
            raise DataError(f"X has {len(risk)} rows but y has {len(t)}")
        return torch.from_numpy(risk), torch.from_numpy(t), torch.from_numpy(e)

    def _family_scored(self, X: Any, y: Any) -> list[tuple[Any, Any, bool]]:
        """A family run's curves on ``X`` for the C-index the app gives its family (docs/families.md): S(t | x)
        for Antolini's C, or each cause's CIF for the cause-specific C, read at the rows' own times."""
        import torch

        _, t, e = self._scored(X, y)
        at = torch.unique(t)
        curves = torch.from_numpy(self._all_curves(X, at.tolist()))

        def lookup(k: int) -> Any:
            return lambda times: curves[:, k, torch.searchsorted(at, torch.as_tensor(times, dtype=torch.float64))]

        causes = self.predictor_.causes
        return [(lookup(0), None, False)] if causes == 1 else [(lookup(k), k, True) for k in range(1, causes + 1)]

    def score(self, X: Any, y: Any = None) -> float:
        """Harrell's C-index of :meth:`predict` on ``X`` against ``y`` (scikit-survival's ``score``; ties in
        risk count one half, exactly equal risks only - scikit-survival also ties risks within 1e-8). A run
        of another family: the C-index the app reports for it (Antolini's, or the mean cause-specific C)."""
        from ..survival.metrics import concordance_index

        if self.predictor_.family is not None:
            from ..survival.families.metrics import own_time_concordance

            _, t, e = self._scored(X, y)
            return float(np.mean([own_time_concordance(c, t, e, k, w) for c, k, w in self._family_scored(X, y)]))
        return concordance_index(*self._scored(X, y))

    def score_interval(self, X: Any, y: Any = None, level: float = 0.95, resamples: int = 1000,
                       seed: int = 0) -> tuple[float, float, float]:
        """(C-index, lower, upper): Harrell's C with a percentile bootstrap interval over the rows of ``X``
        (the run's own :func:`..survival.bootstrap.bootstrap_intervals`, as metrics.json's ``test_cindex_ci``)."""
        from ..survival.bootstrap import bootstrap_intervals
        from ..survival.metrics import concordance_index
        from .predictor import BOOTSTRAP_MAX_ROWS

        risk, t, e = self._scored(X, y)
        if self.predictor_.family is not None:
            from ..survival.families.metrics import bootstrap_concordance

            with self._threads():
                ci = bootstrap_concordance(self._family_scored(X, y), t, e, resamples=resamples, seed=seed,
                                           level=level)
            lo, hi = ci if ci is not None else (float("nan"), float("nan"))
            return self.score(X, y), lo, hi
        with self._threads():
            ci = bootstrap_intervals(risk, t, e, resamples=resamples, seed=seed, level=level,
                                     max_rows=BOOTSTRAP_MAX_ROWS)["cindex"]
        lo, hi = ci if ci is not None else (float("nan"), float("nan"))
        return concordance_index(risk, t, e), lo, hi
