"""Build a torch ``LRScheduler`` from a validated scheduler config.

``build_scheduler`` is the ``_target_`` of every ``conf/scheduler`` option. It fixes
what torch leaves to the user and peers get wrong:

* lengths given in epochs become optimizer steps when ``interval: step``;
* warmup composes with every option, plateau included (``SequentialLR`` refuses
  ``ReduceLROnPlateau``, and restarts chained schedulers from the pre-peak LR);
* finite schedules hold their final LR past the end (torch's cosine rebounds and
  ``OneCycleLR`` raises one step past its total).

Every schedule composes with others on the same optimizer as torch's own chainable ones do
(each step scales the current LR, so a plateau's cut after a cosine stays cut). How a
scheduler is stepped (per epoch or per step, which metric) is not stored on it: it is
:class:`~.stepping.Stepping`, read from the same config node.
"""
from __future__ import annotations

import math
from typing import Any, Callable

from torch.optim import Optimizer, lr_scheduler
from torch.optim.lr_scheduler import LRScheduler

from ..schemas.checks import validate
from ..schemas.scheduler import SCHEDULERS
from ..errors import ConfigError, unknown_name


class CosineAnnealingLR(lr_scheduler.CosineAnnealingLR):
    """torch's cosine annealing (its chainable form: each step scales the current LR), holding the LR
    after ``T_max`` instead of climbing back (torch's rebounds towards the base LR)."""

    def get_lr(self) -> list[float]:
        if self.last_epoch > self.T_max:
            return [group["lr"] for group in self.optimizer.param_groups]
        return super().get_lr()


class ShapeLR(LRScheduler):
    """``lr(t) = floor + (lr(t-1) - floor) * shape(t) / shape(t-1)``: a decay of known shape in
    chainable form, as torch writes its cosine: on its own it follows
    ``floor + (base - floor) * shape(t)`` exactly (to rounding); after another scheduler changed the
    LR, it scales what it finds instead of overwriting it. Holds once the shape reaches 0."""

    def __init__(self, optimizer: Optimizer, shape: Callable[[int], float], floor: float = 0.0) -> None:
        self.shape, self.floor = shape, float(floor)
        super().__init__(optimizer)

    def get_lr(self) -> list[float]:
        t = self.last_epoch
        if t == 0:
            return [group["lr"] for group in self.optimizer.param_groups]
        before, now = self.shape(t - 1), self.shape(t)
        ratio = now / before if before > 0 else 1.0
        return [self.floor + (group["lr"] - self.floor) * ratio for group in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:  # the shape is rebuilt from the config, not pickled
        return {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "shape")}


class OneCycleLR(lr_scheduler.OneCycleLR):
    """torch's one-cycle policy that holds its final LR instead of raising past the end."""

    def get_lr(self) -> list[float]:
        if self.last_epoch >= self.total_steps:
            return [group["lr"] for group in self.optimizer.param_groups]
        return super().get_lr()


class _Wrapper(LRScheduler):
    """A scheduler around ``inner``: checkpoints hold both, ``step(metrics)`` reaches a plateau inside."""

    inner: LRScheduler

    def _step_inner(self, metrics: Any) -> None:
        if isinstance(self.inner, (lr_scheduler.ReduceLROnPlateau, _Wrapper)):
            self.inner.step(metrics)
        else:
            self.inner.step()

    def get_lr(self) -> list[float]:
        return list(self._last_lr)

    def state_dict(self) -> dict[str, Any]:
        state = {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "inner")}
        state["inner"] = self.inner.state_dict()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state = dict(state_dict)
        self.inner.load_state_dict(state.pop("inner"))
        self.__dict__.update(state)


