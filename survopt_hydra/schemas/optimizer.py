"""Optimizer records: one :class:`OptimInfo` per option of the ``optimizer`` config group.

timm's ``OptimInfo`` idea: the torch class, the capability flags and the schema of an
option live in ONE record. The schema is generated from the torch class's own signature
(so every keyword torch accepts - ``foreach``, ``maximize``, ``capturable`` ... - passes
through, with torch's defaults) plus the shared grouping fields of
:class:`OptimizerConfig`, and range-checked by :data:`KEYWORD_CHECKS`. Every optimizer of
``torch.optim`` (as of the signature table below) gets a record; a user's or a third-party
class comes in through ``optimizer=custom optimizer.cls=<dotted.path>`` (checked against its
own signature), or as a new record here when its keywords are in the table.

The signatures are read from :mod:`.torch_signatures`, written from the installed torch by
``python -m survopt_hydra.schemas.torch_signatures`` (a test fails when it drifts), so
composing and checking a config never imports torch.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from .checks import betas, each, fld, ge, gt, one_of, optional, positive_f32

IMPLEMENTATIONS = ("auto", "fused", "foreach", "for_loop")
BUILDER = "survopt_hydra.optim.build_optimizer"


@dataclass
class OptimizerConfig:
    """Fields every optimizer shares: the LR, decay policy and parameter grouping."""

    _target_: str = BUILDER
    _partial_: bool = False
    name: str = "adamw"
    lr: float = fld(1e-3, positive_f32, "base learning rate")
    weight_decay: float = fld(0.0, ge(0), "L2 / decoupled decay for decayed groups")
    no_weight_decay_1d: bool = fld(True, doc="no decay on biases, norm weights, 1-D params and "
                                             "model.no_weight_decay() names; also splits given param-group dicts")
    lr_mult: Dict[str, float] = fld({}, doc="fnmatch pattern on parameter names -> LR multiplier")
    layer_decay: Optional[float] = fld(None, optional(lambda v: None if 0 < v <= 1 else "must be in (0, 1]"),
                                       "layer-wise LR decay (timm): lr x layer_decay^(depth from the head)")
    layers: Optional[List[str]] = fld(None, doc="fnmatch patterns, one per layer from the input; "
                                                "default: blocks found from module names")
    implementation: str = fld("auto", one_of(*IMPLEMENTATIONS), "auto: fused where supported")


def _etas(v: Any) -> str | None:
    return None if len(v) == 2 and 0 < v[0] < 1 < v[1] else "must be two values, 0 < first < 1 < second"


#: Range checks by keyword name, applied wherever a class has that keyword (torch checks the rest).
KEYWORD_CHECKS: dict[str, Any] = {
    "lr": positive_f32, "weight_decay": ge(0), "eps": gt(0), "betas": betas, "momentum": ge(0), "dampening": ge(0),
    "alpha": gt(0), "rho": lambda v: None if 0 <= v <= 1 else "must be in [0, 1]", "lr_decay": ge(0),
    "initial_accumulator_value": ge(0), "momentum_decay": ge(0), "lambd": ge(0), "t0": ge(0),
    "max_iter": ge(1), "history_size": ge(1), "etas": _etas, "step_sizes": each(gt(0)), "d": gt(0),
    "beta2_decay": lambda v: None if v <= 0 else "must be <= 0", "ns_steps": ge(1),
    "adjust_lr_fn": optional(one_of("original", "match_rms_adamw")),
    "line_search_fn": optional(one_of("strong_wolfe")),
}
_LISTS = ("betas", "etas", "step_sizes", "adjust_lr_fn", "line_search_fn")  # checks of non-scalar keywords


@dataclass
class MuonRecipeConfig(OptimizerConfig):
    """Muon's recipe: the AdamW half for embeddings, the head, biases and norms."""

    aux_lr: Optional[float] = fld(None, optional(positive_f32), "AdamW's LR; default: optimizer.lr")
    aux_betas: List[float] = fld([0.9, 0.95], betas, "AdamW's betas")
    aux_weight_decay: Optional[float] = fld(None, optional(ge(0)), "AdamW's weight decay; default: weight_decay")
    aux_patterns: List[str] = fld(["*embed*", "*head*"], doc="fnmatch names AdamW gets besides non-2-D params, "
                                                               "nn.Embedding weights and the last 2-D parameter")


def schema_for(name: str, class_name: str, defaults: dict[str, Any] | None = None,
               base: type = OptimizerConfig) -> type:
    """The schema dataclass of a torch class: its keywords (torch's defaults, or ``defaults``) + the shared fields."""
    from .torch_signatures import SIGNATURES

    shared = {f.name: f for f in dataclasses.fields(OptimizerConfig)}
    fields = [("name", str, dataclasses.field(default=name))]
    for kw, (type_name, default) in SIGNATURES[class_name].items():
        default = (defaults or {}).get(kw, default)
        tp = eval(type_name, {"List": List, "Optional": Optional, "Any": Any})  # names written by write_signatures
        doc = shared[kw].metadata.get("doc", "") if kw in shared else f"torch.optim.{class_name}'s {kw}"
        check = KEYWORD_CHECKS.get(kw) if type_name.startswith(("List", "Optional")) == (kw in _LISTS) else None
        fields.append((kw, tp, fld(default, check, doc)))
    return dataclasses.make_dataclass(f"{class_name}Config", fields, bases=(base,))


