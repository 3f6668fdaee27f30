"""Hydra's and OmegaConf's composition errors as one line naming the key and what is allowed.

Hydra reports an unknown option, key or value in several lines (and a lexer error only as a
caret under a character); the app's pre-flight and :func:`~.compose.compose_train` show the
user one ``ConfigError`` instead.
"""
from __future__ import annotations

import re

from ..schemas.checks import schema_fields
from ..errors import ConfigError, did_you_mean, first_line
from .rules import TOP_LEVEL

_TYPE_WORDS = {"Float": "must be a number", "Integer": "must be an integer", "Boolean": "must be true or false",
               "String": "must be a string"}


def _unknown_key(key: str, cause: BaseException | None) -> ConfigError:
    full = getattr(cause, "full_key", None) or key
    parent, _, leaf = full.rpartition(".")
    schema = getattr(cause, "object_type", None)
    node = getattr(cause, "parent_node", None)
    if not parent:
        allowed: list[str] = list(TOP_LEVEL)
    elif isinstance(schema, type) and hasattr(schema, "__dataclass_fields__"):
        allowed = list(schema_fields(schema))
    elif parent in TOP_LEVEL and node is not None and hasattr(node, "keys"):  # a group's option (a YAML node)
        allowed = [str(k) for k in node.keys() if not str(k).startswith("_")]
    else:  # a free-form mapping such as optimizer.lr_mult
        return ConfigError(full, f"no such entry; add one with +{key}=<value>")
    return ConfigError(full, f"unknown key{did_you_mean(leaf, allowed)}; allowed: {', '.join(allowed)}")


def _bad_value(key: str, value: str, cause: BaseException | None) -> ConfigError:
    full = getattr(cause, "full_key", None) or key
    text = str(cause or "")
    if full != key and isinstance(getattr(cause, "value", None), (str, int, float)):
        value = cause.value  # type: ignore[union-attr]  # the element of a list/mapping, not the whole override
    match = re.search(r"could not be converted to (\w+)", text)
    if match and match.group(1) in _TYPE_WORDS:
        return ConfigError(full, f"{_TYPE_WORDS[match.group(1)]}, got {value!r}")
    if "is not a valid bool" in text:
        return ConfigError(full, f"must be true or false, got {value!r}")
    if "is not Optional" in text or "non-optional field" in text:
        return ConfigError(full, "must not be null; give a value")
    if "ListConfig" in text:
        return ConfigError(full, f"must be a list such as [a,b], got {value!r}")
    if "DictConfig" in text or "Cannot assign" in text:
        return ConfigError(full, f"must be a mapping such as {{k: v}}, got {value!r}")
    return ConfigError(full, f"invalid value {value!r} ({first_line(cause or ValueError(text))})")


#: Hydra launchers that a plugin brings, by the config name Hydra cannot load without it: (module, PyPI
#: project). ``hydra/launcher=survopt_parallel`` and ``survopt_slurm`` extend ``joblib`` and ``submitit_slurm``.
LAUNCHER_PLUGINS = {"joblib": ("hydra_plugins.hydra_joblib_launcher", "hydra-joblib-launcher"),
                    "submitit_slurm": ("hydra_plugins.hydra_submitit_launcher", "hydra-submitit-launcher"),
                    "submitit_local": ("hydra_plugins.hydra_submitit_launcher", "hydra-submitit-launcher")}


def _missing_launcher(missing: str, text: str) -> ConfigError | None:
    """``hydra/launcher=survopt_parallel: needs hydra-joblib-launcher, which is not installed: pip install
    ...`` when the config Hydra could not load is a launcher whose plugin is absent; None otherwise."""
    from ..errors import require_package

    group, _, name = missing.rpartition("/")
    if group != "hydra/launcher" or name not in LAUNCHER_PLUGINS:
        return None
    module, dist = LAUNCHER_PLUGINS[name]
    chosen = re.match(r"In 'hydra/launcher/([^']+)'", text)  # survopt_parallel, which extends joblib
    try:
        require_package(module, f"hydra/launcher={chosen.group(1) if chosen else name}", dist)
    except ConfigError as exc:
        return exc
    return None


def explain(exc: BaseException) -> ConfigError:
    """One-line ConfigError for a Hydra composition / OmegaConf error."""
    from hydra.errors import MissingConfigException, OverrideParseException

    text = str(exc)
    cause = exc.__cause__ or exc.__context__
    if isinstance(exc, MissingConfigException):
        missing = exc.missing_cfg_file or ""
        plugin = _missing_launcher(missing, text)
        if plugin is not None:
            return plugin
        if exc.options is not None and "/" in missing:
            group, _, name = missing.rpartition("/")
            options = sorted(exc.options)
            return ConfigError(group, f"unknown option '{name}'{did_you_mean(name, options)}; "
                                      f"allowed: {', '.join(options)}")
        return ConfigError("config", first_line(exc))
    if isinstance(exc, OverrideParseException):
        lexer = re.match(r"(\w*LexerNoViableAltException: )(.*)\n( *)\^", text)
        if lexer:  # the lexer names no override, only a caret under the character it stopped at
            line, at = lexer.group(2), len(lexer.group(3)) - len(lexer.group(1))
            bad = line[at] if 0 <= at < len(line) else "?"
            key = line.partition("=")[0] or line
            return ConfigError(key, f"cannot parse the override '{line}': character {bad!r} (position {at + 1}) "
                                    "is not allowed unquoted; quote the value, e.g. "
                                    f"'{key}=\"...\"' (see https://hydra.cc/docs/advanced/override_grammar/basic/)")
        match = re.match(r"Error parsing override '(.*)'", text)
        lines = [line.strip() for line in text.splitlines()[1:] if line.strip() and not line.startswith("See ")]
        return ConfigError(match.group(1) if match else "override",
                           f"cannot parse this override ({lines[0] if lines else 'syntax error'}); "
                           "see https://hydra.cc/docs/advanced/override_grammar/basic/")
    match = re.match(r"Could not override '([^']*)'", text)
    if match:
        return _unknown_key(match.group(1), cause)
    match = re.match(r"Error merging override ([^=]*)=(.*)", text)
    if match:
        return _bad_value(match.group(1).lstrip("+~"), match.group(2), cause)
    match = re.match(r"Ambiguous value for argument '([^=]*)=(.*)'", text)
    if match:
        return ConfigError(match.group(1), f"ambiguous value '{match.group(2)}': use [a,b] for a list, quote it "
                                           "for a string, or add --multirun to sweep over it")
    match = re.match(r"Could not append to config. An item is already at '([^']*)'", text)
    if match:
        return ConfigError(match.group(1), "is already set; drop the leading '+' to change it")
    key = getattr(exc, "full_key", None) or getattr(cause, "full_key", None) or "config"
    return ConfigError(str(key), first_line(cause if cause is not None and not text.strip() else exc))
