"""Sparsity during training, on plain tensors: gradual magnitude pruning (Zhu and Gupta 2017) and the l1
proximal step (soft-thresholding).

The schedule is torch.ao.pruning's ``CubicSL`` formula (its own static ``sparsity_compute_fn``): starting at
update ``t_0``, the target share of zeros rises as ``s_f + (s_0 - s_f)(1 - (t - t_0)/(n dt))^3`` and is
reached exactly at ``t_0 + n dt``. Masks are recomputed every ``dt`` updates, as in the paper. Magnitude
selection is per matrix, among the entries that are still *active* (removed heads are not counted), so a
matrix ends with exactly ``round(s_f * active)`` zeros among its active entries.
"""
import torch
from torch.ao.pruning.scheduler.cubic_scheduler import CubicSL


def cubic_target(update: int, final: float, start: int, end: int, interval: int) -> float:
    """The share of active entries that are zero after ``update`` under the cubic schedule, or 0 before ``start``.

    Args:
        update: the number of updates done.
        final: ``s_f``, the share reached at ``end`` and kept afterwards.
        start: ``t_0``, the first pruning update.
        end: the update at which ``final`` is reached; ``end - start`` must be a multiple of ``interval``.
        interval: ``dt``, updates between two mask recomputations.
    Returns:
        The target share in [0, final]; it only changes at ``start + k * interval``.
    """
    if not 0 <= final < 1:
        raise ValueError(f"the final sparsity must be in [0, 1), got {final}")
    if interval < 1 or end <= start or (end - start) % interval:
        raise ValueError(f"the pruning updates {start}..{end} must span a positive multiple of the interval {interval}")
    if update < start:
        return 0.0
    t = start + min((update - start) // interval * interval, end - start)  # the last mask recomputation so far
    return float(CubicSL.sparsity_compute_fn(s_0=0.0, s_f=final, t=t, t_0=start, dt=interval, n=(end - start) // interval))


def prune_smallest(weight: torch.Tensor, active: torch.Tensor, share: float) -> torch.Tensor:
    """Zero the ``round(share * active.sum())`` active entries of smallest magnitude (ties: lower flat index first).

    Args:
        weight: (out, in) or any shape.
        active: bool of ``weight``'s shape; inactive entries (removed heads) are neither counted nor chosen.
        share: share of the active entries to be zero afterwards, in [0, 1].
    Returns:
        A new tensor; entries already zero count towards the share (they are the smallest).
    """
    if active.shape != weight.shape:
        raise ValueError(f"the active mask {tuple(active.shape)} does not match the weight {tuple(weight.shape)}")
    flat = weight.detach().reshape(-1)
    candidates = active.reshape(-1).nonzero().squeeze(1)  # (A,)
    k = round(share * candidates.numel())
    out = weight.detach().clone().reshape(-1)
    if k > 0:
        order = torch.sort(flat[candidates].abs(), stable=True).indices[:k]  # (k,) smallest first, ties by index
        out[candidates[order]] = 0
    return out.reshape(weight.shape)


def soft_threshold(weight: torch.Tensor, amount: float) -> torch.Tensor:
    """The l1 proximal step: every entry moves ``amount`` towards zero and stops at zero.

    Args:
        weight: a tensor of any shape.
        amount: >= 0, e.g. learning rate x l1 strength.
    Returns:
        ``sign(w) * max(|w| - amount, 0)``; entries with ``|w| <= amount`` become exactly zero.
    """
    if not amount >= 0:
        raise ValueError(f"the soft-threshold amount must be >= 0, got {amount}")
    return torch.sign(weight) * torch.clamp(weight.abs() - amount, min=0)
