"""Optimizers, param groups and LR schedules: a config's values -> plain ``torch.optim`` objects.

``build_optimizer`` and ``build_scheduler`` are the ``_target_`` of every ``optimizer`` and
``scheduler`` option (``survopt_hydra.optim.build_optimizer``), so ``instantiate`` returns a
``torch.optim.AdamW`` or a torch ``LRScheduler``, never a wrapper.
"""
from .optimizer import build_optimizer
from .param_groups import build_param_groups
from .scheduler import build_scheduler
from .stepping import Stepping

__all__ = ["Stepping", "build_optimizer", "build_param_groups", "build_scheduler"]