class WarmupScheduler(_Wrapper):
    """Linear warmup from ``start_factor`` x LR to the LR, then hand over to ``inner``.

    ``inner`` was built first (it sets ``initial_lr``) and is not stepped during the
    warmup, so it starts from its own step 0 at exactly the base LR. ``step(metrics)``
    is forwarded to a plateau ``inner`` after the warmup and ignored during it.
    """

    def __init__(self, optimizer: Optimizer, inner: LRScheduler, warmup_steps: int, start_factor: float) -> None:
        self.optimizer = optimizer
        self.inner = inner
        self.warmup_steps = int(warmup_steps)
        self.start_factor = float(start_factor)
        self.base_lrs = [group.setdefault("initial_lr", group["lr"]) for group in optimizer.param_groups]
        self.last_epoch = 0
        self._set(self._warm_lrs(0))

    def _warm_lrs(self, t: int) -> list[float]:
        factor = self.start_factor + (1.0 - self.start_factor) * t / self.warmup_steps
        return [base * factor for base in self.base_lrs]

    def _set(self, lrs: list[float]) -> None:
        for group, lr in zip(self.optimizer.param_groups, lrs):
            group["lr"] = lr
        self._last_lr = list(lrs)

    def step(self, metrics: Any = None) -> None:  # type: ignore[override]
        self.last_epoch += 1
        t = self.last_epoch
        if t < self.warmup_steps:
            self._set(self._warm_lrs(t))
        elif t == self.warmup_steps:
            self._set(list(self.base_lrs))
        else:
            self._step_inner(metrics)
            self._last_lr = [group["lr"] for group in self.optimizer.param_groups]


class HyperParamScheduler(_Wrapper):
    """The LR scheduler ``inner``, plus other param-group hyper-parameters on a cosine.

    MMEngine's ParamScheduler idea in one config: ``hparams={"weight_decay": 0.1}`` takes
    every group's weight decay from its value to 0.1 x its value over ``total`` steps
    (groups at 0 stay at 0). ``step(metrics)`` is forwarded, so plateau still works.
    """

    def __init__(self, optimizer: Optimizer, inner: LRScheduler, total: int, factors: dict[str, float]) -> None:
        for name in factors:
            bad = [g.get("name", i) for i, g in enumerate(optimizer.param_groups)
                   if not isinstance(g.get(name), (int, float)) or isinstance(g.get(name), bool)]
            if bad:
                scalars = sorted(k for k, v in optimizer.param_groups[0].items()
                                 if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "lr")
                raise ConfigError(f"scheduler.hparams.{name}", f"not a number in param group {bad[0]}; "
                                  f"allowed: {', '.join(scalars)}")
        self.optimizer, self.inner, self.total, self.factors = optimizer, inner, int(total), dict(factors)
        self.starts = [{n: float(g[n]) for n in factors} for g in optimizer.param_groups]
        self.base_lrs = list(inner.base_lrs)
        self.last_epoch = 0
        self._last_lr = [g["lr"] for g in optimizer.param_groups]

    def step(self, metrics: Any = None) -> None:  # type: ignore[override]
        self._step_inner(metrics)
        self.last_epoch += 1
        cos = (1 + math.cos(math.pi * min(self.last_epoch, self.total) / self.total)) / 2
        for group, start in zip(self.optimizer.param_groups, self.starts):
            for name, factor in self.factors.items():
                group[name] = start[name] * (factor + (1 - factor) * cos)
        self._last_lr = [g["lr"] for g in self.optimizer.param_groups]


def _steps(key: str, epochs: float, unit: int) -> int:
    steps = round(epochs * unit)
    if steps < 1:
        raise ConfigError(key, f"{epochs:g} epochs is less than one {('step' if unit > 1 else 'epoch')}")
    return steps


def _cosine(opt: Optimizer, c: dict, unit: int, total: int | None, warm: int) -> LRScheduler:
    if c["T_max"] is not None:
        t_max = _steps("scheduler.T_max", c["T_max"], unit)
    elif total is not None:
        t_max = total - warm
    else:
        raise ConfigError("scheduler.T_max", "unknown run length: pass epochs= or set T_max")
    return CosineAnnealingLR(opt, T_max=t_max, eta_min=c["eta_min"])


def _onecycle(opt: Optimizer, c: dict, unit: int, total: int | None, warm: int) -> LRScheduler:
    if total is None:
        raise ConfigError("scheduler.epochs", "onecycle needs the run length: pass epochs= (and steps_per_epoch=)")
    if warm:
        raise ConfigError("scheduler.warmup_epochs", "onecycle has its own warmup; use pct_start, allowed: 0")
    groups = opt.param_groups
    peak = c["max_lr"]
    max_lrs = [peak * g.get("lr_mult", 1.0) if peak else g["lr"] for g in groups]
    has_momentum = "momentum" in opt.defaults or "betas" in opt.defaults
    return OneCycleLR(
        opt, max_lr=max_lrs, total_steps=total, pct_start=c["pct_start"],
        anneal_strategy=c["anneal_strategy"], div_factor=c["div_factor"],
        final_div_factor=c["final_div_factor"], three_phase=c["three_phase"],
        cycle_momentum=c["cycle_momentum"] and has_momentum,
    )


