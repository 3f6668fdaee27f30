"""Draw a run's PNG plots from the CSVs in its run dir: ``survopt-plot RUN_DIR [RUN_DIR ...]``
(or ``python scripts/plot_run.py RUN_DIR ...``).

Writes ``curves.png`` (epochs.csv), ``lr_schedule.png`` (lr_steps.csv), ``calibration.png`` and
``risk_groups.png`` (test_predictions.csv) into each run dir - byte for byte the PNGs a run with
``trainer.plots=true`` draws, which a default run skips (matplotlib would cost more than its
training). What each shows, and the conventions (lifelines') it follows:
:mod:`survopt_hydra.app.plots` and docs/prediction.md. Works on a finished run and on a running
or interrupted one (what its CSVs hold so far).
A run dir is untrusted: a plot name that is a symbolic link there is refused in one line (a drawing
would be written through it), before anything is drawn.
"""
from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="survopt-plot", description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    args = parser.parse_args(argv)
    import os
    from pathlib import Path

    from survopt_hydra.errors import ConfigError, require_package

    try:
        require_package("matplotlib", "survopt-plot")
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    from survopt_hydra.app.outputs import RESULT_FILES
    from survopt_hydra.app.plots import render_run

    for run_dir in args.run_dirs:
        links = [name for name in RESULT_FILES if name.endswith(".png") and os.path.islink(Path(run_dir) / name)]
        if links:
            print(f"error: {Path(run_dir) / links[0]}: a symbolic link; plots are never written through a link "
                  "(move it away)", file=sys.stderr)
            return 2
        try:
            for path in render_run(run_dir):
                print(path)
        except (OSError, ValueError, KeyError) as exc:
            print(f"error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
