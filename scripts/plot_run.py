"""Draw a run's PNG plots from its CSVs: ``python scripts/plot_run.py ...`` is ``survopt-plot ...``.

The code lives in :mod:`survopt_hydra.app.tools.plot_run` (the console script's entry point); this file
keeps the documented command working from a checkout. Imported as ``plot_run`` (``scripts/`` on
``sys.path``), it is that module itself, so monkeypatching one patches the other.
"""
import sys

from survopt_hydra.app.tools import plot_run

main = plot_run.main
if __name__ == "__main__":
    sys.exit(main())
sys.modules[__name__] = plot_run