def plateau_mode(monitor: str | None, mode: str | None) -> str:
    """``mode`` as given, else from the metric's name: ``*loss*`` is minimised, anything else maximised."""
    if mode is not None:
        return mode
    if monitor is None:
        raise ConfigError("scheduler.monitor", "plateau needs the metric it watches: set scheduler.monitor=<metric> "
                          "(mode follows: *loss* -> min, else max), or scheduler.mode=min|max and call step(metric)")
    return "min" if "loss" in monitor.lower() else "max"


def _plateau(opt: Optimizer, c: dict, unit: int, total: int | None, warm: int) -> LRScheduler:
    if c["interval"] != "epoch":
        raise ConfigError("scheduler.interval", "plateau steps on validation metrics; allowed: epoch")
    return lr_scheduler.ReduceLROnPlateau(
        opt, mode=plateau_mode(c["monitor"], c["mode"]), factor=c["factor"], patience=c["patience"], threshold=c["threshold"],
        threshold_mode=c["threshold_mode"], cooldown=c["cooldown"], min_lr=c["min_lr"],
    )


def _run_length(name: str, total: int | None, warm: int) -> int:
    if total is None:
        raise ConfigError("scheduler.epochs", f"{name} needs the run length: pass epochs= (and steps_per_epoch=)")
    return total - warm


def _polynomial(opt: Optimizer, c: dict, unit: int, total: int | None, warm: int) -> LRScheduler:
    n = _run_length("polynomial", total, warm)
    return ShapeLR(opt, lambda t: (1 - min(t, n) / n) ** c["power"], c["eta_min"])


def _inverse_sqrt(opt: Optimizer, c: dict, unit: int, total: int | None, warm: int) -> LRScheduler:
    scale = _steps("scheduler.timescale", c["timescale"], unit) if c["timescale"] is not None else max(warm, 1)
    return ShapeLR(opt, lambda t: math.sqrt(scale / (t + scale)))


def _wsd(opt: Optimizer, c: dict, unit: int, total: int | None, warm: int) -> LRScheduler:
    n = _run_length("wsd", total, warm)
    decay = max(1, min(n, round(c["decay_fraction"] * (total or 0))))
    start = n - decay
    shapes = {"linear": lambda p: 1 - p, "cosine": lambda p: (1 + math.cos(math.pi * p)) / 2,
              "sqrt": lambda p: 1 - math.sqrt(p)}
    shape = shapes[c["decay_shape"]]
    return ShapeLR(opt, lambda t: 1.0 if t <= start else shape(min(t - start, decay) / decay), c["eta_min"])


def _constant(opt: Optimizer, c: dict, unit: int, total: int | None, warm: int) -> LRScheduler:
    return lr_scheduler.ConstantLR(opt, factor=1.0, total_iters=0)


def _cosine_warm_restarts(opt: Optimizer, c: dict, unit: int, total: int | None, warm: int) -> LRScheduler:
    return lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=_steps("scheduler.T_0", c["T_0"], unit),
                                                    T_mult=c["T_mult"], eta_min=c["eta_min"])


def _step(opt: Optimizer, c: dict, unit: int, total: int | None, warm: int) -> LRScheduler:
    return lr_scheduler.StepLR(opt, step_size=_steps("scheduler.step_size", c["step_size"], unit), gamma=c["gamma"])


def _multistep(opt: Optimizer, c: dict, unit: int, total: int | None, warm: int) -> LRScheduler:
    milestones = [_steps("scheduler.milestones", m, unit) for m in c["milestones"]]
    return lr_scheduler.MultiStepLR(opt, milestones=milestones, gamma=c["gamma"])


def _exponential(opt: Optimizer, c: dict, unit: int, total: int | None, warm: int) -> LRScheduler:
    return lr_scheduler.ExponentialLR(opt, gamma=c["gamma"])


def _linear_warmup(opt: Optimizer, c: dict, unit: int, total: int | None, warm: int) -> LRScheduler:
    return lr_scheduler.LinearLR(opt, start_factor=c["warmup_start_factor"], end_factor=1.0, total_iters=warm)


Builder = Callable[[Optimizer, dict, int, Any, int], LRScheduler]


