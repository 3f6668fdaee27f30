"""Plot the learning rate a config would apply, without training: ``python scripts/plot_schedule.py ...`` is ``survopt-schedule ...``.

The code lives in :mod:`survopt_hydra.app.tools.plot_schedule` (the console script's entry point); this file
keeps the documented command working from a checkout. Imported as ``plot_schedule`` (``scripts/`` on
``sys.path``), it is that module itself, so monkeypatching one patches the other.
"""
import sys

from survopt_hydra.app.tools import plot_schedule

main = plot_schedule.main
if __name__ == "__main__":
    sys.exit(main())
sys.modules[__name__] = plot_schedule
