"""Durable writes and RNG snapshots shared by the app's and the distributed checkpoints.

One implementation of "never a torn file" (temp file, fsync, rename, directory fsync)
and of a ``torch.load(weights_only=True)``-safe RNG snapshot, so the single-process and
the distributed checkpoint paths cannot drift apart.

Writes never follow a symbolic link: a run dir's contents are untrusted, and a link named
``metrics.json`` or ``monitors.csv`` would otherwise truncate or append to a file elsewhere.
:func:`write_atomic` refuses a link at the final name (its temporary file is created with
``O_EXCL | O_NOFOLLOW``, the rename replaces a name, never a link's target); files appended or
truncated in place are opened with ``O_NOFOLLOW`` (:func:`nofollow_opener`,
:func:`truncate_file`). A refused link is an ``OSError`` (``ELOOP``) naming the file, one line.

Modes: results are created ``0o666`` less the process umask, like any other tool's output
(``0644`` under the usual umask 022), so colleagues on a shared server can read them;
checkpoints pass ``mode=0o600`` (:func:`save_atomic`): they hold the whole training state
and stay private to their owner.
"""
from __future__ import annotations

import errno
import io
import math
import os
import random
import secrets
from pathlib import Path
from typing import Any, Callable

#: ``O_NOFOLLOW`` where the platform has it (not Windows, which has no symlink-following opens here).
O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
#: Mode of results (metrics, predictor.json, CSVs); the umask applies. Checkpoints: :data:`PRIVATE`.
SHARED = 0o666
PRIVATE = 0o600



def _stale_temps(path: Path) -> list[Path]:
    return list(path.parent.glob(f".{path.name}.*.tmp"))


def link_error(path: str | os.PathLike) -> OSError:
    """The one-line error for a symbolic link where a file is to be written."""
    return OSError(errno.ELOOP, "a symbolic link; files are never written through a link (move it away)", str(path))


def refuse_link(path: str | os.PathLike) -> None:
    """OSError (``ELOOP``) when ``path`` is a symbolic link (dangling or not)."""
    if os.path.islink(path):
        raise link_error(path)


def nofollow_opener(path: str | os.PathLike, flags: int) -> int:
    """``open(path, mode, opener=nofollow_opener)``: like the default opener, but a link at ``path`` is
    refused (:func:`link_error`) instead of followed; new files get :data:`SHARED` less the umask."""
    try:
        return os.open(path, flags | O_NOFOLLOW, SHARED)
    except OSError as exc:
        if exc.errno == errno.ELOOP or (O_NOFOLLOW and os.path.islink(path)):
            raise link_error(path) from None
        raise


def truncate_file(path: str | os.PathLike, size: int) -> None:
    """Cut ``path`` to at most ``size`` bytes in place (never longer: a size beyond the end changes
    nothing), without following a link; a missing file is left missing."""
    try:
        fd = nofollow_opener(path, os.O_RDWR)
    except FileNotFoundError:
        return
    try:
        if os.fstat(fd).st_size > size:
            os.ftruncate(fd, max(0, int(size)))
    finally:
        os.close(fd)


