"""The library's Hydra config groups, shipped in the wheel as ``survopt_hydra.conf``.

An app opts in with one line in its primary config::

    hydra:
      searchpath:
        - pkg://survopt_hydra.conf

and then picks ``optimizer``, ``scheduler``, ``clipping``, ``amp``, ``distributed``, ``ema``
and ``preset`` options like its own. The search path comes after the app's own config dir,
so an option the app defines there (same group and name) wins, unchanged. Hydra searches the
ConfigStore last, after every search path: an option the app *stores* under a library name would
be shadowed by the file here, so an app that keeps its options in the ConfigStore (hydra-zen)
opts in with :func:`survopt_hydra.schemas.store.store_options` instead, which keeps its entries;
importing this package says so in one line when it finds such an entry. Nothing is registered
anywhere.
Every ``<group>/<option>.yaml`` is written from its dataclass (``python -m
survopt_hydra.schemas.render``); ``preset/`` is written by hand.
"""


def _warn_about_shadowed_options() -> None:
    """One line when the app opting in through this search path also stores options of the same names in
    Hydra's ConfigStore: Hydra searches the ConfigStore last, so the files here would win over them."""
    import sys

    from hydra.core.config_store import ConfigStore

    from survopt_hydra.schemas import GROUPS

    store = ConfigStore.instance()
    shadowed = []
    for group, options in GROUPS.items():
        try:
            stored = {name.removesuffix(".yaml") for name in store.list(group)}
        except IOError:
            continue
        shadowed += [f"{group}/{name}" for name in sorted(stored & set(options))]
    if shadowed:
        print(f"warning: hydra.searchpath pkg://survopt_hydra.conf: the app's ConfigStore entries {', '.join(shadowed)} "
              "are shadowed by the library's files of the same names (Hydra searches the ConfigStore last); opt in "
              "with survopt_hydra.schemas.store.store_options() instead, which keeps the app's entries",
              file=sys.stderr, flush=True)


_warn_about_shadowed_options()
