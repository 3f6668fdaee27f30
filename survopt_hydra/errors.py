"""One error type for bad configuration, so apps can print one line and exit.

Every message starts with the full dotted key (``optimizer.lr``) so the user knows
exactly which override to fix; near-miss names get a "did you mean" hint.
"""
from __future__ import annotations

import difflib
from typing import Iterable


class ConfigError(ValueError):
    """A configuration value, name or combination that cannot be used.

    ``key`` is the full dotted key (``scheduler.T_0``); the message names it and what
    is allowed, on one line.
    """

    def __init__(self, key: str, message: str) -> None:
        self.key, self.message = key, message
        super().__init__(f"{key}: {message}")

    def __reduce__(self) -> tuple:
        # rebuilt from (key, message), not from the joined text: an error raised in a worker
        # process (a parallel sweep or tuning job) reaches the parent as the same one line
        return type(self), (self.key, self.message)


def _edit_distance(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for a close match, else an empty string.

    difflib finds the candidates; the fewest edits picks among them (difflib alone
    ranks 'adam' above 'adamw' for the typo 'adamx').
    """
    name, choices = str(name), [str(c) for c in choices]
    close = difflib.get_close_matches(name, choices, n=len(choices), cutoff=0.6)
    if not close:
        return ""
    best = min(close, key=lambda c: (_edit_distance(name, c), abs(len(c) - len(name)), close.index(c)))
    return f" (did you mean '{best}'?)"


def unknown_name(key: str, name: str, allowed: Iterable[str]) -> ConfigError:
    """Error for an unknown option name, listing every allowed one."""
    allowed = sorted(allowed)
    return ConfigError(
        key, f"unknown name '{name}'{did_you_mean(name, allowed)}; allowed: {', '.join(allowed)}"
    )


def first_line(exc: BaseException) -> str:
    """The first non-blank line of an exception's message (its type name if none): libraries'
    multi-line reports (torch.load, Hydra) shortened to the one line a user error gets."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def _normal(name: str) -> str:
    import re

    return re.sub(r"[-_.]+", "-", name).lower()  # PEP 503: Hydra_Zen, hydra-zen and hydra.zen are one project


def pip_command(dist: str) -> str:
    """The command that installs ``dist``: ``pip install "survopt-hydra[<extra>]"`` for the extra that lists
    it (read from the installed package's own metadata, i.e. pyproject.toml's optional dependencies, so
    the two cannot disagree; ``dev`` is never named), else ``pip install <dist>``."""
    import re
    from importlib import metadata

    try:
        requires = metadata.requires("survopt-hydra") or []
    except metadata.PackageNotFoundError:  # a source tree on sys.path, not installed
        requires = []
    for line in requires:
        name, extra = re.match(r"\s*([A-Za-z0-9._-]+)", line), re.search(r"extra\s*==\s*['\"]([^'\"]+)['\"]", line)
        if name and extra and extra.group(1) != "dev" and _normal(name.group(1)) == _normal(dist):
            return f'pip install "survopt-hydra[{extra.group(1)}]"'
    return f"pip install {dist}"


def require_package(module: str, key: str, dist: str | None = None) -> None:
    """ConfigError ``<key>: needs <dist>, which is not installed: pip install ...`` unless ``module`` can be
    imported. The module is looked up (``importlib.util.find_spec``), not imported, so checking costs
    nothing; a command checks what it needs before it does any work. ``dist``: the project on PyPI when it
    is not the module's top-level name (``hydra_plugins.hydra_joblib_launcher``: hydra-joblib-launcher)."""
    import importlib.util

    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or blocked with sys.modules[name] = None
        found = False
    if not found:
        dist = dist or module.split(".")[0]
        raise ConfigError(key, f"needs {dist}, which is not installed: {pip_command(dist)}")
