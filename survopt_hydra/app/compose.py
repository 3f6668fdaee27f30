"""The app's config composed outside a Hydra run: for tools and tests.

``compose_train`` sits above both the schemas (:mod:`.schemas`) and the pre-flight's error
wording (:mod:`.hydra_errors`), so neither has to import the other.
"""
from __future__ import annotations

from typing import Any



def compose_train(overrides: list[str] | tuple[str, ...] = (), return_hydra_config: bool = False) -> Any:
    """``conf/train.yaml`` composed with command-line style overrides, as ``survopt-train`` sees it.

    For tools that must use exactly the app's config (baseline, schedule plot, LR finder,
    default selection) without starting a Hydra run: no run dir, no logging set-up. A bad
    override is a one-line :class:`ConfigError`, worded as the app's pre-flight words it.
    """
    from hydra import compose, initialize_config_module
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from .hydra_errors import explain

    with initialize_config_module("survopt_hydra.app.train_conf", version_base=None):
        try:
            return compose("train", overrides=list(overrides), return_hydra_config=return_hydra_config)
        except (HydraException, OmegaConfBaseException) as exc:  # the app's one-line wording
            raise explain(exc) from None


def override_key(override: str) -> str:
    """The key a command-line override sets: ``+a.b=1``, ``~a.b`` and ``a.b=1`` all set ``a.b``."""
    return override.lstrip("+~").split("=", 1)[0]