def _create_temp(path: Path, mode: int) -> tuple[int, Path]:
    """A new, exclusive temporary file beside ``path`` (``O_EXCL | O_NOFOLLOW``, ``mode`` less the umask)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            return os.open(tmp, flags, mode), tmp
        except FileExistsError:
            continue
    raise OSError(errno.EEXIST, "no free temporary name", str(path))


def open_temp(path: str | os.PathLike, mode: int = SHARED) -> tuple[int, Path]:
    """``(fd, temp path)`` for a file that will be renamed to ``path`` (refused when ``path`` is a link);
    the caller writes, then ``os.replace(temp, path)``, and removes the temp file on failure."""
    path = Path(path)
    refuse_link(path)
    try:
        return _create_temp(path, mode)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(path)) from None


def save_atomic(obj: Any, path: str | os.PathLike, before_replace: Callable[[Path], None] | None = None,
                mode: int = PRIVATE) -> None:
    """``torch.save(obj, path)`` such that ``path`` is never left half-written; private (0600) by default.

    ``before_replace(tmp)`` runs once the temporary file is complete and durable, just
    before it is renamed over ``path`` (:func:`save_checkpoint` rotates there).
    """
    import torch

    buffer = io.BytesIO()  # serialize first: torch's zip writer turns a full disk into an opaque RuntimeError
    torch.save(obj, buffer)
    write_atomic(buffer.getbuffer(), path, before_replace=before_replace, mode=mode)


def write_text_atomic(text: str, path: str | os.PathLike, durable: bool = True, mode: int = SHARED) -> None:
    """:func:`write_atomic` for small text files (CSV, JSON), UTF-8.

    ``durable=False`` skips the fsyncs: the file is still never torn by a killed
    process (``os.replace`` is atomic), only a power loss may lose the last write -
    right for logs rewritten every epoch from state that ``last.pt`` already holds.
    """
    write_atomic(text.encode("utf-8"), path, durable=durable, mode=mode)


def write_atomic(data: bytes | memoryview, path: str | os.PathLike, durable: bool = True,
                 before_replace: Callable[[Path], None] | None = None, mode: int = SHARED) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same directory and a rename,
    so a killed process never leaves a torn ``path``; ``durable``: fsync the file and the
    directory too (a power loss keeps the old or the new file). An I/O error (a full disk)
    names ``path`` and leaves the old file untouched; a link at ``path`` is refused
    (:func:`refuse_link`). ``mode`` less the umask is the new file's mode."""
    path = Path(path)
    refuse_link(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in _stale_temps(path):  # left by a process killed mid-write
        stale.unlink(missing_ok=True)
    fd, tmp = open_temp(path, mode)
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
    import numpy as np
    import torch

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


def rng_problem(state: Any) -> str | None:
    """Why ``state`` (read from a file) is not what :func:`rng_state` writes, or None: the torch state a
    uint8 vector of this torch's length, numpy's MT19937 624 keys in [0, 2**32) with ``pos`` in
    0..624, Python's version-3 state of 625 words, finite floats, CUDA states uint8 vectors."""
    import torch

    if not isinstance(state, dict) or not {"torch", "numpy", "python"} <= set(state):
        return "not an RNG state (needs torch, numpy and python entries)"
    t = state["torch"]
    want = torch.get_rng_state()
    if not isinstance(t, torch.Tensor) or t.dtype != torch.uint8 or t.shape != want.shape:
        return f"torch: expected a uint8 tensor of shape {tuple(want.shape)}"
    n = state["numpy"]
    if not isinstance(n, dict) or n.get("kind") != "MT19937":
        return "numpy: expected an MT19937 state"
    keys = n.get("keys")
    if not isinstance(keys, torch.Tensor) or keys.dtype != torch.int64 or tuple(keys.shape) != (624,) \
            or bool(((keys < 0) | (keys >= 2**32)).any()):
        return "numpy.keys: expected 624 int64 values in [0, 2**32)"
    pos, gauss, cached = n.get("pos"), n.get("has_gauss"), n.get("cached_gaussian")
    if type(pos) is not int or not 0 <= pos <= 624 or gauss not in (0, 1) or type(gauss) is not int \
            or not isinstance(cached, float) or not math.isfinite(cached):
        return "numpy: pos must be an int in 0..624, has_gauss 0 or 1, cached_gaussian a finite float"
    py = state["python"]
    if not isinstance(py, (tuple, list)) or len(py) != 3 or py[0] != random.getstate()[0] \
            or not isinstance(py[1], (tuple, list)) or len(py[1]) != 625 \
            or not all(type(w) is int and 0 <= w < 2**32 for w in py[1]) or py[1][-1] > 624 \
            or not (py[2] is None or (isinstance(py[2], float) and math.isfinite(py[2]))):
        return "python: expected random.getstate()'s version-3 state of 625 words"
    cuda = state.get("cuda")
    if cuda is not None and (not isinstance(cuda, (list, tuple)) or len(cuda) > 4096 or not all(
            isinstance(c, torch.Tensor) and c.dtype == torch.uint8 and c.dim() == 1 and c.numel() <= 64 for c in cuda)):
        return "cuda: expected a list of small uint8 tensors, one per device"
    return None


def set_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`rng_state`; ValueError (one line) for a state it did not write."""
    import numpy as np
    import torch

    problem = rng_problem(state)
    if problem:
        raise ValueError(f"RNG state: {problem}")
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state((n["kind"], keys, n["pos"], n["has_gauss"], n["cached_gaussian"]))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
