"""The library's Hydra config groups, shipped in the wheel as ``survopt_hydra.conf``.

An app opts in with one line in its primary config::

    hydra:
      searchpath:
        - pkg://survopt_hydra.conf

and then picks ``optimizer``, ``scheduler``, ``clipping``, ``amp``, ``distributed``, ``ema``
and ``preset`` options like its own. The search path is appended after the app's own config
dirs and ConfigStore, so an option the app defines itself (same group and name) wins,
unchanged. Importing this package has no side effect: nothing is registered anywhere.
Every ``<group>/<option>.yaml`` is written from its dataclass (``python -m
survopt_hydra.schemas.render``); ``preset/`` is written by hand.
"""
