"""Tune the app's hyper-parameters on validation figures, then test once: ``python scripts/tune.py ...`` is ``survopt-tune ...``.

The code lives in :mod:`survopt_hydra.app.tools.tune` (the console script's entry point); this file
keeps the documented command working from a checkout. Imported as ``tune`` (``scripts/`` on
``sys.path``), it is that module itself, so monkeypatching one patches the other.
"""
import sys

from survopt_hydra.app.tools import tune

main = tune.main
if __name__ == "__main__":
    sys.exit(main())
sys.modules[__name__] = tune
