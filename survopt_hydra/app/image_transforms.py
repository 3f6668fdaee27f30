"""Built-in image transforms for ``data.transform`` / ``data.augment``, for when torchvision is absent.

Each is a small callable on one float32 tensor ``(channels, *spatial)`` (2-D images or 3-D
volumes), the layout :mod:`.image_files` reads and torchvision.transforms.v2 takes too, so a
list may mix them with torchvision's (``_target_: torchvision.transforms.v2.RandomRotation``)
or MONAI's array transforms. The random ones draw from torch's global RNG, which the image
dataset seeds per (trainer.seed, epoch, manifest row): an augmented epoch is the same with 0
or 8 workers and after a resume. Their names are the app's own, so ``survopt-predict`` rebuilds
them from ``predictor.json`` without ``--trust`` (docs/images.md).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def _size(size: int | Sequence[int], name: str) -> tuple[int, ...]:
    sizes = (int(size),) if isinstance(size, (int, float)) else tuple(int(s) for s in size)
    if not sizes or any(s < 1 for s in sizes):
        raise ValueError(f"{name}: size must be one or more integers >= 1, got {size!r}")
    return sizes


def _spatial(x: Tensor, sizes: tuple[int, ...], name: str) -> tuple[int, ...]:
    """``sizes`` for each spatial dim of ``x`` (one value: all of them)."""
    if x.dim() < 3:
        raise ValueError(f"{name}: expected (channels, *spatial), got shape {tuple(x.shape)}")
    dims = x.dim() - 1
    if len(sizes) == 1:
        return sizes * dims
    if len(sizes) != dims:
        raise ValueError(f"{name}: size {list(sizes)} for an image of {dims} spatial dims {tuple(x.shape[1:])}")
    return sizes


class Resize:
    """Resize to ``size`` (one value for every spatial dim, or one per dim): bilinear for 2-D
    (antialiased when shrinking, as torchvision does), trilinear for 3-D volumes."""

    def __init__(self, size: int | Sequence[int]) -> None:
        self.size = _size(size, "Resize")

    def __call__(self, x: Tensor) -> Tensor:
        size = _spatial(x, self.size, "Resize")
        if tuple(x.shape[1:]) == size:
            return x
        mode = "bilinear" if len(size) == 2 else "trilinear" if len(size) == 3 else "linear"
        return F.interpolate(x[None], size=size, mode=mode, align_corners=False,
                             antialias=mode == "bilinear")[0]

    def __repr__(self) -> str:
        return f"Resize(size={list(self.size)})"


def _crop(x: Tensor, size: tuple[int, ...], starts: Sequence[int]) -> Tensor:
    index = (slice(None), *(slice(s, s + n) for s, n in zip(starts, size)))
    return x[index]


class CenterCrop:
    """The central ``size`` region (an image smaller than ``size`` is refused)."""

    def __init__(self, size: int | Sequence[int]) -> None:
        self.size = _size(size, "CenterCrop")

    def __call__(self, x: Tensor) -> Tensor:
        size = _spatial(x, self.size, "CenterCrop")
        if any(n > d for n, d in zip(size, x.shape[1:])):
            raise ValueError(f"CenterCrop: size {list(size)} is larger than the image {tuple(x.shape[1:])}")
        return _crop(x, size, [(d - n) // 2 for n, d in zip(size, x.shape[1:])])


class Normalize:
    """``(x - mean) / std`` per channel; one value applies to every channel."""

    def __init__(self, mean: float | Sequence[float], std: float | Sequence[float]) -> None:
        self.mean = torch.tensor([mean] if isinstance(mean, (int, float)) else list(mean), dtype=torch.float32)
        self.std = torch.tensor([std] if isinstance(std, (int, float)) else list(std), dtype=torch.float32)
        if self.mean.numel() == 0 or self.std.numel() == 0 or not bool((self.std > 0).all()):
            raise ValueError(f"Normalize: needs a mean and a std > 0 (one value, or one per channel), got "
                             f"mean={mean!r}, std={std!r}")

    def __call__(self, x: Tensor) -> Tensor:
        channels = x.shape[0]
        for name, value in (("mean", self.mean), ("std", self.std)):
            if value.numel() not in (1, channels):
                raise ValueError(f"Normalize: {value.numel()} {name} values for an image of {channels} channel(s)")
        view = (-1,) + (1,) * (x.dim() - 1)
        return (x - self.mean.view(view)) / self.std.view(view)


class RandomFlip:
    """Flip along each of ``dims`` (spatial dims counted from the end: -1 = width) with probability ``p``."""

    def __init__(self, p: float = 0.5, dims: Sequence[int] = (-1,)) -> None:
        if not 0.0 <= float(p) <= 1.0:
            raise ValueError(f"RandomFlip: p must be in [0, 1], got {p!r}")
        self.p, self.dims = float(p), [int(d) for d in dims]
        if not self.dims or any(d >= 0 for d in self.dims):
            raise ValueError(f"RandomFlip: dims must be negative spatial dims (-1 = width, -2 = height), got {dims!r}")

    def __call__(self, x: Tensor) -> Tensor:
        if any(-d >= x.dim() for d in self.dims):
            raise ValueError(f"RandomFlip: dims {self.dims} for an image of shape {tuple(x.shape)}")
        flips = [d for d in self.dims if float(torch.rand(())) < self.p]  # one draw per dim, always
        return x.flip(flips) if flips else x


class RandomCrop:
    """A random ``size`` region, after zero-padding every spatial side by ``padding``."""

    def __init__(self, size: int | Sequence[int], padding: int = 0) -> None:
        self.size, self.padding = _size(size, "RandomCrop"), int(padding)
        if self.padding < 0:
            raise ValueError(f"RandomCrop: padding must be >= 0, got {padding!r}")

    def __call__(self, x: Tensor) -> Tensor:
        size = _spatial(x, self.size, "RandomCrop")
        if self.padding:
            x = F.pad(x, [self.padding] * (2 * (x.dim() - 1)))
        if any(n > d for n, d in zip(size, x.shape[1:])):
            raise ValueError(f"RandomCrop: size {list(size)} is larger than the padded image {tuple(x.shape[1:])}")
        starts = [int(torch.randint(d - n + 1, ())) for n, d in zip(size, x.shape[1:])]
        return _crop(x, size, starts)


#: The app's own transforms by their dotted path: the only ``_target_`` names ``survopt-predict``
#: rebuilds from an artifact without ``--trust`` (looked up here, never imported by name).
BUILTIN: dict[str, type] = {f"{cls.__module__}.{cls.__qualname__}": cls
                            for cls in (Resize, CenterCrop, Normalize, RandomFlip, RandomCrop)}
