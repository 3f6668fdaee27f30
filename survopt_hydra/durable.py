"""Durable writes and RNG snapshots shared by the app's and the distributed checkpoints.

One implementation of "never a torn file" (temp file, fsync, rename, directory fsync)
and of a ``torch.load(weights_only=True)``-safe RNG snapshot, so the single-process and
the distributed checkpoint paths cannot drift apart.
"""
from __future__ import annotations

import io
import os
import random
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch


def _stale_temps(path: Path) -> list[Path]:
    return list(path.parent.glob(f".{path.name}.*.tmp"))


def save_atomic(obj: Any, path: str | os.PathLike, before_replace: Callable[[Path], None] | None = None) -> None:
    """``torch.save(obj, path)`` such that ``path`` is never left half-written.

    ``before_replace(tmp)`` runs once the temporary file is complete and durable, just
    before it is renamed over ``path`` (:func:`save_checkpoint` rotates there).
    """
    buffer = io.BytesIO()  # serialize first: torch's zip writer turns a full disk into an opaque RuntimeError
    torch.save(obj, buffer)
    write_atomic(buffer.getbuffer(), path, before_replace=before_replace)


def write_text_atomic(text: str, path: str | os.PathLike, durable: bool = True) -> None:
    """:func:`write_atomic` for small text files (CSV, JSON), UTF-8.

    ``durable=False`` skips the fsyncs: the file is still never torn by a killed
    process (``os.replace`` is atomic), only a power loss may lose the last write -
    right for logs rewritten every epoch from state that ``last.pt`` already holds.
    """
    write_atomic(text.encode("utf-8"), path, durable=durable)


def write_atomic(data: bytes | memoryview, path: str | os.PathLike, durable: bool = True,
                 before_replace: Callable[[Path], None] | None = None) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same directory and a rename,
    so a killed process never leaves a torn ``path``; ``durable``: fsync the file and the
    directory too (a power loss keeps the old or the new file). An I/O error (a full disk)
    names ``path`` and leaves the old file untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in _stale_temps(path):  # left by a process killed mid-write
        stale.unlink(missing_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    try:
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                if durable:
                    os.fsync(handle.fileno())
        except OSError as exc:  # ENOSPC, EDQUOT, EIO: name the file, the old one stays untouched
            raise OSError(exc.errno, exc.strerror, str(path)) from None
        if before_replace is not None:
            before_replace(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(path.parent)


def fsync_dir(directory: str | os.PathLike) -> None:
    """Make a rename durable; a no-op where directories cannot be opened (Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def rng_state() -> dict[str, Any]:
    """Torch (CPU and CUDA), numpy and Python RNG states, in a ``weights_only``-safe form."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state((n["kind"], keys, n["pos"], n["has_gauss"], n["cached_gaussian"]))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
