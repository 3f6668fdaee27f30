"""The library's presets (``preset/``), shipped in the wheel as ``survopt_hydra.conf``.

The option groups themselves (optimizer, scheduler, clipping, amp, distributed, ema) are
stored in Hydra's ConfigStore by :func:`survopt_hydra.schemas.register_configs`; importing
this package does that, so an app that only adds ``pkg://survopt_hydra.conf`` to
``hydra.searchpath`` (no plugin discovery) still composes.
"""
from survopt_hydra.schemas import register_configs

register_configs()
