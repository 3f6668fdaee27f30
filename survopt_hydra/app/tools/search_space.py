"""What ``survopt-tune`` searches: the keys a trial draws (:data:`SPACE`), each family's own few settings
(:data:`FAMILY_SPACE`), the families a study chooses among, and the base config as trial 0.

Kept apart from the protocol (:mod:`.tune`) so the space reads as one table with its reasons."""
from __future__ import annotations

from typing import Any, Callable

from ..compose import override_key


WIDTHS = (16, 32, 64, 128, 256)


def _hidden(trial: Any) -> str:
    width = trial.suggest_categorical("width", list(WIDTHS))
    depth = trial.suggest_int("depth", 1, 3)
    return "[" + ",".join([str(width)] * depth) + "]"


# key -> how a trial draws its value (a string, as on the command line). Why each is here:
# LR and weight decay matter most for an MLP under AdamW (LR from 1e-3: in 359 trials of two
# bench_survival runs on the four DeepSurv cohorts, 2026-12-01, no LR below 1e-3 came within 0.005
# of a cohort's best validation figure, and those trials took 1.5-2.6x as long); width x depth
# with dropout lets large cohorts use a larger, more regularised model; the batch size sets the
# Cox risk sets (a batch is a risk set) and the update noise; Efron ties are the better partial
# likelihood on tied times.
SPACE: dict[str, Callable[[Any], str]] = {
    "optimizer.lr": lambda t: f"{t.suggest_float('lr', 1e-3, 1e-1, log=True):.6g}",
    "optimizer.weight_decay": lambda t: f"{t.suggest_float('weight_decay', 1e-5, 0.3, log=True):.6g}",
    "model.hidden": _hidden,
    "model.dropout": lambda t: f"{t.suggest_float('dropout', 0.0, 0.6):.4g}",
    "trainer.batch_size": lambda t: str(t.suggest_categorical("batch_size", [64, 128, 256, 512])),
    "trainer.ties": lambda t: t.suggest_categorical("ties", ["breslow", "efron"]),
}

#: Each family's own hyper-parameters, drawn when the preset searches that family (``--families``, or a
#: base config with ``family=<name>``). Why these: the grid's resolution trades detail against events per
#: interval (pycox's examples use 10-100 cuts); DeepHit's ranking-loss weight and scale are its two
#: settings with the most effect in Lee et al. and Kvamme & Borgan; Cox-Time's controls per case trade
#: gradient noise against time. The AFT families have none; Cox's ties method is in :data:`SPACE`.
N_CUTS = [10, 20, 40]
FAMILY_SPACE: dict[str, dict[str, Callable[[Any], str]]] = {
    "cox": {},
    "logistic_hazard": {"family.n_cuts": lambda t: str(t.suggest_categorical("n_cuts", N_CUTS))},
    "pmf": {"family.n_cuts": lambda t: str(t.suggest_categorical("n_cuts", N_CUTS))},
    "deephit": {"family.n_cuts": lambda t: str(t.suggest_categorical("n_cuts", N_CUTS)),
                "family.alpha": lambda t: f"{t.suggest_float('alpha', 0.1, 10.0, log=True):.4g}",
                "family.sigma": lambda t: f"{t.suggest_float('sigma', 0.05, 1.0, log=True):.4g}"},
    "cox_time": {"family.n_control": lambda t: str(t.suggest_categorical("n_control", [1, 2, 4]))},
    "weibull_aft": {},
    "lognormal_aft": {},
}
COX_ONLY = ("cox",)


def searched(base: list[str]) -> dict[str, Callable[[Any], str]]:
    """:data:`SPACE` without the keys the base overrides fix."""
    fixed = {override_key(o) for o in base}
    return {k: f for k, f in SPACE.items() if k not in fixed}


def family_keys(base: list[str], families: tuple[str, ...]) -> list[str]:
    """The searched keys the families add (``family`` itself when there are several), for the study's settings."""
    fixed = {override_key(o) for o in base}
    keys = ["family"] if len(families) > 1 else []
    return keys + sorted({k for f in families for k in FAMILY_SPACE[f] if k not in fixed})


def draw_overrides(trial: Any, base: list[str], space: dict[str, Callable[[Any], str]],
                   families: tuple[str, ...]) -> list[str]:
    """A trial's overrides: :data:`SPACE`'s keys (the Cox-only preset draws exactly these, as it always did),
    and with ``families`` other than cox the family first (when there are several), then its own
    :data:`FAMILY_SPACE` keys; Cox's ties method only for a Cox trial."""
    if families == COX_ONLY:
        return [f"{k}={draw(trial)}" for k, draw in space.items()]
    name = trial.suggest_categorical("family", list(families)) if len(families) > 1 else families[0]
    drawn = [f"family={name}"] if len(families) > 1 else []
    drawn += [f"{k}={draw(trial)}" for k, draw in space.items() if k != "trainer.ties" or name == "cox"]
    fixed = {override_key(o) for o in base}
    return drawn + [f"{k}={draw(trial)}" for k, draw in FAMILY_SPACE[name].items() if k not in fixed]


