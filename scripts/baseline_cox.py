"""Classical Cox regression on the app's split: ``python scripts/baseline_cox.py ...`` is ``survopt-baseline ...``.

The code lives in :mod:`survopt_hydra.app.tools.baseline_cox` (the console script's entry point); this file
keeps the documented command working from a checkout. Imported as ``baseline_cox`` (``scripts/`` on
``sys.path``), it is that module itself, so monkeypatching one patches the other.
"""
import sys

from survopt_hydra.app.tools import baseline_cox

main = baseline_cox.main
if __name__ == "__main__":
    sys.exit(main())
sys.modules[__name__] = baseline_cox
