"""Differentiable Subset Pruning (Li, Cotterell and Sachan, TACL 2021) on plain tensors.

Each head has a learnable logit. During training a Gumbel soft top-K turns the logits into a relaxed
K-hot mask that scales the heads' outputs; the relaxation is the iterated softmax of Xie and Ermon
(2019, "Reparameterizable subset sampling via continuous relaxations"), which DSP builds on: K rounds of
``softmax(r / tau)``, each round damping what was already taken by ``log(1 - p)``. The rounds sum to
exactly K, and as the temperature falls the mask tends to the hard top-K of the perturbed logits.
"""
import math
from typing import Optional

import torch

TINY = torch.finfo(torch.float32).tiny


def gumbel_noise(shape, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Standard Gumbel samples ``-log(-log U)`` (float32, CPU) from ``generator``."""
    uniform = torch.rand(shape, generator=generator).clamp(TINY, 1.0 - 1e-7)
    return -torch.log(-torch.log(uniform))


def soft_top_k(scores: torch.Tensor, k: int, tau: float) -> torch.Tensor:
    """Relaxed K-hot vector of ``scores`` at temperature ``tau``.

    Args:
        scores: (..., N) perturbed logits; the relaxation runs over the last dimension.
        k: heads to keep, 1 <= k <= N; k == N gives exactly ones (nothing to choose).
        tau: temperature > 0; lower is closer to the hard top-K.
    Returns:
        (..., N) non-negative float32 values summing to ``k`` along the last dimension (an entry can
        slightly exceed 1 at moderate temperatures; all tend to 0 or 1 as ``tau`` falls).
    """
    n = scores.shape[-1]
    if not 1 <= k <= n:
        raise ValueError(f"soft top-k needs 1 <= k <= {n}, got {k}")
    if tau <= 0:
        raise ValueError(f"temperature must be > 0, got {tau}")
    if k == n:
        return torch.ones_like(scores, dtype=torch.float32)
    r = scores.float()
    taken = torch.zeros_like(r)  # (..., N) the previous round's soft one-hot
    khot = torch.zeros_like(r)
    for _ in range(k):
        r = r + torch.log((1.0 - taken).clamp_min(TINY))
        taken = torch.softmax(r / tau, dim=-1)
        khot = khot + taken
    return khot


def hard_top_k(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Exact K-hot vector over the last dimension; ties go to the lower index."""
    order = torch.sort(-scores.detach().float(), dim=-1, stable=True).indices[..., :k]
    return torch.zeros_like(scores, dtype=torch.float32).scatter_(-1, order, 1.0)


def relaxed_mask(scores: torch.Tensor, k: int, tau: float, straight_through: bool = False) -> torch.Tensor:
    """Training-time gate values from perturbed logits.

    Soft: :func:`soft_top_k`. Straight-through: the forward value is the hard top-K, the gradient
    is the soft relaxation's (``hard + soft - soft.detach()``).
    """
    soft = soft_top_k(scores, k, tau)
    if not straight_through or k == scores.shape[-1]:
        return soft
    return hard_top_k(scores, k) + soft - soft.detach()


def annealed_temperature(step: int, initial: float, final: float, steps: int) -> float:
    """Exponential schedule from ``initial`` (step 0) to ``final`` (step ``steps`` and after)."""
    if steps <= 0 or step >= steps:
        return final
    return initial * math.exp(math.log(final / initial) * step / steps)
