"""Input checks shared by the preprocessing ops: one-line errors that name the problem."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from functools import lru_cache

import torch
from torch import Tensor


def check_images(images: object, *, channels: int | None = None, name: str = "images") -> None:
    """Check that ``images`` is a float (B, C, H, W) tensor, with ``channels`` channels if given.

    Raises:
        TypeError: not a tensor, or not a floating-point tensor.
        ValueError: not 4-D, or the wrong number of channels.

    Example:
        >>> check_images(torch.rand(2, 3, 8, 8), channels=3)
    """
    if not isinstance(images, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(images).__name__}")
    if images.ndim != 4:
        raise ValueError(f"{name} must have shape (B, C, H, W), got {tuple(images.shape)}")
    if channels is not None and images.shape[1] != channels:
        raise ValueError(f"{name} must have {channels} channels, got shape {tuple(images.shape)}")
    if not images.is_floating_point():
        raise TypeError(
            f"{name} must be a floating-point tensor in [0, 1], got {images.dtype}; "
            "convert it first, e.g. images.float() / 255"
        )


def per_sample(
    value: int | Tensor,
    batch_size: int,
    *,
    name: str,
    minimum: int = 1,
    odd: bool = False,
    device: torch.device | str | None = None,
    check: bool = True,
) -> Tensor:
    """Validate an int or a per-sample (B,) integer tensor and return it as a (B,) int64 tensor.

    Args:
        value: one int for the whole batch, or a (B,) (or 0-d) integer tensor, one per sample.
        batch_size: B.
        name: the parameter's name, for error messages.
        minimum: smallest allowed value.
        odd: whether every value must be odd.
        device: where the returned tensor lives.
        check: check the values (``minimum``, ``odd``); False for values known to be valid
            (drawn in range): checking a device tensor's values reads them back to the host.

    Returns:
        (B,) int64 tensor on ``device``.

    Raises:
        TypeError: neither an int nor an integer tensor.
        ValueError: wrong length, below ``minimum``, or even where ``odd``.

    Example:
        >>> per_sample(3, 2, name="kernel_size", odd=True)
        tensor([3, 3])
    """
    if isinstance(value, Tensor):
        if value.is_floating_point() or value.is_complex() or value.dtype == torch.bool:
            raise TypeError(f"{name} must be an int or an integer tensor, got {value.dtype}")
        if value.ndim > 1 or (value.ndim == 1 and value.shape[0] != batch_size):
            raise ValueError(
                f"{name} must be an int or a tensor of shape ({batch_size},) "
                f"(one per sample), got shape {tuple(value.shape)}"
            )
        values = value.to(torch.int64).reshape(-1)
    elif isinstance(value, int) and not isinstance(value, bool):
        values = torch.tensor([value], dtype=torch.int64)  # checked once, even for B = 0
    else:
        raise TypeError(f"{name} must be an int or an integer tensor, got {type(value).__name__}")
    if not check:
        return values.to(device).expand(batch_size).contiguous()
    if values.numel() and bool((values < minimum).any()):
        raise ValueError(f"{name} must be >= {minimum}, got {_show(values)}")
    if odd and values.numel() and bool((values % 2 == 0).any()):
        raise ValueError(f"{name} must be odd, got {_show(values)}")
    return values.to(device).expand(batch_size).contiguous()


def _show(values: Tensor) -> str:
    """The values of a small tensor for an error message (an int when all are equal)."""
    unique = values.unique().tolist()
    return str(unique[0]) if len(unique) == 1 else str(values.tolist())


@contextmanager
def exact_matmul(device_type: str) -> Iterator[None]:
    """Full float32 matmuls (no TF32, no autocast) inside: edges sit on thresholds of the
    smoothed image and K-means assignments on distance comparisons."""
    # the precision is process-wide: flipped only when it is not the default already, and then
    # under a lock, so that inputs made in a thread (data.preprocess_on=ahead) put back what
    # they found
    flip = torch.get_float32_matmul_precision() != "highest"
    with _PRECISION_LOCK if flip else nullcontext():
        previous = torch.get_float32_matmul_precision()
        torch.set_float32_matmul_precision("highest")
        try:
            with torch.autocast(device_type, enabled=False):
                yield
        finally:
            torch.set_float32_matmul_precision(previous)


_PRECISION_LOCK = threading.Lock()


@lru_cache(maxsize=64)
def constant(values: tuple[float, ...], dtype: torch.dtype, device: torch.device | str) -> Tensor:
    """A small constant tensor on ``device``, copied there once per process.

    Copying a tensor from pageable host memory to a GPU waits for the stream (a host sync), so
    per-batch constants are made once and reused. Callers must not modify the result.

    >>> constant((1, 3, 5), torch.int64, "cpu")
    tensor([1, 3, 5])
    """
    return torch.tensor(values, dtype=dtype, device=device)
