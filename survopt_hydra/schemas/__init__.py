"""Structured-config schemas for every library config group, and their ConfigStore registration.

Each option's schema is stored in Hydra's ConfigStore directly as ``<group>/<option>``
(``optimizer/adamw``): the option IS its schema (defaults, types and checks live in the
dataclass, so they apply to command-line overrides too) and no YAML stub repeats its name.
Only these groups reach other apps' search paths; ``conf/`` (``pkg://survopt_hydra.conf``)
adds the presets.
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

_stored: set[str] = set()


def store_groups(groups: Mapping[str, Mapping[str, type]]) -> None:
    """Store each option's schema as ``<group>/<option>`` in Hydra's ConfigStore (idempotent)."""
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    for group, options in groups.items():
        if group in _stored:
            continue
        for name, schema in options.items():
            cs.store(group=group, name=name, node=schema)
        _stored.add(group)


def register_configs() -> None:
    """Store the library's options (optimizer, scheduler, clipping, amp, distributed, ema)."""
    store_groups(GROUPS)
