"""Muon with its documented recipe in one optimizer: Muon for hidden 2-D matrices, AdamW for the rest.

torch's ``Muon`` orthogonalises 2-D updates and refuses anything else; its documentation
(and Keller Jordan's recipe) leaves embeddings, the output head, biases and norm weights
to AdamW. :class:`MuonWithAdamW` is one ``torch.optim.Optimizer`` over both torch
optimizers: the same param-group dicts (schedulers, monitors and checkpoints see every
group) and one shared ``state``, so ``state_dict`` / ``load_state_dict`` round-trip.
"""
from __future__ import annotations

import fnmatch
from typing import Any, Sequence

import torch
from torch import nn


def split_for_muon(model: nn.Module, aux_patterns: Sequence[str]) -> tuple[list[str], list[str]]:
    """Names of the hidden 2-D matrices (Muon) and of everything else (AdamW).

    AdamW gets: parameters that are not 2-D, ``nn.Embedding`` weights, names matching
    ``aux_patterns`` and the last 2-D parameter registered (the output head).
    """
    embeddings = {f"{m_name}.weight" if m_name else "weight" for m_name, m in model.named_modules()
                  if isinstance(m, nn.Embedding)}
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    matrices = [n for n, p in named if p.ndim == 2]
    head = matrices[-1:] if len(matrices) > 1 else []
    muon = [n for n in matrices if n not in embeddings and n not in head
            and not any(fnmatch.fnmatchcase(n, pat) for pat in aux_patterns)]
    return muon, [n for n, _ in named if n not in muon]


class MuonWithAdamW(torch.optim.Optimizer):
    """``torch.optim.Muon`` on ``muon_groups`` and ``torch.optim.AdamW`` on ``adamw_groups``, stepped together."""

    def __init__(self, muon_groups: list[dict], adamw_groups: list[dict], muon_kwargs: dict[str, Any],
                 adamw_kwargs: dict[str, Any]) -> None:
        self.muon = torch.optim.Muon(muon_groups, **muon_kwargs)
        self.adamw = torch.optim.AdamW(adamw_groups, **adamw_kwargs) if adamw_groups else None
        super().__init__(self.muon.param_groups + (self.adamw.param_groups if self.adamw else []), {})
        self._link()

    def _link(self) -> None:
        """Let the parts work on this optimizer's group dicts and state (after init and every load)."""
        n = len(self.muon.param_groups)
        self.muon.param_groups, self.muon.state = self.param_groups[:n], self.state
        if self.adamw is not None:
            self.adamw.param_groups, self.adamw.state = self.param_groups[n:], self.state

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.muon.step()
        if self.adamw is not None:
            self.adamw.step()
        return loss

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self._link()
