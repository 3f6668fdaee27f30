"""Keyword signatures of the installed ``torch.optim`` classes, as the optimizer schemas read them.

Written by ``python -m survopt_hydra.schemas.torch_signatures`` from the installed torch
(``tests/test_optimizer.py`` fails when it no longer matches), so that composing and
checking a config never imports torch. Types are OmegaConf-friendly: torch's
``float | Tensor`` is ``float``, tuples are lists.
"""
from __future__ import annotations

import typing
from typing import Any

SKIP = ("self", "params")
MARKER = "# === table " + "written"  # split: this line must not match itself


def type_name(annotation: Any, default: Any) -> str:
    """A torch keyword's annotation as the name of an OmegaConf-friendly type."""
    import inspect
    import types

    import torch

    if isinstance(annotation, str) or annotation is inspect.Parameter.empty:
        annotation = type(default) if default is not None else Any
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not torch.Tensor]
        inner = [a for a in args if a is not type(None)]
        name = type_name(inner[0], default) if len(inner) == 1 else "Any"
        return f"Optional[{name}]" if type(None) in args and name != "Any" else name
    if origin is tuple or annotation is tuple:
        names = {type_name(a, None) for a in typing.get_args(annotation) if a is not Ellipsis}
        return f"List[{names.pop() if len(names) == 1 else 'Any'}]"
    return annotation.__name__ if annotation in (int, float, bool, str) else "Any"


def read_signatures() -> dict[str, dict[str, tuple[str, Any]]]:
    """class name -> keyword -> (type name, default) for every optimizer in the installed torch.optim."""
    import inspect

    import torch

    out: dict[str, dict[str, tuple[str, Any]]] = {}
    for cls_name, cls in sorted(vars(torch.optim).items()):
        if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer) and cls is not torch.optim.Optimizer):
            continue
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
        out[cls_name] = kws
    return out


def write() -> None:
    """Rewrite the table at the end of this file from the installed torch."""
    import pprint
    from pathlib import Path

    import torch

    path = Path(__file__)
    text = path.read_text()
    head = text[: text.index(MARKER)]
    body = pprint.pformat(read_signatures(), width=110, sort_dicts=False)
    version = torch.__version__.split("+")[0]
    path.write_text(f"{head}{MARKER} from torch {version}; do not edit below\n"
                    f"SIGNATURES: dict[str, dict[str, tuple[str, Any]]] = {body}\n")


if __name__ == "__main__":
    write()

