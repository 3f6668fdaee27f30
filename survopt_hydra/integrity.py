"""What makes a torch file safe to use: bounded reading, then checksums that tell a damaged file.

**Reading** (:func:`load_torch_file`): every torch file the package opens (``last.pt``,
``best.pt``, the distributed checkpoint, a pretrained backbone) is untrusted data, whoever
wrote it. Before ``torch.load`` the zip archive's members are checked against a byte budget
(the file's own size, or what the expected model justifies), so a few MB that inflate to GB
are refused before they are inflated; legacy (non-zip) files, whose headers ask for storage
before it is read, are refused. ``torch.load(weights_only=True)`` then never runs code, and
:func:`check_payload` refuses what a small pickle can describe but the file does not hold:
expanded (stride-0) or otherwise non-contiguous tensors (``torch.zeros(1).expand(10**6,
10**6)`` is 30 KB on disk and 4 TB once made contiguous), storage shared by overlapping
views, sparse or quantized layouts, and containers referenced over and over. All this
inspects metadata only; nothing is allocated.

**Checksums**: one implementation for every checkpoint format in the package (the app's ``last.pt`` and
``best.pt``, the distributed checkpoint), so "verified" means the same thing everywhere: a
SHA-256 over a canonical form of the saved state (:func:`checksum`, stored under
:data:`CHECKSUM_KEY`) and a SHA-256 of a file's bytes (:func:`file_sha256`, for files another
library writes, such as DCP shards).

The canonical form is the state's plain data as compact JSON (the C encoder: ~10x faster than
walking a run's logs in Python, which made every checkpoint of a long run slower than saving
it) followed by every tensor's dtype, shape and bytes in order. Checksums written before it
(a Python walk, no ``j1:`` prefix) still verify.
"""
from __future__ import annotations

import hashlib
import json
import os
import zipfile
from typing import Any, Mapping

import torch

CHECKSUM_KEY = "checksum"
_JSON = "j1:"  # the prefix of checksums over the JSON form

#: Nesting deeper than this is no checkpoint the package writes (a pickle bomb of nested lists).
MAX_DEPTH = 64
#: Zip members: a checkpoint has ~10 plus one per storage; far more is a crafted archive.
MAX_MEMBERS = 1_000_000
#: Tensor dtypes a checkpoint may hold (weights, optimizer state, counters, RNG bytes).
TENSOR_DTYPES = frozenset({torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.uint8, torch.int8,
                           torch.int16, torch.int32, torch.int64, torch.bool})


class UntrustedFileError(ValueError):
    """A torch file that does not justify what it asks for (one line, naming the file)."""


class NotTorchZipError(UntrustedFileError):
    """Not a zip archive at all: random bytes, a truncated file, a legacy (pre-1.6) torch file."""


def check_zip(path: str | os.PathLike, budget: int) -> int:
    """Refuse ``path`` unless it is a zip archive (torch.save's format) whose members declare at most
    ``budget`` bytes uncompressed in all; returns the file size. Reads the central directory only."""
    size = os.stat(path).st_size
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise NotTorchZipError(f"{path}: not a torch zip archive ({size} bytes; {type(exc).__name__}); legacy "
                                 "(pre-1.6) or foreign files are not read") from None
    if len(members) > MAX_MEMBERS:
        raise UntrustedFileError(f"{path}: {len(members)} zip members; not a torch file")
    declared = sum(m.file_size for m in members)
    if declared > budget:
        raise UntrustedFileError(
            f"{path}: its zip members declare {declared} bytes uncompressed in a {size}-byte file, more than the "
            f"{budget} bytes it may hold (a decompression bomb?); refused before inflating it")
    return size


