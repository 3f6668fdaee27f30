"""Checksums that tell a checkpoint damaged after it was written from a good one.

One implementation for every checkpoint format in the package (the distributed
checkpoint here; the app's ``last.pt`` is meant to use it too), so "verified" means
the same thing everywhere: a SHA-256 over a canonical walk of the saved state
(:func:`checksum`, stored under :data:`CHECKSUM_KEY`) and a SHA-256 of a file's bytes
(:func:`file_sha256`, for files another library writes, such as DCP shards).
"""
from __future__ import annotations

import hashlib
import os
from typing import Any, Mapping

import torch

CHECKSUM_KEY = "checksum"


def _digest(obj: Any, h: Any) -> None:
    """Feed a canonical form of nested dicts/lists/tensors/scalars into ``h``."""
    if isinstance(obj, torch.Tensor):
        t = obj.detach().to("cpu").contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}:".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())
    elif isinstance(obj, Mapping):
        h.update(b"{")
        for key, value in obj.items():
            _digest(key, h)
            _digest(value, h)
        h.update(b"}")
    elif isinstance(obj, (list, tuple)):
        h.update(b"[" if isinstance(obj, list) else b"(")
        for value in obj:
            _digest(value, h)
        h.update(b"]")
    else:
        h.update(f"{type(obj).__name__}:{obj!r};".encode())


def checksum(state: Mapping[str, Any]) -> str:
    """SHA-256 of everything in ``state`` but its own ``checksum`` entry."""
    h = hashlib.sha256()
    _digest({k: v for k, v in state.items() if k != CHECKSUM_KEY}, h)
    return h.hexdigest()


def with_checksum(state: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``state`` carrying its checksum, ready to save."""
    payload = dict(state)
    payload[CHECKSUM_KEY] = checksum(payload)
    return payload


def intact(state: Mapping[str, Any]) -> bool:
    """True when ``state`` carries a checksum that matches its content."""
    return CHECKSUM_KEY in state and checksum(state) == state[CHECKSUM_KEY]


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
