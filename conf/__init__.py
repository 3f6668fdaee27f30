"""Hydra config groups of survopt_hydra; shipped in the wheel as ``survopt_hydra.conf``.

Importing this package registers the structured schemas the YAML files extend, so an
app that only adds ``pkg://survopt_hydra.conf`` to ``hydra.searchpath`` (no plugin
discovery, e.g. an editable install) still composes.
"""
from survopt_hydra.config import register_configs

register_configs()
