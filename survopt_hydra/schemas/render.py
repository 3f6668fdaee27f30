"""Render each option's schema as the YAML file Hydra reads: ``conf/<group>/<option>.yaml``.

Why YAML files and not ConfigStore entries: Hydra merges a ConfigStore node into a YAML file
of the same group and name as its schema, and a later ``store`` replaces an earlier one, so
library entries would change other apps' own ``optimizer/adamw``. YAML files on a search
path an app opts into (``hydra.searchpath: [pkg://survopt_hydra.conf]``) change no other app,
and are found after the app's own config dir: the app's YAML option of the same name wins,
unchanged. (Hydra searches the ConfigStore after every search path, so an option an opted-in
app *stores* under a library name is shadowed by the file: such options need their own names.)

The dataclasses stay the one source of truth: every file is written from its schema by
``python -m survopt_hydra.schemas.render`` (``tests/test_conf_files.py`` fails on drift),
with each field's doc as a comment. Composed nodes are plain (struct) dicts, so a misspelt
key still fails at composition; values are checked by :func:`~survopt_hydra.api.validation.validate_groups`
and by the builders.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping

HEADER = "# Written from {schema} by `python -m {writer}`; do not edit (the dataclass is the source)."


def _scalar(value: Any) -> str:
    import yaml

    text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    return text[:-4].strip() if text.endswith("\n...") else text.removesuffix("...").strip()


def render_option(schema: type, group: str, writer: str, title: str = "") -> str:
    """The YAML text of one option: ``_target_``, ``_partial_`` and every field with its default and doc."""
    doc = (schema.__doc__ or "").strip().splitlines()
    first = doc[0].replace("``", "") if doc and not doc[0].startswith(f"{schema.__name__}(") else ""
    name = f"{group}={title}" if title else group
    lines = [f"# {first}" if first.startswith(name) else f"# {name}" + (f": {first}" if first else ""),
             HEADER.format(schema=f"{schema.__module__}.{schema.__qualname__}", writer=writer)]
    defaults = schema()
    for field in dataclasses.fields(schema):
        value = getattr(defaults, field.name)
        comment = field.metadata.get("doc", "") if field.metadata else ""
        line = f"{field.name}: {_scalar(value)}"
        lines.append(f"{line}  # {comment}" if comment else line)
    return "\n".join(lines) + "\n"


def render_groups(groups: Mapping[str, Mapping[str, type]], writer: str) -> dict[str, str]:
    """``"<group>/<option>.yaml"`` -> text, for every option of ``groups``."""
    return {f"{group}/{name}.yaml": render_option(schema, group, writer, name)
            for group, options in groups.items() for name, schema in options.items()}


def write_files(files: Mapping[str, str], root: Path) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def conf_dir() -> Path:
    """Where ``pkg://survopt_hydra.conf`` lives (the checkout's ``conf/`` in an editable install)."""
    from importlib.resources import files

    return Path(str(files("survopt_hydra.conf")))


def library_files() -> dict[str, str]:
    from . import GROUPS

    return render_groups(GROUPS, "survopt_hydra.schemas.render")


if __name__ == "__main__":
    write_files(library_files(), conf_dir())
