"""Reading one image file of a manifest: PNG and JPEG (Pillow), ``.npy`` (numpy), NIfTI (nibabel).

Image files are untrusted data, so every reader is bounded before it allocates:

* :func:`probe` reads only the header (Pillow's lazy ``open``, the ``.npy`` header, the NIfTI
  header) and refuses an unknown suffix, a format other than the suffix says (Pillow opens
  only PNG or JPEG, never one of its other plugins), a dtype that is not a number, more than
  ``max_pixels`` values (a decompression bomb: ``data.max_pixels``; Pillow's own limit stays
  on too, its warning made an error), and a ``.npy`` / ``.nii`` whose header promises more
  bytes than the file holds;
* :func:`read` decodes the whole file (probe first, on the same open file) and returns a
  float32 array ``(channels, *spatial)``; a truncated or corrupt body is found here.

Every problem is one :class:`DataError` line that starts with the caller's label (the
manifest, its row and the path cell), e.g. ``scans.csv row 7 (img/7.png): image file is
truncated ...``. Pixel values: 8-bit images are scaled to [0, 1] (/255), 16-bit grayscale
PNGs to [0, 1] (/65535); ``.npy`` and NIfTI values are kept as stored (NIfTI's scaling
applied). Layout: PNG/JPEG ``(1 or 3, H, W)`` by ``mode`` (``L`` or ``RGB``); ``.npy``
channels first, ``(H, W)`` -> ``(1, H, W)``, ``(C, H, W)`` and ``(C, D, H, W)`` as stored;
NIfTI ``(X, Y[, Z])`` -> ``(1, X, Y[, Z])``, ``(X, Y, Z, C)`` -> ``(C, X, Y, Z)``.
"""
from __future__ import annotations

import math
import os
import stat
import warnings
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from ..errors import first_line
from ..survival.schema import DataError

#: File suffix -> reader. ``.nii.gz`` is matched before ``.gz`` would be.
FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".npy": "npy", ".nii": "nifti", ".nii.gz": "nifti"}
MODES = {"L": 1, "RGB": 3}  # data.mode -> channels of a PNG/JPEG after conversion
SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I")  # Pillow's modes of a 16-bit grayscale PNG
NPY_KINDS = "biuf"  # bool, signed, unsigned, float: numbers only (object arrays need pickle and are refused)
MAX_HEADER = 10_000  # bytes of a .npy header numpy may parse (its own default)
EXTRA = "pip install 'survopt-hydra[images]'"


def suffix_of(path: str | Path) -> str:
    name = str(path).lower()
    return ".nii.gz" if name.endswith(".nii.gz") else os.path.splitext(name)[1]


def check_suffix(label: str, path: str | Path) -> str:
    """The reader for ``path``'s suffix; DataError naming the allowed ones."""
    kind = FORMATS.get(suffix_of(path))
    if kind is None:
        raise DataError(f"{label}: unknown image format {suffix_of(path) or '(no suffix)'!r}; allowed: "
                        f"{', '.join(FORMATS)}")
    return kind


