"""The schema of every library config option: one dataclass per option, with defaults and checks.

These are real, importable and picklable classes (``from survopt_hydra.schemas.optimizers
import AdamWConfig``; ``survopt_hydra.schemas.scheduler.WarmupCosineConfig``;
``survopt_hydra.schemas.clipping.NormClippingConfig`` ...) that hydra-zen or a ConfigStore
entry of your own can build on. Hydra apps that opt in read them as YAML files written from
these classes (``conf/``, :mod:`.render`); nothing here touches Hydra's global ConfigStore.
No torch import.
"""
from __future__ import annotations

from typing import Mapping

from .amp import AMP
from .clipping import CLIPPING
from .distributed import DISTRIBUTED
from .ema import EMA
from .optimizer import OPTIMIZERS
from .scheduler import SCHEDULERS

GROUPS: dict[str, Mapping[str, type]] = {
    "optimizer": OPTIMIZERS,
    "scheduler": SCHEDULERS,
    "clipping": CLIPPING,
    "amp": AMP,
    "distributed": DISTRIBUTED,
    "ema": EMA,
}
