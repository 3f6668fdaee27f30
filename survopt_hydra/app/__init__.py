"""The survival training app: the reference Hydra app built on survopt_hydra's groups.

``from survopt_hydra.app import DeepCoxRegressor`` is its Python API, a scikit-learn estimator
(:mod:`.estimator`); it is imported on first use, since it needs scikit-learn (the ``sklearn`` extra).
"""
from typing import Any

INSTALL_HINT = 'pip install "survopt-hydra[sklearn]"'


def __getattr__(name: str) -> Any:
    if name == "DeepCoxRegressor":
        try:
            from .estimator import DeepCoxRegressor
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.split(".")[0] in ("sklearn", "pandas", "pyarrow"):
                raise ImportError(f"DeepCoxRegressor needs {exc.name.split('.')[0]}, which is not installed: "
                                  f"{INSTALL_HINT}") from None
            raise
        return DeepCoxRegressor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
