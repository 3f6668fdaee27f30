"""The fields every optimizer schema shares, and the range checks of torch's keywords by name.

Separate from the records (:mod:`.optimizer`) so the generated schemas (:mod:`.optimizers`)
build on it without an import circle.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from .checks import betas, each, fld, ge, gt, one_of, optional, positive_f32

IMPLEMENTATIONS = ("auto", "fused", "foreach", "for_loop")
BUILDER = "survopt_hydra.optim.build_optimizer"
#: pip extra that installs the optional third-party optimizers.
EXTRA = "optimizers"


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
    if_supported: Dict[str, Any] = fld({}, doc="keyword -> value, applied only where the class takes the keyword and "
                                              "it is left at its default (presets use it to fit every optimizer)")


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
#: Keywords whose check reads a list or an optional value (applied only where the type is one).
LIST_KEYWORDS = ("betas", "etas", "step_sizes", "adjust_lr_fn", "line_search_fn")


@dataclass
class MuonRecipeConfig(OptimizerConfig):
    """Muon's recipe: the AdamW half for embeddings, the head, biases and norms."""

    aux_lr: Optional[float] = fld(None, optional(positive_f32), "AdamW's LR; default: optimizer.lr")
    aux_betas: List[float] = fld([0.9, 0.95], betas, "AdamW's betas")
    aux_weight_decay: Optional[float] = fld(None, optional(ge(0)), "AdamW's weight decay; default: weight_decay")
    aux_patterns: List[str] = fld(["*embed*", "*head*"], doc="fnmatch names AdamW gets besides non-2-D params, "
                                                               "nn.Embedding weights and the last 2-D parameter")