@dataclass(frozen=True)
class OptimInfo:
    """One optimizer option: its torch class, flags, and (generated) schema."""

    name: str
    cls: str  # class name in torch.optim
    defaults: Dict[str, Any] = dataclasses.field(default_factory=dict)  # where the library's differ from torch's
    closure: bool = False  # step(closure) re-evaluates the loss several times (LBFGS): needs your own loop
    recipe: Optional[str] = None  # "muon": survopt_hydra.optim.muon splits the model between Muon and AdamW
    doc: str = ""

    @property
    def keywords(self) -> tuple[str, ...]:
        from .torch_signatures import SIGNATURES

        return tuple(SIGNATURES[self.cls])

    @property
    def fused(self) -> bool:
        return "fused" in self.keywords

    @property
    def foreach(self) -> bool:
        return "foreach" in self.keywords

    @property
    def schema(self) -> type:
        if self.name not in _SCHEMAS:
            base = MuonRecipeConfig if self.recipe == "muon" else OptimizerConfig
            _SCHEMAS[self.name] = schema_for(self.name, self.cls, self.defaults, base)
        return _SCHEMAS[self.name]

    def torch_class(self) -> type:
        import torch

        cls = getattr(torch.optim, self.cls, None)
        if cls is None:  # the record table follows a newer torch than the installed one
            from ..errors import ConfigError

            raise ConfigError("optimizer.name", f"'{self.name}' needs torch.optim.{self.cls}, which torch "
                              f"{torch.__version__} does not have; upgrade torch or choose another optimizer")
        return cls


_SCHEMAS: dict[str, type] = {}
_RECORDS: tuple[OptimInfo, ...] = (
    OptimInfo("adamw", "AdamW", doc="Adam with decoupled weight decay"),
    OptimInfo("adam", "Adam"),
    OptimInfo("sgd", "SGD", {"momentum": 0.9}, doc="momentum 0.9 (torch: 0)"),
    OptimInfo("rmsprop", "RMSprop"),
    OptimInfo("nadam", "NAdam"),
    OptimInfo("radam", "RAdam"),
    OptimInfo("adagrad", "Adagrad"),
    OptimInfo("adamax", "Adamax"),
    OptimInfo("adadelta", "Adadelta"),
    OptimInfo("adafactor", "Adafactor", doc="factored second moments: light on memory for big matrices"),
    OptimInfo("asgd", "ASGD"),
    OptimInfo("rprop", "Rprop", doc="full-batch only"),
    OptimInfo("sparse_adam", "SparseAdam", doc="sparse gradients only (nn.Embedding(sparse=True))"),
    OptimInfo("lbfgs", "LBFGS", closure=True, doc="closure-driven: instantiate it for your own loop"),
    OptimInfo("muon", "Muon", recipe="muon", doc="Muon on hidden 2-D matrices, AdamW (aux_*) on the rest"),
)


def _records() -> tuple[OptimInfo, ...]:
    """The records above whose class the signature table has, plus one per other class in it."""
    from .torch_signatures import SIGNATURES

    known = {r.cls for r in _RECORDS}
    extra = tuple(OptimInfo(c.lower(), c) for c in SIGNATURES if c not in known)
    return tuple(r for r in _RECORDS if r.cls in SIGNATURES) + extra


RECORDS = _records()
OPTIM_INFO: dict[str, OptimInfo] = {r.name: r for r in RECORDS}


@dataclass
class CustomConfig(OptimizerConfig):
    """``optimizer=custom optimizer.cls=<dotted.path.Class>``: any ``torch.optim.Optimizer`` subclass.

    ``kwargs`` go to the class (``+optimizer.kwargs.<k>=<v>``), checked against its signature;
    the param-group policy (decay split, lr_mult, layer_decay) applies as for named options.
    """

    name: str = "custom"
    cls: str = fld("???", lambda v: "is required: optimizer.cls=<dotted.path.Class>" if v == "???" else None,
                   "dotted path of a torch.optim.Optimizer subclass")
    kwargs: Dict[str, Any] = fld({}, doc="keyword arguments of the class")


class _Schemas(dict):
    """name -> schema, generated on first use (a signature read per option, not at import)."""

    def __missing__(self, name: str) -> type:
        if name == "custom":
            return CustomConfig
        return OPTIM_INFO[name].schema

    def __iter__(self):
        return iter([*OPTIM_INFO, "custom"])

    def __contains__(self, name: object) -> bool:
        return name in OPTIM_INFO or name == "custom"

    def __len__(self) -> int:
        return len(OPTIM_INFO) + 1

    def keys(self):  # type: ignore[override]
        return list(self)

    def items(self):  # type: ignore[override]
        return [(n, self[n]) for n in self]

    def values(self):  # type: ignore[override]
        return [self[n] for n in self]


#: Option name -> schema dataclass (``custom`` included).
OPTIMIZERS: dict[str, type] = _Schemas()
