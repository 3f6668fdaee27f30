"""The training step and what acts inside it: gradient clipping (AGC too), mixed precision,
weight averaging and the optimizer/gradient monitors, driven in the right order by
:class:`StepEngine`. ``GradientClipper``, ``AmpSettings`` and ``WeightAverager`` are the
``_target_`` of the ``clipping``, ``amp`` and ``ema`` options.
"""
from .amp import AmpSettings
from .clipping import GradientClipper
from .ema import WeightAverager
from .monitors import GradientMonitor, OptimizerMonitor
from .step_engine import StepEngine

__all__ = ["AmpSettings", "GradientClipper", "GradientMonitor", "OptimizerMonitor", "StepEngine", "WeightAverager"]
