"""Write :mod:`.optimizers`, one dataclass per optimizer option, from the classes' own signatures.

``python -m survopt_hydra.schemas.signatures`` reads the keyword signature of every class the
records in :mod:`.optimizer` name (every ``torch.optim`` optimizer, plus the optional
third-party ones whose packages are installed) and writes ``optimizers.py``: real,
importable, picklable dataclasses that hydra-zen can build on and the standard library can
pickle, with torch's defaults (or a record's own) and the range checks of
:data:`~.optimizer.KEYWORD_CHECKS`. Composing and checking a config therefore never imports
torch. ``tests/test_optimizer.py`` fails when the file no longer matches the installed classes.

Types are OmegaConf-friendly: ``float | Tensor`` is ``float``, tuples are lists.
"""
from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

SKIP = ("self", "params")
TARGET = Path(__file__).with_name("optimizers.py")


def type_name(annotation: Any, default: Any) -> str:
    """A keyword's annotation as the name of an OmegaConf-friendly type."""
    import inspect
    import types

    import torch

    if isinstance(annotation, str) or annotation is inspect.Parameter.empty:
        annotation = type(default) if default is not None else Any
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not torch.Tensor]
        inner = [a for a in args if a is not type(None)]
        if len(inner) > 1 and all(typing.get_origin(a) is tuple for a in inner):  # (b1, b2) | (b1, b2, b3)
            names = {type_name(a, None) for a in inner}
            inner = inner[:1] if len(names) == 1 else inner
        name = type_name(inner[0], default) if len(inner) == 1 else "Any"
        return f"Optional[{name}]" if type(None) in args and name != "Any" else name
    if origin is tuple or annotation is tuple:
        names = {type_name(a, None) for a in typing.get_args(annotation) if a is not Ellipsis}
        return f"List[{names.pop() if len(names) == 1 else 'Any'}]"
    if annotation is int and isinstance(default, float):
        return "float"
    return annotation.__name__ if annotation in (int, float, bool, str) else "Any"


def read_signature(cls: type) -> dict[str, tuple[str, Any]]:
    """keyword -> (type name, default) of an optimizer class's constructor."""
    import inspect

    hints = typing.get_type_hints(cls.__init__)
    kws: dict[str, tuple[str, Any]] = {}
    for kw, p in inspect.signature(cls.__init__).parameters.items():
        if kw in SKIP or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or p.default is p.empty:
            continue
        default = list(p.default) if isinstance(p.default, tuple) else p.default
        name = type_name(hints.get(kw, p.annotation), default)
        if name == "float" and isinstance(default, int) and not isinstance(default, bool):
            default = float(default)
        kws[kw] = (name, default)
    return kws


def torch_classes() -> list[str]:
    """Every optimizer class of the installed ``torch.optim``, by name."""
    import torch

    return sorted(name for name, cls in vars(torch.optim).items()
                  if isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer) and cls is not torch.optim.Optimizer)


def render() -> str:
    """The text of ``optimizers.py`` for the installed torch and third-party packages."""
    import importlib

    import torch

    from .optimizer import records_for
    from .optimizer_fields import KEYWORD_CHECKS, LIST_KEYWORDS, OptimizerConfig

    versions = [f"torch {torch.__version__.split('+')[0]}"]
    classes = []
    for info in records_for(torch_classes()):
        try:
            cls = getattr(importlib.import_module(info.module), info.cls)
        except ImportError:
            raise SystemExit(f"error: {info.name} needs {info.package}: pip install \"survopt-hydra[{info.extra}]\" "
                             "before writing the schemas") from None
        if info.package and (info.package, info.package_version()) not in [v.split(" ") for v in versions]:
            versions.append(f"{info.package} {info.package_version()}")
        classes.append((info, read_signature(cls)))
    shared = {f.name: f.metadata.get("doc", "") for f in __import__("dataclasses").fields(OptimizerConfig)}
    out = [
        '"""One dataclass per option of the ``optimizer`` config group (``AdamWConfig`` ...).\n\n'
        "Written by ``python -m survopt_hydra.schemas.signatures`` from "
        f"{', '.join(sorted(set(versions)))} and the records in :mod:`.optimizer`;\n"
        "do not edit: ``tests/test_optimizer.py`` fails when this file no longer matches the installed classes.\n"
        '"""',
        "from __future__ import annotations",
        "",
        "from dataclasses import dataclass",
        "from typing import Any, ClassVar, List, Optional, Tuple",
        "",
        "from .checks import fld",
        "from .optimizer_fields import KEYWORD_CHECKS as CHECK",
        "from .optimizer_fields import MuonRecipeConfig, OptimizerConfig",
        "",
        f"TORCH_CLASSES: Tuple[str, ...] = {tuple(torch_classes())!r}",
    ]
    for info, kws in classes:
        base = "MuonRecipeConfig" if info.recipe == "muon" else "OptimizerConfig"
        where = f"{info.module}.{info.cls}"
        out += ["", "", "@dataclass", f"class {info.config_name}({base}):",
                f'    """``optimizer={info.name}``: ``{where}``{(": " + info.doc) if info.doc else ""}."""', "",
                f"    keywords: ClassVar[Tuple[str, ...]] = {tuple(kws)!r}",
                f'    name: str = "{info.name}"']
        for kw, (tp, default) in kws.items():
            default = info.defaults.get(kw, default)
            doc = shared.get(kw) or f"{info.cls}'s {kw}"
            checked = kw in KEYWORD_CHECKS and tp.startswith(("List", "Optional")) == (kw in LIST_KEYWORDS)
            check = f'CHECK["{kw}"]' if checked else "None"
            out.append(f"    {kw}: {tp} = fld({default!r}, {check}, {doc!r})")
    return "\n".join(out) + "\n"


def write() -> None:
    TARGET.write_text(render())


if __name__ == "__main__":
    write()
