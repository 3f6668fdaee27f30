"""The app's command-line tools, each a console script of the installed package.

``survopt-tune`` (:mod:`.tune`), ``survopt-report`` (:mod:`.sweep_report`), ``survopt-plot``
(:mod:`.plot_run`), ``survopt-schedule`` (:mod:`.plot_schedule`), ``survopt-lr-find``
(:mod:`.lr_find`) and ``survopt-baseline`` (:mod:`.baseline_cox`), beside ``survopt-train`` and
``survopt-predict``. They live in the package so that ``pip install`` gives them as commands;
``scripts/<tool>.py`` in a checkout are shims that run the same code. Each checks the optional
packages it needs first (:func:`survopt_hydra.errors.require_package`): a missing one is one line
naming the pip command, exit 2.
"""
