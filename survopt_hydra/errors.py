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
        self.key = key
        super().__init__(f"{key}: {message}")


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for a close match, else an empty string."""
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def unknown_name(key: str, name: str, allowed: Iterable[str]) -> ConfigError:
    """Error for an unknown option name, listing every allowed one."""
    allowed = sorted(allowed)
    return ConfigError(
        key, f"unknown name '{name}'{did_you_mean(name, allowed)}; allowed: {', '.join(allowed)}"
    )