def _builder(name: str) -> Builder:
    """The function a scheduler's record names (``build``)."""
    return globals()[SCHEDULERS[name].build]



def _warmup_steps(cfg: dict, unit: int, total: int | None) -> int:
    """The warmup in scheduler steps: ``warmup_epochs`` x steps per epoch, or ``warmup_fraction`` of the run."""
    fraction = cfg["warmup_fraction"]
    if fraction is None:
        return round(cfg["warmup_epochs"] * unit)
    if cfg["warmup_epochs"]:
        raise ConfigError("scheduler.warmup_fraction", f"set either warmup_epochs ({cfg['warmup_epochs']:g}) or "
                          f"warmup_fraction ({fraction:g}), not both: scheduler.warmup_fraction=null counts the "
                          "warm-up in epochs, scheduler.warmup_epochs=0 as a fraction of the run")
    if total is None:
        raise ConfigError("scheduler.warmup_fraction", "needs the run length: pass epochs= (and steps_per_epoch=)")
    return max(1, round(fraction * total))


def _check_eta_min(optimizer: Optimizer, cfg: dict) -> None:
    """A floor above a group's LR would make the schedule climb instead of decay."""
    eta_min = cfg.get("eta_min")
    if not eta_min:
        return
    for i, group in enumerate(optimizer.param_groups):
        lr = group.get("initial_lr", group["lr"])
        if eta_min > lr:
            raise ConfigError("scheduler.eta_min", f"{eta_min:g} is above the LR of param group "
                              f"'{group.get('name', i)}' ({lr:g}): the LR would climb; allowed: <= {lr:g}")


def scheduler_options(name: str, key: str = "scheduler.name") -> type:
    """The schema dataclass of a scheduler name, or a ConfigError listing the names."""
    try:
        return SCHEDULERS[name]
    except KeyError:
        raise unknown_name(key, name, SCHEDULERS) from None


def build_scheduler(
    optimizer: Optimizer,
    name: str = "none",
    *,
    epochs: int | None = None,
    steps_per_epoch: int | None = None,
    **options: Any,
) -> LRScheduler:
    """Validate ``options`` for ``name`` and build the scheduler for this run length.

    ``steps_per_epoch`` counts *applied optimizer steps* per epoch (batches divided by
    gradient accumulation, rounded up), so step schedules end exactly at the run's end.
    """
    cfg = validate(scheduler_options(name), options, "scheduler")
    for key, value in (("epochs", epochs), ("steps_per_epoch", steps_per_epoch)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise ConfigError(f"scheduler.{key}", f"must be an integer >= 1, got {value!r}")
    if cfg["interval"] == "step" and steps_per_epoch is None:
        raise ConfigError("scheduler.interval", "interval=step needs steps_per_epoch= at instantiate")
    unit = steps_per_epoch if cfg["interval"] == "step" else 1
    total = epochs * unit if epochs is not None else None
    warm = _warmup_steps(cfg, unit, total)
    if total is not None and warm >= total and name != "linear_warmup":
        what = "optimizer steps" if unit > 1 else "epochs"
        if cfg["warmup_fraction"] is not None:
            raise ConfigError("scheduler.warmup_fraction", f"{cfg['warmup_fraction']:g} of a {total}-{what[:-1]} run "
                              f"is {warm} {what} once rounded, not shorter than the run; the run is too short to warm up")
        raise ConfigError(
            "scheduler.warmup_epochs",
            f"warmup of {cfg['warmup_epochs']:g} epochs is {warm} {what} once rounded, not shorter than the run "
            f"({total} {what}); allowed: at most {(total - 1) / unit:g} epochs (or scheduler.warmup_fraction)",
        )
    _check_eta_min(optimizer, cfg)
    if name == "linear_warmup" and warm < 1:
        raise ConfigError("scheduler.warmup_epochs", "linear_warmup needs at least one warmup step")
    sched = _builder(name)(optimizer, cfg, unit, total, warm)
    if warm and name not in ("linear_warmup", "onecycle"):
        sched = WarmupScheduler(optimizer, sched, warm, cfg["warmup_start_factor"])
    if cfg["hparams"]:
        if total is None:
            raise ConfigError("scheduler.hparams", "needs the run length: pass epochs= (and steps_per_epoch=)")
        sched = HyperParamScheduler(optimizer, sched, total, cfg["hparams"])
    return sched
