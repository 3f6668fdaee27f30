"""Optimizer records: one :class:`OptimInfo` per option of the ``optimizer`` config group.

timm's ``OptimInfo`` idea: the class, the capability flags and the schema of an option live
in ONE record. Every optimizer of ``torch.optim`` gets a record (named after the class where
this table has none), plus optional third-party ones (Lion, LAMB from ``pytorch-optimizer``,
schedule-free AdamW from ``schedulefree``) that build when their package is installed and
are refused in one line naming the package otherwise. A user's own class comes in through
``optimizer=custom optimizer.cls=<dotted.path>``.

Each option's schema is a real dataclass in :mod:`.optimizers` (``AdamWConfig`` ...), written
from the class's own signature by ``python -m survopt_hydra.schemas.signatures``: every keyword
the class accepts passes through with its defaults, plus the shared grouping fields of
:class:`OptimizerConfig`, range-checked by :data:`KEYWORD_CHECKS`. Composing and checking a
config never imports torch.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from .checks import fld

from .optimizer_fields import (  # noqa: F401 (the shared fields and checks, re-exported)
    BUILDER, EXTRA, IMPLEMENTATIONS, KEYWORD_CHECKS, LIST_KEYWORDS, MuonRecipeConfig, OptimizerConfig,
)


@dataclass(frozen=True)
class OptimInfo:
    """One optimizer option: its class, flags, and schema (:mod:`.optimizers`)."""

    name: str
    cls: str  # class name in ``module``
    defaults: Dict[str, Any] = dataclasses.field(default_factory=dict)  # where the library's differ from the class's
    closure: bool = False  # step(closure) re-evaluates the loss several times (LBFGS): needs your own loop
    recipe: Optional[str] = None  # "muon": survopt_hydra.optim.muon splits the model between Muon and AdamW
    doc: str = ""
    module: str = "torch.optim"
    package: Optional[str] = None  # the pip package of a third-party class (installed by the EXTRA extra)
    train_eval: bool = False  # schedule-free: optimizer.train() / optimizer.eval() follow the model's mode

    @property
    def extra(self) -> str | None:
        return EXTRA if self.package else None

    @property
    def config_name(self) -> str:
        return f"{self.cls}Config"

    @property
    def schema(self) -> type:
        from . import optimizers

        return getattr(optimizers, self.config_name)

    @property
    def keywords(self) -> tuple[str, ...]:
        return self.schema.keywords

    @property
    def fused(self) -> bool:
        return "fused" in self.keywords

    @property
    def foreach(self) -> bool:
        return "foreach" in self.keywords

    def package_version(self) -> str:
        from importlib.metadata import version

        return version(self.package) if self.package else ""

    def torch_class(self) -> type:
        """The class; a ConfigError naming the pip command when its package or torch lacks it."""
        import importlib

        from ..errors import ConfigError

        try:
            module = importlib.import_module(self.module)
        except ImportError:
            raise ConfigError("optimizer.name", f"'{self.name}' needs the {self.package} package: "
                              f"pip install \"survopt-hydra[{EXTRA}]\"") from None
        cls = getattr(module, self.cls, None)
        if cls is None:  # the record table follows a newer torch than the installed one
            import torch

            raise ConfigError("optimizer.name", f"'{self.name}' needs {self.module}.{self.cls}, which torch "
                              f"{torch.__version__} does not have; upgrade torch or choose another optimizer")
        return cls


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
    OptimInfo("lion", "Lion", module="pytorch_optimizer", package="pytorch-optimizer",
              doc="sign-of-momentum updates (Chen et al. 2023); use a 3-10x smaller LR than AdamW"),
    OptimInfo("lamb", "Lamb", module="pytorch_optimizer", package="pytorch-optimizer",
              doc="layer-wise trust ratio for large batches (You et al. 2020)"),
    OptimInfo("adamw_schedulefree", "AdamWScheduleFree", module="schedulefree", package="schedulefree",
              train_eval=True, doc="no LR schedule needed (Defazio et al. 2024); use scheduler=none or a warmup"),
)


def records_for(torch_classes: tuple[str, ...] | list[str]) -> tuple[OptimInfo, ...]:
    """The records above (torch ones only where ``torch_classes`` has them), plus one per other class there."""
    known = {r.cls for r in _RECORDS if r.module == "torch.optim"}
    extra = tuple(OptimInfo(c.lower(), c) for c in torch_classes if c not in known)
    return tuple(r for r in _RECORDS if r.module != "torch.optim" or r.cls in torch_classes) + extra


def _records() -> tuple[OptimInfo, ...]:
    from .optimizers import TORCH_CLASSES

    return records_for(TORCH_CLASSES)


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


#: Option name -> schema dataclass (``custom`` included).
OPTIMIZERS: dict[str, type] = {**{name: info.schema for name, info in OPTIM_INFO.items()}, "custom": CustomConfig}