def check_regular(label: str, path: Path) -> int:
    """The size of a regular, non-empty file (symlinks already resolved by the caller)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise DataError(f"{label}: file not found: {path}") from None
    except OSError as exc:
        raise DataError(f"{label}: cannot read {path} ({exc.strerror or exc})") from None
    if not stat.S_ISREG(st.st_mode):
        raise DataError(f"{label}: {path} is not a regular file (a directory, FIFO or device)")
    if st.st_size == 0:
        raise DataError(f"{label}: {path} is empty (0 bytes)")
    return st.st_size


def _too_many(label: str, shape: tuple[int, ...], max_pixels: int) -> None:
    count = math.prod(shape)
    if count > max_pixels:
        raise DataError(f"{label}: {'x'.join(map(str, shape))} = {count:,} values is over data.max_pixels="
                        f"{max_pixels:,} (a decompression bomb?); raise data.max_pixels if the image is real")


# ------------------------------------------------------------------ PNG / JPEG (Pillow)
def _pillow():
    try:
        from PIL import Image
    except ImportError:
        raise DataError(f"PNG/JPEG images need Pillow: {EXTRA}") from None
    return Image


def _open_pillow(label: str, handle: BinaryIO, fmt: str, max_pixels: int):
    Image = _pillow()
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)  # over Pillow's limit: refuse, never decode
        try:
            image = Image.open(handle, formats=(fmt,))
        except Image.UnidentifiedImageError:
            raise DataError(f"{label}: not a {fmt} file (the suffix says {fmt}); re-export it or fix the path") from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise DataError(f"{label}: refused by Pillow's decompression-bomb limit ({first_line(exc)})") from None
    _too_many(label, (image.height, image.width), max_pixels)
    return image


def _decode_pillow(label: str, image: Any, mode: str) -> np.ndarray:
    Image = _pillow()
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        image.load()  # a truncated or corrupt body fails here (Pillow's LOAD_TRUNCATED_IMAGES stays False)
    if image.mode in SIXTEEN_BIT:
        gray = np.asarray(image, dtype=np.float32) / 65535.0
        array = gray[None] if mode == "L" else np.repeat(gray[None], 3, axis=0)
    else:
        converted = np.asarray(image.convert(mode), dtype=np.float32) / 255.0
        array = converted[None] if converted.ndim == 2 else np.moveaxis(converted, -1, 0)
    return np.ascontiguousarray(array, dtype=np.float32)


# ------------------------------------------------------------------ .npy
def _npy_header(label: str, handle: BinaryIO, size: int, max_pixels: int) -> tuple[tuple[int, ...], np.dtype]:
    from numpy.lib import format as npy

    try:
        version = npy.read_magic(handle)
        read = {(1, 0): npy.read_array_header_1_0, (2, 0): npy.read_array_header_2_0}.get(version)
        if read is None:  # (3, 0) is 2.0 with a UTF-8 header; numpy reads it with the 2.0 layout
            read = npy.read_array_header_2_0 if version == (3, 0) else None
        if read is None:
            raise ValueError(f"unsupported .npy version {version}")
        shape, _fortran, dtype = read(handle, max_header_size=MAX_HEADER)
    except (ValueError, OSError, SyntaxError, TypeError) as exc:
        raise DataError(f"{label}: not a readable .npy file ({first_line(exc)})") from None
    if dtype.hasobject or dtype.kind not in NPY_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise DataError(f"{label}: .npy dtype {dtype} is not numeric; allowed: bool, integer or float arrays")
    if not 2 <= len(shape) <= 4:
        raise DataError(f"{label}: .npy shape {shape} has {len(shape)} dimension(s); allowed: (H, W), (C, H, W) or "
                        "(C, D, H, W), channels first")
    _too_many(label, shape, max_pixels)
    need = math.prod(shape) * dtype.itemsize
    if handle.tell() + need > size:  # before allocating: the header must not promise what the file lacks
        raise DataError(f"{label}: .npy header promises {need:,} bytes of data but the file holds "
                        f"{size - handle.tell():,} (truncated)")
    return tuple(int(s) for s in shape), dtype


def _npy_layout(shape: tuple[int, ...]) -> tuple[int, ...]:
    return (1, *shape) if len(shape) == 2 else shape


# ------------------------------------------------------------------ NIfTI (nibabel)
def _nifti(label: str, path: Path, size: int, max_pixels: int):
    try:
        import nibabel
    except ImportError:
        raise DataError(f"{label}: NIfTI images need nibabel: {EXTRA}") from None
    try:
        image = nibabel.load(str(path), mmap=False)  # the header only; the voxels are read on request
    except Exception as exc:  # nibabel raises many types for a bad header
        raise DataError(f"{label}: not a readable NIfTI file ({type(exc).__name__}: {first_line(exc)})") from None
    shape = tuple(int(s) for s in image.shape)
    if not 2 <= len(shape) <= 4:
        raise DataError(f"{label}: NIfTI shape {shape}; allowed: 2 to 4 dimensions (X, Y[, Z[, channels]])")
    _too_many(label, shape, max_pixels)
    dtype = np.dtype(image.get_data_dtype())
    if dtype.kind not in NPY_KINDS:
        raise DataError(f"{label}: NIfTI data type {dtype} is not numeric")
    if suffix_of(path) == ".nii":
        offset = int(image.header.get_data_offset())
        if offset + math.prod(shape) * dtype.itemsize > size:
            raise DataError(f"{label}: NIfTI header promises {math.prod(shape) * dtype.itemsize:,} bytes of voxels "
                            f"but the file holds {max(size - offset, 0):,} (truncated)")
    return image, shape


def _nifti_layout(shape: tuple[int, ...]) -> tuple[int, ...]:
    return (shape[3], *shape[:3]) if len(shape) == 4 else (1, *shape)


# ------------------------------------------------------------------ the two entry points
def probe(label: str, path: Path, mode: str, max_pixels: int) -> tuple[int, ...]:
    """The image's shape ``(channels, *spatial)`` from its header alone; DataError when unusable."""
    kind = check_suffix(label, path)
    size = check_regular(label, path)
    if kind == "nifti":
        return _nifti_layout(_nifti(label, path, size, max_pixels)[1])
    with open(path, "rb") as handle:
        if kind == "npy":
            return _npy_layout(_npy_header(label, handle, size, max_pixels)[0])
        with _open_pillow(label, handle, kind, max_pixels) as image:
            return (MODES[mode], image.height, image.width)  # data.mode decides the channels


def read(label: str, path: Path, mode: str, max_pixels: int) -> np.ndarray:
    """The whole image as float32 ``(channels, *spatial)``; DataError naming ``label`` when unusable."""
    kind = check_suffix(label, path)
    size = check_regular(label, path)
    try:
        if kind == "nifti":
            image, shape = _nifti(label, path, size, max_pixels)
            data = np.asarray(image.dataobj, dtype=np.float32)
            data = np.moveaxis(data, -1, 0) if len(shape) == 4 else data[None]
            return np.ascontiguousarray(data)
        with open(path, "rb") as handle:
            if kind == "npy":
                from numpy.lib import format as npy

                shape, dtype = _npy_header(label, handle, os.fstat(handle.fileno()).st_size, max_pixels)
                handle.seek(0)
                array = npy.read_array(handle, allow_pickle=False, max_header_size=MAX_HEADER)
                if array.shape != shape or array.dtype != dtype:  # the file changed under us
                    raise ValueError(f"header says {shape} {dtype}, read {array.shape} {array.dtype}")
                return np.ascontiguousarray(array.reshape(_npy_layout(shape)), dtype=np.float32)
            with _open_pillow(label, handle, kind, max_pixels) as image:
                return _decode_pillow(label, image, mode)
    except DataError:
        raise
    except MemoryError:
        raise DataError(f"{label}: out of memory decoding the image; lower data.max_pixels or shrink the file") from None
    except Exception as exc:  # a truncated PNG (OSError), a bad JPEG marker, a short .npy ...
        raise DataError(f"{label}: corrupt or truncated image ({type(exc).__name__}: {first_line(exc)})") from None
