"""Weight-sparsity counting on plain tensors."""
from typing import Iterable, Tuple

import torch

NEAR_ZERO_EPS = 1e-4  # |w| below this counts as zero: the one default of every --eps / --np-eps


def count_near_zero(weights: Iterable[torch.Tensor], eps: float) -> Tuple[int, int]:
    """Entries with ``|w| < eps`` and the total number of entries over several matrices.

    Args:
        weights: tensors of any shape.
        eps: near-zero threshold.
    Returns:
        ``(near_zero, total)`` as Python ints.
    """
    near_zero = total = 0
    for weight in weights:
        near_zero += int((weight.detach().abs() < eps).sum())
        total += weight.numel()
    return near_zero, total


def count_zero(weights: Iterable[torch.Tensor]) -> Tuple[int, int]:
    """Entries exactly equal to zero and the total number of entries over several matrices.

    Args:
        weights: tensors of any shape.
    Returns:
        ``(zero, total)`` as Python ints.
    """
    zero = total = 0
    for weight in weights:
        zero += int((weight.detach() == 0).sum())
        total += weight.numel()
    return zero, total


def zero_below(weight: torch.Tensor, tau: float) -> torch.Tensor:
    """A copy of ``weight`` in which every entry with ``|w| < tau`` is exactly zero (the others unchanged).

    Args:
        weight: a tensor of any shape.
        tau: magnitude threshold, >= 0 (0 changes nothing).
    Returns:
        A new tensor of ``weight``'s shape and dtype.
    """
    if not tau >= 0:
        raise ValueError(f"the zeroing threshold must be >= 0, got {tau}")
    return torch.where(weight.abs() < tau, torch.zeros_like(weight), weight)
