"""One dataclass per option of the ``optimizer`` config group (``AdamWConfig`` ...).

Written by ``python -m survopt_hydra.schemas.signatures`` from pytorch-optimizer 4.1.0, schedulefree 1.4.1, torch 2.13.0 and the records in :mod:`.optimizer`;
do not edit: ``tests/test_optimizer.py`` fails when this file no longer matches the installed classes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, List, Optional, Tuple

from .checks import fld
from .optimizer_fields import KEYWORD_CHECKS as CHECK
from .optimizer_fields import MuonRecipeConfig, OptimizerConfig

TORCH_CLASSES: Tuple[str, ...] = ('ASGD', 'Adadelta', 'Adafactor', 'Adagrad', 'Adam', 'AdamW', 'Adamax', 'LBFGS', 'Muon', 'NAdam', 'RAdam', 'RMSprop', 'Rprop', 'SGD', 'SparseAdam')


@dataclass
class AdamWConfig(OptimizerConfig):
    """``optimizer=adamw``: ``torch.optim.AdamW``: Adam with decoupled weight decay."""

    keywords: ClassVar[Tuple[str, ...]] = ('lr', 'betas', 'eps', 'weight_decay', 'amsgrad', 'maximize', 'foreach', 'capturable', 'differentiable', 'fused')
    name: str = "adamw"
    lr: float = fld(0.001, CHECK["lr"], 'base learning rate')
    betas: List[float] = fld([0.9, 0.999], CHECK["betas"], "AdamW's betas")
    eps: float = fld(1e-08, CHECK["eps"], "AdamW's eps")
    weight_decay: float = fld(0.01, CHECK["weight_decay"], 'L2 / decoupled decay for decayed groups')
    amsgrad: bool = fld(False, None, "AdamW's amsgrad")
    maximize: bool = fld(False, None, "AdamW's maximize")
    foreach: Optional[bool] = fld(None, None, "AdamW's foreach")
    capturable: bool = fld(False, None, "AdamW's capturable")
    differentiable: bool = fld(False, None, "AdamW's differentiable")
    fused: Optional[bool] = fld(None, None, "AdamW's fused")


@dataclass
class AdamConfig(OptimizerConfig):
    """``optimizer=adam``: ``torch.optim.Adam``."""

    keywords: ClassVar[Tuple[str, ...]] = ('lr', 'betas', 'eps', 'weight_decay', 'amsgrad', 'foreach', 'maximize', 'capturable', 'differentiable', 'fused', 'decoupled_weight_decay')
    name: str = "adam"
    lr: float = fld(0.001, CHECK["lr"], 'base learning rate')
    betas: List[float] = fld([0.9, 0.999], CHECK["betas"], "Adam's betas")
    eps: float = fld(1e-08, CHECK["eps"], "Adam's eps")
    weight_decay: float = fld(0.0, CHECK["weight_decay"], 'L2 / decoupled decay for decayed groups')
    amsgrad: bool = fld(False, None, "Adam's amsgrad")
    foreach: Optional[bool] = fld(None, None, "Adam's foreach")
    maximize: bool = fld(False, None, "Adam's maximize")
    capturable: bool = fld(False, None, "Adam's capturable")
    differentiable: bool = fld(False, None, "Adam's differentiable")
    fused: Optional[bool] = fld(None, None, "Adam's fused")
    decoupled_weight_decay: bool = fld(False, None, "Adam's decoupled_weight_decay")


@dataclass
class SGDConfig(OptimizerConfig):
    """``optimizer=sgd``: ``torch.optim.SGD``: momentum 0.9 (torch: 0)."""

    keywords: ClassVar[Tuple[str, ...]] = ('lr', 'momentum', 'dampening', 'weight_decay', 'nesterov', 'maximize', 'foreach', 'differentiable', 'fused')
    name: str = "sgd"
    lr: float = fld(0.001, CHECK["lr"], 'base learning rate')
    momentum: float = fld(0.9, CHECK["momentum"], "SGD's momentum")
    dampening: float = fld(0.0, CHECK["dampening"], "SGD's dampening")
    weight_decay: float = fld(0.0, CHECK["weight_decay"], 'L2 / decoupled decay for decayed groups')
    nesterov: bool = fld(False, None, "SGD's nesterov")
    maximize: bool = fld(False, None, "SGD's maximize")
    foreach: Optional[bool] = fld(None, None, "SGD's foreach")
    differentiable: bool = fld(False, None, "SGD's differentiable")
    fused: Optional[bool] = fld(None, None, "SGD's fused")


@dataclass
class RMSpropConfig(OptimizerConfig):
    """``optimizer=rmsprop``: ``torch.optim.RMSprop``."""

    keywords: ClassVar[Tuple[str, ...]] = ('lr', 'alpha', 'eps', 'weight_decay', 'momentum', 'centered', 'capturable', 'foreach', 'maximize', 'differentiable')
    name: str = "rmsprop"
    lr: float = fld(0.01, CHECK["lr"], 'base learning rate')
    alpha: float = fld(0.99, CHECK["alpha"], "RMSprop's alpha")
    eps: float = fld(1e-08, CHECK["eps"], "RMSprop's eps")
    weight_decay: float = fld(0.0, CHECK["weight_decay"], 'L2 / decoupled decay for decayed groups')
    momentum: float = fld(0.0, CHECK["momentum"], "RMSprop's momentum")
    centered: bool = fld(False, None, "RMSprop's centered")
    capturable: bool = fld(False, None, "RMSprop's capturable")
    foreach: Optional[bool] = fld(None, None, "RMSprop's foreach")
    maximize: bool = fld(False, None, "RMSprop's maximize")
    differentiable: bool = fld(False, None, "RMSprop's differentiable")


@dataclass
class NAdamConfig(OptimizerConfig):
    """``optimizer=nadam``: ``torch.optim.NAdam``."""

    keywords: ClassVar[Tuple[str, ...]] = ('lr', 'betas', 'eps', 'weight_decay', 'momentum_decay', 'decoupled_weight_decay', 'foreach', 'maximize', 'capturable', 'differentiable')
    name: str = "nadam"
    lr: float = fld(0.002, CHECK["lr"], 'base learning rate')
    betas: List[float] = fld([0.9, 0.999], CHECK["betas"], "NAdam's betas")
    eps: float = fld(1e-08, CHECK["eps"], "NAdam's eps")
    weight_decay: float = fld(0.0, CHECK["weight_decay"], 'L2 / decoupled decay for decayed groups')
    momentum_decay: float = fld(0.004, CHECK["momentum_decay"], "NAdam's momentum_decay")
    decoupled_weight_decay: bool = fld(False, None, "NAdam's decoupled_weight_decay")
    foreach: Optional[bool] = fld(None, None, "NAdam's foreach")
    maximize: bool = fld(False, None, "NAdam's maximize")
    capturable: bool = fld(False, None, "NAdam's capturable")
    differentiable: bool = fld(False, None, "NAdam's differentiable")


@dataclass
class RAdamConfig(OptimizerConfig):
    """``optimizer=radam``: ``torch.optim.RAdam``."""

    keywords: ClassVar[Tuple[str, ...]] = ('lr', 'betas', 'eps', 'weight_decay', 'decoupled_weight_decay', 'foreach', 'maximize', 'capturable', 'differentiable')
    name: str = "radam"
    lr: float = fld(0.001, CHECK["lr"], 'base learning rate')
    betas: List[float] = fld([0.9, 0.999], CHECK["betas"], "RAdam's betas")
    eps: float = fld(1e-08, CHECK["eps"], "RAdam's eps")
    weight_decay: float = fld(0.0, CHECK["weight_decay"], 'L2 / decoupled decay for decayed groups')
    decoupled_weight_decay: bool = fld(False, None, "RAdam's decoupled_weight_decay")
    foreach: Optional[bool] = fld(None, None, "RAdam's foreach")
    maximize: bool = fld(False, None, "RAdam's maximize")
    capturable: bool = fld(False, None, "RAdam's capturable")
    differentiable: bool = fld(False, None, "RAdam's differentiable")


@dataclass
class AdagradConfig(OptimizerConfig):
    """``optimizer=adagrad``: ``torch.optim.Adagrad``."""

    keywords: ClassVar[Tuple[str, ...]] = ('lr', 'lr_decay', 'weight_decay', 'initial_accumulator_value', 'eps', 'foreach', 'maximize', 'differentiable', 'fused')
    name: str = "adagrad"
    lr: float = fld(0.01, CHECK["lr"], 'base learning rate')
    lr_decay: float = fld(0.0, CHECK["lr_decay"], "Adagrad's lr_decay")
    weight_decay: float = fld(0.0, CHECK["weight_decay"], 'L2 / decoupled decay for decayed groups')
    initial_accumulator_value: float = fld(0.0, CHECK["initial_accumulator_value"], "Adagrad's initial_accumulator_value")
    eps: float = fld(1e-10, CHECK["eps"], "Adagrad's eps")
    foreach: Optional[bool] = fld(None, None, "Adagrad's foreach")
    maximize: bool = fld(False, None, "Adagrad's maximize")
    differentiable: bool = fld(False, None, "Adagrad's differentiable")
    fused: Optional[bool] = fld(None, None, "Adagrad's fused")


@dataclass
class AdamaxConfig(OptimizerConfig):
    """``optimizer=adamax``: ``torch.optim.Adamax``."""

    keywords: ClassVar[Tuple[str, ...]] = ('lr', 'betas', 'eps', 'weight_decay', 'foreach', 'maximize', 'differentiable', 'capturable')
    name: str = "adamax"
    lr: float = fld(0.002, CHECK["lr"], 'base learning rate')
    betas: List[float] = fld([0.9, 0.999], CHECK["betas"], "Adamax's betas")
    eps: float = fld(1e-08, CHECK["eps"], "Adamax's eps")
    weight_decay: float = fld(0.0, CHECK["weight_decay"], 'L2 / decoupled decay for decayed groups')
    foreach: Optional[bool] = fld(None, None, "Adamax's foreach")
    maximize: bool = fld(False, None, "Adamax's maximize")
    differentiable: bool = fld(False, None, "Adamax's differentiable")
    capturable: bool = fld(False, None, "Adamax's capturable")


@dataclass
class AdadeltaConfig(OptimizerConfig):
    """``optimizer=adadelta``: ``torch.optim.Adadelta``."""

    keywords: ClassVar[Tuple[str, ...]] = ('lr', 'rho', 'eps', 'weight_decay', 'foreach', 'capturable', 'maximize', 'differentiable')
    name: str = "adadelta"
    lr: float = fld(1.0, CHECK["lr"], 'base learning rate')
    rho: float = fld(0.9, CHECK["rho"], "Adadelta's rho")
    eps: float = fld(1e-06, CHECK["eps"], "Adadelta's eps")
    weight_decay: float = fld(0.0, CHECK["weight_decay"], 'L2 / decoupled decay for decayed groups')
    foreach: Optional[bool] = fld(None, None, "Adadelta's foreach")
    capturable: bool = fld(False, None, "Adadelta's capturable")
    maximize: bool = fld(False, None, "Adadelta's maximize")
    differentiable: bool = fld(False, None, "Adadelta's differentiable")


@dataclass
class AdafactorConfig(OptimizerConfig):
    """``optimizer=adafactor``: ``torch.optim.Adafactor``: factored second moments: light on memory for big matrices."""

    keywords: ClassVar[Tuple[str, ...]] = ('lr', 'beta2_decay', 'eps', 'd', 'weight_decay', 'foreach', 'maximize')
    name: str = "adafactor"
    lr: float = fld(0.01, CHECK["lr"], 'base learning rate')
    beta2_decay: float = fld(-0.8, CHECK["beta2_decay"], "Adafactor's beta2_decay")
    eps: List[Any] = fld([None, 0.001], None, "Adafactor's eps")
    d: float = fld(1.0, CHECK["d"], "Adafactor's d")
    weight_decay: float = fld(0.0, CHECK["weight_decay"], 'L2 / decoupled decay for decayed groups')
    foreach: Optional[bool] = fld(None, None, "Adafactor's foreach")
    maximize: bool = fld(False, None, "Adafactor's maximize")


@dataclass
class ASGDConfig(OptimizerConfig):
    """``optimizer=asgd``: ``torch.optim.ASGD``."""

    keywords: ClassVar[Tuple[str, ...]] = ('lr', 'lambd', 'alpha', 't0', 'weight_decay', 'foreach', 'maximize', 'differentiable', 'capturable')
    name: str = "asgd"
    lr: float = fld(0.01, CHECK["lr"], 'base learning rate')
    lambd: float = fld(0.0001, CHECK["lambd"], "ASGD's lambd")
    alpha: float = fld(0.75, CHECK["alpha"], "ASGD's alpha")
    t0: float = fld(1000000.0, CHECK["t0"], "ASGD's t0")
    weight_decay: float = fld(0.0, CHECK["weight_decay"], 'L2 / decoupled decay for decayed groups')
    foreach: Optional[bool] = fld(None, None, "ASGD's foreach")
    maximize: bool = fld(False, None, "ASGD's maximize")
    differentiable: bool = fld(False, None, "ASGD's differentiable")
    capturable: bool = fld(False, None, "ASGD's capturable")


@dataclass
class RpropConfig(OptimizerConfig):
    """``optimizer=rprop``: ``torch.optim.Rprop``: full-batch only."""

    keywords: ClassVar[Tuple[str, ...]] = ('lr', 'etas', 'step_sizes', 'capturable', 'foreach', 'maximize', 'differentiable')
    name: str = "rprop"
    lr: float = fld(0.01, CHECK["lr"], 'base learning rate')
    etas: List[float] = fld([0.5, 1.2], CHECK["etas"], "Rprop's etas")
    step_sizes: List[float] = fld([1e-06, 50], CHECK["step_sizes"], "Rprop's step_sizes")
    capturable: bool = fld(False, None, "Rprop's capturable")
    foreach: Optional[bool] = fld(None, None, "Rprop's foreach")
    maximize: bool = fld(False, None, "Rprop's maximize")
    differentiable: bool = fld(False, None, "Rprop's differentiable")


@dataclass
class SparseAdamConfig(OptimizerConfig):
    """``optimizer=sparse_adam``: ``torch.optim.SparseAdam``: sparse gradients only (nn.Embedding(sparse=True))."""

    keywords: ClassVar[Tuple[str, ...]] = ('lr', 'betas', 'eps', 'maximize')
    name: str = "sparse_adam"
    lr: float = fld(0.001, CHECK["lr"], 'base learning rate')
    betas: List[float] = fld([0.9, 0.999], CHECK["betas"], "SparseAdam's betas")
    eps: float = fld(1e-08, CHECK["eps"], "SparseAdam's eps")
    maximize: bool = fld(False, None, "SparseAdam's maximize")


@dataclass
class LBFGSConfig(OptimizerConfig):
    """``optimizer=lbfgs``: ``torch.optim.LBFGS``: closure-driven: instantiate it for your own loop."""

    keywords: ClassVar[Tuple[str, ...]] = ('lr', 'max_iter', 'max_eval', 'tolerance_grad', 'tolerance_change', 'history_size', 'line_search_fn')
    name: str = "lbfgs"
    lr: float = fld(1.0, CHECK["lr"], 'base learning rate')
    max_iter: int = fld(20, CHECK["max_iter"], "LBFGS's max_iter")
    max_eval: Optional[int] = fld(None, None, "LBFGS's max_eval")
    tolerance_grad: float = fld(1e-07, None, "LBFGS's tolerance_grad")
    tolerance_change: float = fld(1e-09, None, "LBFGS's tolerance_change")
    history_size: int = fld(100, CHECK["history_size"], "LBFGS's history_size")
    line_search_fn: Optional[str] = fld(None, CHECK["line_search_fn"], "LBFGS's line_search_fn")


@dataclass
class MuonConfig(MuonRecipeConfig):
    """``optimizer=muon``: ``torch.optim.Muon``: Muon on hidden 2-D matrices, AdamW (aux_*) on the rest."""

    keywords: ClassVar[Tuple[str, ...]] = ('lr', 'weight_decay', 'momentum', 'nesterov', 'ns_coefficients', 'eps', 'ns_steps', 'adjust_lr_fn')
    name: str = "muon"
    lr: float = fld(0.001, CHECK["lr"], 'base learning rate')
    weight_decay: float = fld(0.1, CHECK["weight_decay"], 'L2 / decoupled decay for decayed groups')
    momentum: float = fld(0.95, CHECK["momentum"], "Muon's momentum")
    nesterov: bool = fld(True, None, "Muon's nesterov")
    ns_coefficients: List[float] = fld([3.4445, -4.775, 2.0315], None, "Muon's ns_coefficients")
    eps: float = fld(1e-07, CHECK["eps"], "Muon's eps")
    ns_steps: int = fld(5, CHECK["ns_steps"], "Muon's ns_steps")
    adjust_lr_fn: Optional[str] = fld(None, CHECK["adjust_lr_fn"], "Muon's adjust_lr_fn")


@dataclass
class LionConfig(OptimizerConfig):
    """``optimizer=lion``: ``pytorch_optimizer.Lion``: sign-of-momentum updates (Chen et al. 2023); use a 3-10x smaller LR than AdamW."""

    keywords: ClassVar[Tuple[str, ...]] = ('lr', 'betas', 'weight_decay', 'weight_decouple', 'fixed_decay', 'foreach', 'maximize')
    name: str = "lion"
    lr: float = fld(0.0001, CHECK["lr"], 'base learning rate')
    betas: List[float] = fld([0.9, 0.99], CHECK["betas"], "Lion's betas")
    weight_decay: float = fld(0.0, CHECK["weight_decay"], 'L2 / decoupled decay for decayed groups')
    weight_decouple: bool = fld(True, None, "Lion's weight_decouple")
    fixed_decay: bool = fld(False, None, "Lion's fixed_decay")
    foreach: Optional[bool] = fld(None, None, "Lion's foreach")
    maximize: bool = fld(False, None, "Lion's maximize")


@dataclass
class LambConfig(OptimizerConfig):
    """``optimizer=lamb``: ``pytorch_optimizer.Lamb``: layer-wise trust ratio for large batches (You et al. 2020)."""

    keywords: ClassVar[Tuple[str, ...]] = ('lr', 'betas', 'weight_decay', 'weight_decouple', 'fixed_decay', 'rectify', 'degenerated_to_sgd', 'n_sma_threshold', 'grad_averaging', 'max_grad_norm', 'adam', 'pre_norm', 'eps', 'foreach', 'maximize')
    name: str = "lamb"
    lr: float = fld(0.001, CHECK["lr"], 'base learning rate')
    betas: List[float] = fld([0.9, 0.999], CHECK["betas"], "Lamb's betas")
    weight_decay: float = fld(0.0, CHECK["weight_decay"], 'L2 / decoupled decay for decayed groups')
    weight_decouple: bool = fld(True, None, "Lamb's weight_decouple")
    fixed_decay: bool = fld(False, None, "Lamb's fixed_decay")
    rectify: bool = fld(False, None, "Lamb's rectify")
    degenerated_to_sgd: bool = fld(False, None, "Lamb's degenerated_to_sgd")
    n_sma_threshold: int = fld(5, None, "Lamb's n_sma_threshold")
    grad_averaging: bool = fld(True, None, "Lamb's grad_averaging")
    max_grad_norm: float = fld(1.0, None, "Lamb's max_grad_norm")
    adam: bool = fld(False, None, "Lamb's adam")
    pre_norm: bool = fld(False, None, "Lamb's pre_norm")
    eps: float = fld(1e-06, CHECK["eps"], "Lamb's eps")
    foreach: Optional[bool] = fld(None, None, "Lamb's foreach")
    maximize: bool = fld(False, None, "Lamb's maximize")


@dataclass
class AdamWScheduleFreeConfig(OptimizerConfig):
    """``optimizer=adamw_schedulefree``: ``schedulefree.AdamWScheduleFree``: no LR schedule needed (Defazio et al. 2024); use scheduler=none or a warmup."""

    keywords: ClassVar[Tuple[str, ...]] = ('lr', 'betas', 'eps', 'weight_decay', 'warmup_steps', 'r', 'weight_lr_power', 'foreach')
    name: str = "adamw_schedulefree"
    lr: float = fld(0.0025, CHECK["lr"], 'base learning rate')
    betas: List[float] = fld([0.9, 0.999], CHECK["betas"], "AdamWScheduleFree's betas")
    eps: float = fld(1e-08, CHECK["eps"], "AdamWScheduleFree's eps")
    weight_decay: float = fld(0.0, CHECK["weight_decay"], 'L2 / decoupled decay for decayed groups')
    warmup_steps: int = fld(0, None, "AdamWScheduleFree's warmup_steps")
    r: float = fld(0.0, None, "AdamWScheduleFree's r")
    weight_lr_power: float = fld(2.0, None, "AdamWScheduleFree's weight_lr_power")
    foreach: Optional[bool] = fld(True, None, "AdamWScheduleFree's foreach")
