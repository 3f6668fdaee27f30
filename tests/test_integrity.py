"""integrity.checksum: the JSON form detects every kind of change; older (walk) checksums still verify."""
from __future__ import annotations

import math

import pytest
import torch

from survopt_hydra import integrity
from survopt_hydra.integrity import CHECKSUM_KEY, checksum, intact, matches, with_checksum


def _state() -> dict:
    gen = torch.Generator().manual_seed(0)
    return {"model": {"w": torch.randn(3, 2, generator=gen), "b": torch.zeros(2, dtype=torch.float16)},
            "progress": {"epoch": 4, "history": [{"epoch": 1, "val": 0.61, "loss": math.nan}], "done": False},
            "rng": {"python": (3, tuple(range(5)), None)}, "opt": {"state": {0: {"step": torch.tensor(3.0)}}}}


@pytest.mark.parametrize("change", [
    lambda s: s["model"]["w"].view(-1)[0].add_(1e-6),                       # one tensor element
    lambda s: s["model"].__setitem__("b", s["model"]["b"].float()),         # a dtype
    lambda s: s["model"].__setitem__("w", s["model"]["w"].reshape(2, 3)),   # a shape, same bytes
    lambda s: s["progress"]["history"][0].__setitem__("val", 0.61 + 1e-15),  # a float's last bit
    lambda s: s["progress"].__setitem__("done", 0),                          # bool -> int
    lambda s: s["progress"].__setitem__("extra", None),                      # a new key
    lambda s: s["opt"]["state"][0].__setitem__("step", torch.tensor(4.0)),
])
def test_json_checksum_detects_each_kind_of_change(change) -> None:
    state = with_checksum(_state())
    assert state[CHECKSUM_KEY].startswith("j1:") and intact(state)
    change(state)
    assert not intact(state)


def test_checksums_in_the_older_walk_form_still_verify() -> None:
    state = _state()
    legacy = integrity._walk_digest(state)
    assert not legacy.startswith("j1:") and matches(state, legacy) and intact({**state, CHECKSUM_KEY: legacy})
    state["progress"]["epoch"] = 5
    assert not matches(state, legacy)


def test_keys_json_cannot_hold_fall_back_to_the_walk() -> None:
    state = {"pairs": {(1, 2): torch.ones(2)}}
    assert not checksum(state).startswith("j1:") and intact(with_checksum(state))
