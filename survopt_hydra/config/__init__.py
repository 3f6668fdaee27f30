"""Structured-config schemas for every config group, and their ConfigStore registration.

``conf/<group>/<option>.yaml`` selects the schema ``survopt/<group>/<option>`` from the
ConfigStore (defaults live in the dataclass; YAML only overrides), so the schema types
and checks apply to command-line overrides too.
"""
from __future__ import annotations

from .amp import AMP
from .clipping import CLIPPING
from .distributed import DISTRIBUTED
from .ema import EMA
from .optimizer import OPTIMIZERS
from .scheduler import SCHEDULERS

GROUPS: dict[str, dict[str, type]] = {
    "optimizer": OPTIMIZERS,
    "scheduler": SCHEDULERS,
    "clipping": CLIPPING,
    "amp": AMP,
    "distributed": DISTRIBUTED,
    "ema": EMA,
}
SCHEMA_ROOT = "survopt"

_stored: set[str] = set()


def store_groups(groups: dict[str, dict[str, type]]) -> None:
    """Store each schema as ``survopt/<group>/<option>`` in Hydra's ConfigStore (idempotent)."""
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    for group, options in groups.items():
        if group in _stored:
            continue
        for name, schema in options.items():
            cs.store(group=f"{SCHEMA_ROOT}/{group}", name=name, node=schema)
        _stored.add(group)


def register_configs() -> None:
    """Store the library's schemas (optimizer, scheduler, clipping, amp, distributed, ema)."""
    store_groups(GROUPS)
