"""The library's Hydra config groups, shipped in the wheel as ``survopt_hydra.conf``.

An app opts in with one line in its primary config::

    hydra:
      searchpath:
        - pkg://survopt_hydra.conf

and then picks ``optimizer``, ``scheduler``, ``clipping``, ``amp``, ``distributed``, ``ema``
and ``preset`` options like its own. The search path comes after the app's own config dir,
so an option the app defines there (same group and name) wins, unchanged. Hydra searches the
ConfigStore last, after every search path: an option the app *stores* under a library name is
shadowed by the file here, with its node merged in as a schema (Hydra's deprecated automatic
schema matching), so such options need names of their own (``tests/guest_apps``). Importing
this package has no side effect: nothing is registered anywhere.
Every ``<group>/<option>.yaml`` is written from its dataclass (``python -m
survopt_hydra.schemas.render``); ``preset/`` is written by hand.
"""
