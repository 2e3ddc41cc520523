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