def search_families(cfg: Any, base: list[str], families: list[str] | None) -> tuple[str, ...]:
    """The families the preset chooses among: ``--families`` (names, or ``all``), else the base config's own.
    One-line ConfigError naming ``--families`` for a name that is no family, a base override that fixes the
    family, a family the data cannot take (competing causes: deephit only), or ``trainer.monitor=val_loss``
    across families (their losses are different quantities; their C-indexes rank alike)."""
    from survopt_hydra.app.schemas import FAMILIES
    from survopt_hydra.errors import ConfigError, did_you_mean

    own = str(cfg.family.name) if cfg.get("family") is not None else "cox"
    if not families:
        return (own,)
    names = list(FAMILIES) if families == ["all"] else families
    for name in names:
        if name not in FAMILIES:
            raise ConfigError("--families", f"unknown family {name!r}{did_you_mean(name, FAMILIES)}; allowed: all, "
                              f"{', '.join(FAMILIES)}")
    if len(set(names)) != len(names):
        raise ConfigError("--families", f"a family is named twice in {','.join(names)}")
    if len(names) > 1 and any(override_key(o) == "family" for o in base):
        raise ConfigError("--families", "the base overrides fix family=...; drop it to search the families")
    causes = int(cfg.data.get("causes", 1) or 1)
    if causes > 1 and names != ["deephit"]:
        raise ConfigError("--families", f"data.causes={causes}: competing causes need deephit, the one family with a "
                          "CIF per cause; pass --families deephit")
    if len(names) > 1 and str(cfg.trainer.monitor) == "val_loss":
        raise ConfigError("--families", "trainer.monitor=val_loss: each family's loss is another quantity; families are "
                          "compared on the validation C-index (trainer.monitor=val_cindex)")
    if len(names) == 1 and names[0] != own:
        raise ConfigError("--families", f"one family ({names[0]}) is the base config's family=...: pass "
                          f"family={names[0]} as an override instead")
    return tuple(names)


def baseline_params(cfg: Any, space: dict[str, Callable[[Any], str]], families: tuple[str, ...] = COX_ONLY,
                    space_fixed: set[str] = frozenset()) -> dict[str, Any] | None:
    """The base config's own values as TPE parameters (trial 0), or None when one is off the grid.

    Why: on small validation sets a handful of random first draws can all rank below the
    app's defaults; starting from them means the search is compared against what a user
    gets without tuning, and TPE learns from that point.
    """
    get = {"optimizer.lr": ("lr", lambda: float(cfg.optimizer.lr)),
           "optimizer.weight_decay": ("weight_decay", lambda: float(cfg.optimizer.weight_decay)),
           "model.dropout": ("dropout", lambda: float(cfg.model.dropout)),
           "trainer.batch_size": ("batch_size", lambda: int(cfg.trainer.batch_size)),
           "trainer.ties": ("ties", lambda: str(cfg.trainer.ties))}
    params: dict[str, Any] = {}
    own = str(cfg.family.name) if cfg.get("family") is not None else "cox"
    if families != COX_ONLY:
        if own not in families:
            return None
        if len(families) > 1:
            params["family"] = own
        space = {k: v for k, v in space.items() if k != "trainer.ties" or own == "cox"}
        own_params = {"family.n_cuts": ("n_cuts", lambda: int(cfg.family.n_cuts)),
                      "family.alpha": ("alpha", lambda: float(cfg.family.alpha)),
                      "family.sigma": ("sigma", lambda: float(cfg.family.sigma)),
                      "family.n_control": ("n_control", lambda: int(cfg.family.n_control))}
        for key in FAMILY_SPACE[own]:
            if key in space_fixed:
                continue
            name, value = own_params[key]
            params[name] = value()
        if params.get("n_cuts", N_CUTS[0]) not in N_CUTS or params.get("n_control", 1) not in (1, 2, 4) \
                or not 0.1 <= params.get("alpha", 1.0) <= 10.0 or not 0.05 <= params.get("sigma", 0.1) <= 1.0:
            return None
    for key in space:
        if key == "model.hidden":
            hidden = cfg.model.get("hidden")
            hidden = list(hidden) if not isinstance(hidden, (int, str)) and hidden is not None else []
            if not hidden or len(set(hidden)) != 1 or hidden[0] not in WIDTHS or not 1 <= len(hidden) <= 3:
                return None
            params.update(width=hidden[0], depth=len(hidden))
        elif key in get:
            name, value = get[key]
            try:
                params[name] = value()
            except Exception:  # the model or optimizer has no such key (e.g. SGD has no dropout search)
                return None
    return params
