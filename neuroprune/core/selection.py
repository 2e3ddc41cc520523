"""Choosing which heads to keep from per-head scores, with the plugin's one structural rule:
every attention module keeps at least one head (a module with none would be a dead sub-layer, and
head masks with no active head are refused on load). DSP's training relaxation follows the same rule
(:func:`.dsp.relaxed_top_k` tends to :func:`keep_top_k` as its temperature falls).

Heads are numbered over the whole model, module after module; ``sizes`` gives each module's head
count, so module ``m`` owns the flat indices ``sum(sizes[:m]) ... sum(sizes[:m+1]) - 1``.
Ties are broken towards the lower flat index, so the result is a deterministic function of the scores.
"""
from typing import List, Optional, Sequence

import torch


def module_slices(sizes: Sequence[int]) -> List[slice]:
    """The flat-index slice of each module."""
    bounds = [0]
    for size in sizes:
        bounds.append(bounds[-1] + size)
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]


def _ranking(scores: torch.Tensor) -> torch.Tensor:
    """Indices from the highest to the lowest score; equal scores keep index order."""
    return torch.sort(-scores.detach().float().cpu(), stable=True).indices  # (N,)


def keep_top_k(scores: torch.Tensor, sizes: Sequence[int], k: int, per_module: bool = False,
               active: Optional[torch.Tensor] = None) -> torch.Tensor:
    """A 0/1 mask keeping the ``k`` best-scoring heads, at least one per module.

    Args:
        scores: (N,) one score per head, higher = more worth keeping.
        sizes: heads per module, summing to N.
        k: heads to keep in total; with ``per_module`` it must split evenly over the modules.
        per_module: keep ``k / len(sizes)`` heads in every module instead of the best ``k`` overall.
        active: optional (N,) 0/1 mask of heads still available; inactive heads are never kept.
    Returns:
        (N,) float mask on ``scores``' device with exactly ``k`` ones.
    Raises:
        ValueError: when ``k`` cannot be met under the rules above.
    """
    n, m = sum(sizes), len(sizes)
    if scores.shape != (n,):
        raise ValueError(f"scores has shape {tuple(scores.shape)}, expected ({n},) for module sizes {list(sizes)}")
    available = torch.ones(n, dtype=torch.bool) if active is None else active.detach().cpu() > 0
    if not m <= k <= int(available.sum()):
        raise ValueError(f"cannot keep {k} heads: need at least one per module ({m}) and at most the {int(available.sum())} available")
    if per_module and k % m:
        raise ValueError(f"per-module selection needs the head budget {k} to be a multiple of the {m} modules")
    order = [int(i) for i in _ranking(scores) if available[i]]
    keep = torch.zeros(n, dtype=torch.bool)
    slices = module_slices(sizes)
    owner = torch.cat([torch.full((size,), j) for j, size in enumerate(sizes)])  # (N,) module of each head
    quota = [k // m if per_module else None] * m
    for j, part in enumerate(slices):  # the best available head of every module first
        best = next((i for i in order if part.start <= i < part.stop), None)
        if best is None:
            raise ValueError(f"module {j} has no available head left")
        keep[best] = True
    for i in order:
        if int(keep.sum()) == k:
            break
        j = int(owner[i])
        if not keep[i] and (quota[j] is None or int(keep[slices[j]].sum()) < quota[j]):
            keep[i] = True
    return keep.to(device=scores.device, dtype=torch.float)