def check_payload(obj: Any, budget: int, where: Any = "") -> None:
    """Refuse a loaded torch payload that holds more than ``budget`` bytes of tensors or pickle nodes,
    a non-contiguous (expanded, overlapping) or non-strided tensor, or nesting deeper than
    :data:`MAX_DEPTH`. Every reference is counted where it occurs, so one tensor or container
    referenced many times counts many times: the checksum and any later copy then stay within what the
    file holds. Metadata only: no tensor data is read."""
    tensor_bytes = nodes = text = 0
    stack: list[tuple[Any, int]] = [(obj, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise UntrustedFileError(f"{where}: nested deeper than {MAX_DEPTH} levels; not a checkpoint")
        children = item.items() if isinstance(item, dict) else item if isinstance(item, (list, tuple)) else None
        if children is None:
            nodes += 1
            if isinstance(item, torch.Tensor):
                tensor_bytes += _tensor_bytes(item, where)
            elif isinstance(item, (str, bytes)):
                text += len(item)
            elif isinstance(item, Mapping):  # a Mapping that is no dict (rare): walked like one
                stack.append((dict(item), depth))
            continue
        nodes += 1
        for child in children:
            if isinstance(item, dict):  # (key, value): both count
                nodes += 1
                stack.extend(((child[0], depth + 1), (child[1], depth + 1)))
            elif type(child) in _SCALARS:  # numbers, flags, None: counted here, nothing to walk
                nodes += 1
            else:
                stack.append((child, depth + 1))
        if tensor_bytes > budget or nodes + text > budget:
            break
    if tensor_bytes > budget or nodes + text > budget:
        raise UntrustedFileError(
            f"{where}: its tensors and values add up to more than the {budget} bytes the file justifies (a "
            "tensor or container referenced over and over?); refused")


_SCALARS = frozenset({int, float, bool, type(None)})


def _tensor_bytes(item: torch.Tensor, where: Any) -> int:
    if item.layout != torch.strided or item.is_quantized or item.dtype not in TENSOR_DTYPES:
        raise UntrustedFileError(f"{where}: holds a {item.layout} {item.dtype} tensor; only dense tensors of "
                                 "plain number types are read")
    if not item.is_contiguous():
        raise UntrustedFileError(
            f"{where}: holds a non-contiguous tensor of shape {tuple(item.shape)} with strides "
            f"{tuple(item.stride())} (an expanded or overlapping view); refused without copying it")
    return item.numel() * item.element_size()


def load_torch_file(path: str | os.PathLike, budget: int | None = None, mmap: bool = False) -> Any:
    """``torch.load(path, weights_only=True)`` onto the CPU, bounded (see the module docstring).

    ``budget``: the bytes the file may declare uncompressed and hold in tensors (default: twice the
    file's size, room for the few tensors a checkpoint references twice, such as its RNG state).
    Raises :class:`UntrustedFileError` for a file refused before or after loading; torch's own
    errors (a truncated archive, a pickled object) pass through for the caller to word."""
    size = os.stat(path).st_size
    budget = 2 * size + (1 << 16) if budget is None else budget
    check_zip(path, budget)
    obj = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    check_payload(obj, budget, path)
    return obj


def _digest(obj: Any, h: Any) -> None:
    """Feed a canonical form of nested dicts/lists/tensors/scalars into ``h``."""
    if isinstance(obj, torch.Tensor):
        _feed_tensor(obj, h)
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


def _feed_tensor(t: torch.Tensor, h: Any) -> None:
    t = t.detach().to("cpu").contiguous()
    h.update(f"T{t.dtype}{tuple(t.shape)}:".encode())
    h.update(t.reshape(-1).view(torch.uint8).numpy())


def _json_digest(payload: Mapping[str, Any]) -> str | None:
    """``j1:`` + SHA-256 of the JSON form; None when the state has keys JSON cannot hold."""
    tensors: list[torch.Tensor] = []

    def encode(obj: Any) -> str:
        if isinstance(obj, torch.Tensor):
            tensors.append(obj)
            return f"<T{len(tensors) - 1}>"
        return f"<{type(obj).__name__}:{obj!r}>"

    try:
        text = json.dumps(payload, default=encode, check_circular=False, separators=(",", ":"))
    except TypeError:  # e.g. a tuple as a dict key
        return None
    h = hashlib.sha256(text.encode("utf-8"))
    for t in tensors:
        _feed_tensor(t, h)
    return _JSON + h.hexdigest()


def _walk_digest(payload: Mapping[str, Any]) -> str:
    h = hashlib.sha256()
    _digest(payload, h)
    return h.hexdigest()


def checksum(state: Mapping[str, Any]) -> str:
    """SHA-256 of everything in ``state`` but its own ``checksum`` entry."""
    payload = {k: v for k, v in state.items() if k != CHECKSUM_KEY}
    return _json_digest(payload) or _walk_digest(payload)


def matches(state: Mapping[str, Any], recorded: str) -> bool:
    """Whether ``recorded`` (a checksum read from a file) is ``state``'s, in either form."""
    payload = {k: v for k, v in state.items() if k != CHECKSUM_KEY}
    if str(recorded).startswith(_JSON):
        return _json_digest(payload) == recorded
    return _walk_digest(payload) == recorded


def with_checksum(state: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``state`` carrying its checksum, ready to save."""
    payload = dict(state)
    payload[CHECKSUM_KEY] = checksum(payload)
    return payload


def intact(state: Mapping[str, Any]) -> bool:
    """True when ``state`` carries a checksum that matches its content."""
    return CHECKSUM_KEY in state and matches(state, state[CHECKSUM_KEY])


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
