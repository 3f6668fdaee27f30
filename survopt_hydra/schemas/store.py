"""Opt in from Python, for apps that keep their own options in Hydra's ConfigStore (hydra-zen, ``cs.store``).

Hydra searches an app's ``hydra.searchpath`` entries before its ConfigStore, so with the
search-path opt-in (``pkg://survopt_hydra.conf``) a library option would shadow an option the
app *stores* under the same group and name. :func:`store_options` is the other opt-in: it puts
the library's options in the ConfigStore itself, each under ``<group>/<option>`` as its
dataclass (typed: a misspelt key fails at composition), plus the presets, but never where the
ConfigStore already holds that name, and an entry the app stores later replaces the library's.
Either way the app's own option wins, unchanged. Use one opt-in per app: an app that keeps its
options as YAML files uses the search path (a ConfigStore entry of the same name as one of its
YAML files would be merged into that file as a schema - Hydra's automatic schema matching).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

from . import GROUPS



def _taken(group: str) -> set[str]:
    from hydra.core.config_store import ConfigStore

    try:
        return {name.removesuffix(".yaml") for name in ConfigStore.instance().list(group)}
    except IOError:  # no such group yet
        return set()


def store_options(groups: Iterable[str] | None = None) -> dict[str, list[str]]:
    """Store the library's options (and presets) in Hydra's ConfigStore where the app has none of that name.

    ``groups``: which of optimizer, scheduler, clipping, amp, distributed, ema, preset (default: all).
    Returns what was stored, by group. Call it before ``@hydra.main`` runs (at import, as stores are made)."""
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    cs = ConfigStore.instance()
    wanted = list(groups) if groups is not None else [*GROUPS, "preset"]
    unknown = sorted(set(wanted) - {*GROUPS, "preset"})
    if unknown:
        from ..errors import ConfigError

        raise ConfigError("groups", f"unknown group(s) {', '.join(unknown)}; allowed: {', '.join([*GROUPS, 'preset'])}")
    stored: dict[str, list[str]] = {}
    for group in wanted:
        taken = _taken(group)
        if group == "preset":
            for path in sorted(_preset_dir().glob("*.yaml")):
                if path.stem not in taken:
                    cs.store(group="preset", name=path.stem, node=OmegaConf.load(path), package="_global_")
                    stored.setdefault(group, []).append(path.stem)
            continue
        for name, schema in GROUPS[group].items():
            if name not in taken:
                cs.store(group=group, name=name, node=schema)
                stored.setdefault(group, []).append(name)
    return stored


def _preset_dir() -> Path:
    from .render import conf_dir

    return conf_dir() / "preset"