# === table written from torch 2.13.0; do not edit below
SIGNATURES: dict[str, dict[str, tuple[str, Any]]] = {'ASGD': {'lr': ('float', 0.01),
          'lambd': ('float', 0.0001),
          'alpha': ('float', 0.75),
          't0': ('float', 1000000.0),
          'weight_decay': ('float', 0.0),
          'foreach': ('Optional[bool]', None),
          'maximize': ('bool', False),
          'differentiable': ('bool', False),
          'capturable': ('bool', False)},
 'Adadelta': {'lr': ('float', 1.0),
              'rho': ('float', 0.9),
              'eps': ('float', 1e-06),
              'weight_decay': ('float', 0.0),
              'foreach': ('Optional[bool]', None),
              'capturable': ('bool', False),
              'maximize': ('bool', False),
              'differentiable': ('bool', False)},
 'Adafactor': {'lr': ('float', 0.01),
               'beta2_decay': ('float', -0.8),
               'eps': ('List[Any]', [None, 0.001]),
               'd': ('float', 1.0),
               'weight_decay': ('float', 0.0),
               'foreach': ('Optional[bool]', None),
               'maximize': ('bool', False)},
 'Adagrad': {'lr': ('float', 0.01),
             'lr_decay': ('float', 0.0),
             'weight_decay': ('float', 0.0),
             'initial_accumulator_value': ('float', 0.0),
             'eps': ('float', 1e-10),
             'foreach': ('Optional[bool]', None),
             'maximize': ('bool', False),
             'differentiable': ('bool', False),
             'fused': ('Optional[bool]', None)},
 'Adam': {'lr': ('float', 0.001),
          'betas': ('List[float]', [0.9, 0.999]),
          'eps': ('float', 1e-08),
          'weight_decay': ('float', 0.0),
          'amsgrad': ('bool', False),
          'foreach': ('Optional[bool]', None),
          'maximize': ('bool', False),
          'capturable': ('bool', False),
          'differentiable': ('bool', False),
          'fused': ('Optional[bool]', None),
          'decoupled_weight_decay': ('bool', False)},
 'AdamW': {'lr': ('float', 0.001),
           'betas': ('List[float]', [0.9, 0.999]),
           'eps': ('float', 1e-08),
           'weight_decay': ('float', 0.01),
           'amsgrad': ('bool', False),
           'maximize': ('bool', False),
           'foreach': ('Optional[bool]', None),
           'capturable': ('bool', False),
           'differentiable': ('bool', False),
           'fused': ('Optional[bool]', None)},
 'Adamax': {'lr': ('float', 0.002),
            'betas': ('List[float]', [0.9, 0.999]),
            'eps': ('float', 1e-08),
            'weight_decay': ('float', 0.0),
            'foreach': ('Optional[bool]', None),
            'maximize': ('bool', False),
            'differentiable': ('bool', False),
            'capturable': ('bool', False)},
 'LBFGS': {'lr': ('float', 1.0),
           'max_iter': ('int', 20),
           'max_eval': ('Optional[int]', None),
           'tolerance_grad': ('float', 1e-07),
           'tolerance_change': ('float', 1e-09),
           'history_size': ('int', 100),
           'line_search_fn': ('Optional[str]', None)},
 'Muon': {'lr': ('float', 0.001),
          'weight_decay': ('float', 0.1),
          'momentum': ('float', 0.95),
          'nesterov': ('bool', True),
          'ns_coefficients': ('List[float]', [3.4445, -4.775, 2.0315]),
          'eps': ('float', 1e-07),
          'ns_steps': ('int', 5),
          'adjust_lr_fn': ('Optional[str]', None)},
 'NAdam': {'lr': ('float', 0.002),
           'betas': ('List[float]', [0.9, 0.999]),
           'eps': ('float', 1e-08),
           'weight_decay': ('float', 0.0),
           'momentum_decay': ('float', 0.004),
           'decoupled_weight_decay': ('bool', False),
           'foreach': ('Optional[bool]', None),
           'maximize': ('bool', False),
           'capturable': ('bool', False),
           'differentiable': ('bool', False)},
 'RAdam': {'lr': ('float', 0.001),
           'betas': ('List[float]', [0.9, 0.999]),
           'eps': ('float', 1e-08),
           'weight_decay': ('float', 0.0),
           'decoupled_weight_decay': ('bool', False),
           'foreach': ('Optional[bool]', None),
           'maximize': ('bool', False),
           'capturable': ('bool', False),
           'differentiable': ('bool', False)},
 'RMSprop': {'lr': ('float', 0.01),
             'alpha': ('float', 0.99),
             'eps': ('float', 1e-08),
             'weight_decay': ('float', 0.0),
             'momentum': ('float', 0.0),
             'centered': ('bool', False),
             'capturable': ('bool', False),
             'foreach': ('Optional[bool]', None),
             'maximize': ('bool', False),
             'differentiable': ('bool', False)},
 'Rprop': {'lr': ('float', 0.01),
           'etas': ('List[float]', [0.5, 1.2]),
           'step_sizes': ('List[float]', [1e-06, 50]),
           'capturable': ('bool', False),
           'foreach': ('Optional[bool]', None),
           'maximize': ('bool', False),
           'differentiable': ('bool', False)},
 'SGD': {'lr': ('float', 0.001),
         'momentum': ('float', 0.0),
         'dampening': ('float', 0.0),
         'weight_decay': ('float', 0.0),
         'nesterov': ('bool', False),
         'maximize': ('bool', False),
         'foreach': ('Optional[bool]', None),
         'differentiable': ('bool', False),
         'fused': ('Optional[bool]', None)},
 'SparseAdam': {'lr': ('float', 0.001),
                'betas': ('List[float]', [0.9, 0.999]),
                'eps': ('float', 1e-08),
                'maximize': ('bool', False)}}
