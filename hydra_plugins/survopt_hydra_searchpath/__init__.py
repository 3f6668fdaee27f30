"""Hydra search-path plugin: makes survopt_hydra's config groups visible to any Hydra app.

Hydra imports every module under the ``hydra_plugins`` namespace at start-up, so an
app that installs survopt-hydra can say ``- optimizer: adamw`` in its defaults list.
It adds the library's groups only (optimizer, scheduler, clipping, amp, distributed,
ema in the ConfigStore; preset from ``pkg://survopt_hydra.conf``), never the survival
app's ``data``/``model``/``trainer`` or ``train.yaml``.
"""
from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin

from survopt_hydra.schemas import register_configs


class SurvoptSearchPathPlugin(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        register_configs()
        search_path.append(provider="survopt-hydra", path="pkg://survopt_hydra.conf")
