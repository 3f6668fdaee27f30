"""The survival training app: the reference Hydra app built on survopt_hydra's groups.

``from survopt_hydra.app import DeepCoxRegressor`` is its Python API, a scikit-learn estimator
(:mod:`.estimator`); it is imported on first use, since it needs scikit-learn (the ``sklearn`` extra).
"""
from typing import Any


def __getattr__(name: str) -> Any:
    if name == "DeepCoxRegressor":
        try:
            from .estimator import DeepCoxRegressor
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.split(".")[0] == "sklearn":
                from ..errors import pip_command

                raise ImportError(f"DeepCoxRegressor needs scikit-learn, which is not installed: "
                                  f"{pip_command('scikit-learn')}") from None
            raise
        return DeepCoxRegressor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
