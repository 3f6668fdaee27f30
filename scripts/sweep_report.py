"""Summarize a Hydra multirun of survopt-train: ``python scripts/sweep_report.py ...`` is ``survopt-report ...``.

The code lives in :mod:`survopt_hydra.app.tools.sweep_report` (the console script's entry point); this file
keeps the documented command working from a checkout. Imported as ``sweep_report`` (``scripts/`` on
``sys.path``), it is that module itself, so monkeypatching one patches the other.
"""
import sys

from survopt_hydra.app.tools import sweep_report

main = sweep_report.main
if __name__ == "__main__":
    sys.exit(main())
sys.modules[__name__] = sweep_report
