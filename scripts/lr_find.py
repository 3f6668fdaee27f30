"""Learning-rate range test: ``python scripts/lr_find.py ...`` is ``survopt-lr-find ...``.

The code lives in :mod:`survopt_hydra.app.tools.lr_find` (the console script's entry point); this file
keeps the documented command working from a checkout. Imported as ``lr_find`` (``scripts/`` on
``sys.path``), it is that module itself, so monkeypatching one patches the other.
"""
import sys

from survopt_hydra.app.tools import lr_find

main = lr_find.main
if __name__ == "__main__":
    sys.exit(main())
sys.modules[__name__] = lr_find
