"""Differentiable Subset Pruning (Li, Cotterell and Sachan, TACL 2021) on plain tensors.

Each head has a learnable logit. During gate learning a Gumbel soft top-K turns the logits into a
relaxed K-hot mask that scales the heads' outputs; the relaxation is the iterated softmax of Xie and
Ermon (2019, "Reparameterizable subset sampling via continuous relaxations"), which DSP builds on: K
rounds of ``softmax(r / tau)``, each round damping what the previous round took by ``log(1 - p)``.
The rounds sum to exactly K, and as the temperature falls the mask tends to the hard top-K of the
perturbed logits.

Everything here runs in float64, as the authors' code does: at their final temperature 1e-8 every
round is exactly one-hot in float64, so the gates are exactly 0/1 and their gradient is exactly zero.

The plugin's one structural rule, at least one head per attention module (:mod:`.selection`), is part
of the relaxation (:func:`relaxed_top_k`): its first M rounds take one head in each of the M modules
(a softmax within each module), the other K - M rounds run over all heads. As ``tau`` falls the relaxed
mask becomes :func:`.selection.keep_top_k` of the perturbed logits, the rule of the hard mask that
evaluation, checkpoints and export use, so training and evaluation choose heads the same way.
"""
import math
from typing import Optional, Sequence

import torch

from .selection import module_slices

TINY = torch.finfo(torch.float64).tiny


def gumbel_noise(shape, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Standard Gumbel samples ``-log(-log U)`` (float64, CPU) from ``generator``."""
    uniform = torch.rand(shape, generator=generator, dtype=torch.float64) * (1.0 - TINY) + TINY  # in [TINY, 1)
    return -torch.log(-torch.log(uniform))


def _softmax_rounds(r: torch.Tensor, taken: torch.Tensor, rounds: int, tau: float) -> torch.Tensor:
    """Sum of ``rounds`` further iterated-softmax rounds over the last dimension of ``r``, the round
    before them having taken ``taken`` (zeros when there was none)."""
    khot = torch.zeros_like(r)
    for _ in range(rounds):
        r = r + torch.log((1.0 - taken).clamp_min(TINY))
        taken = torch.exp(torch.log_softmax(r / tau, dim=-1))
        khot = khot + taken
    return khot


def _check(n: int, k: int, tau: float, least: int = 1) -> None:
    if not least <= k <= n:
        raise ValueError(f"soft top-k needs {least} <= k <= {n}, got {k}")
    if tau <= 0:
        raise ValueError(f"temperature must be > 0, got {tau}")


def soft_top_k(scores: torch.Tensor, k: int, tau: float) -> torch.Tensor:
    """Relaxed K-hot vector of ``scores`` at temperature ``tau`` (no per-module rule).

    Args:
        scores: (..., N) perturbed logits; the relaxation runs over the last dimension.
        k: heads to keep, 1 <= k <= N; k == N gives exactly ones (nothing to choose).
        tau: temperature > 0; lower is closer to the hard top-K.
    Returns:
        (..., N) float64 non-negative values summing to ``k`` along the last dimension (an entry can
        slightly exceed 1 at moderate temperatures; all tend to 0 or 1 as ``tau`` falls).
    """
    n = scores.shape[-1]
    _check(n, k, tau)
    r = scores.double()
    if k == n:
        return torch.ones_like(r)
    return _softmax_rounds(r, torch.zeros_like(r), k, tau)


def relaxed_top_k(scores: torch.Tensor, sizes: Sequence[int], k: int, tau: float, per_module: bool = False) -> torch.Tensor:
    """Training-time gate values of perturbed logits, with at least one head per module.

    Args:
        scores: (N,) perturbed logits, module after module (``sizes`` heads each).
        sizes: heads per module, summing to N.
        k: heads to keep in total, at least one per module; with ``per_module`` a multiple of the
            module count, ``k / M`` heads in every module.
        tau: temperature > 0.
        per_module: relax each module on its own (``k / M`` rounds within it).
    Returns:
        (N,) float64 gates summing to ``k``; every module's gates sum to at least 1. As ``tau``
        falls they tend to ``keep_top_k(scores, sizes, k, per_module)``.
    """
    n, m = sum(sizes), len(sizes)
    if scores.shape != (n,):
        raise ValueError(f"scores has shape {tuple(scores.shape)}, expected ({n},) for module sizes {list(sizes)}")
    _check(n, k, tau, least=m)
    slices = module_slices(sizes)
    if per_module:
        if k % m:
            raise ValueError(f"per-module selection needs the head budget {k} to be a multiple of the {m} modules")
        return torch.cat([soft_top_k(scores[s], k // m, tau) for s in slices])
    r = scores.double()
    if k == n:
        return torch.ones_like(r)
    first = torch.cat([torch.exp(torch.log_softmax(r[s] / tau, dim=-1)) for s in slices])  # (N,) one per module
    return first + _softmax_rounds(r, first, k - m, tau)


def straight_through(logits: torch.Tensor, hard: torch.Tensor) -> torch.Tensor:
    """The authors' straight-through gates: ``hard`` (a 0/1 mask chosen from the raw logits) in the
    forward pass, the identity in the backward pass (d gate_i / d logit_i = 1)."""
    return hard.to(logits.dtype) + (logits - logits.detach())


def xavier_logits(sizes: Sequence[int], generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """(N,) float64 initial logits drawn like the authors' xavier-uniform (M, H) matrix: U(-b, b) with
    ``b = sqrt(6 / (M + H))``, M modules and H the mean heads per module (0.5 for 18 x 6)."""
    n, m = sum(sizes), len(sizes)
    bound = math.sqrt(6.0 / (m + n / m))
    return (torch.rand(n, generator=generator, dtype=torch.float64) * 2.0 - 1.0) * bound


def fractional_share(gates: torch.Tensor, low: float = 0.01, high: float = 0.99) -> float:
    """Share of gates strictly between ``low`` and ``high`` (neither pruned nor kept yet)."""
    g = gates.detach()
    return float(((g > low) & (g < high)).double().mean())


def annealed_temperature(step: int, initial: float, final: float, steps: int) -> float:
    """Exponential schedule from ``initial`` (step 0) to ``final`` (step ``steps`` and after)."""
    if steps <= 0 or step >= steps:
        return final
    return initial * math.exp(math.log(final / initial) * step / steps)
