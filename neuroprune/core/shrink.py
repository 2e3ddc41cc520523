"""Physically removing masked heads and dead FFN units, on plain tensors.

Layout follows ``nn.Linear`` (out, in), as in :mod:`.heads`: head ``h`` of a module with ``head_dim = d``
owns rows ``h*d:(h+1)*d`` of the q/k/v weights and biases and the same columns of the out-projection
weight; FFN unit ``i`` owns row ``i`` of ``fc1`` (weight and bias) and column ``i`` of ``fc2``'s weight.
"""
from typing import Callable, Tuple

import torch

from .heads import head_row_mask


def select_heads(tensor: torch.Tensor, head_mask: torch.Tensor, head_dim: int, dim: int) -> torch.Tensor:
    """Keep the slices of the active heads along one dimension.

    Args:
        tensor: e.g. a (H*d, in) q/k/v weight or (H*d,) bias with ``dim=0``, or the (out, H*d)
            out-projection weight with ``dim=1``.
        head_mask: (H,) 0/1, 1 = keep.
        head_dim: ``d``, rows (or columns) per head.
        dim: the dimension that holds the heads.
    Returns:
        New tensor with ``dim`` of size ``H_kept * d``, active heads in their original order.
    """
    rows = head_row_mask(head_mask, head_dim).bool()  # (H*d,)
    if tensor.shape[dim] != rows.numel():
        raise ValueError(f"dimension {dim} has size {tensor.shape[dim]}, but {head_mask.numel()} heads of {head_dim} need {rows.numel()}")
    return tensor.index_select(dim, rows.nonzero().squeeze(1).to(tensor.device))


def dead_units(fc1_weight: torch.Tensor, fc2_weight: torch.Tensor, eps: float) -> torch.Tensor:
    """FFN hidden units whose fc1 row and fc2 column are all ``|w| < eps``, sparing at least one unit.

    Args:
        fc1_weight: (F, in).
        fc2_weight: (out, F).
        eps: magnitude below which a weight counts as zero.
    Returns:
        (F,) bool, true = remove. When every unit is dead, the one with the largest weight is kept
        (a layer needs one unit to exist).
    """
    dead = (fc1_weight.abs() < eps).all(dim=1) & (fc2_weight.abs() < eps).all(dim=0)  # (F,)
    if bool(dead.all()):
        magnitude = torch.maximum(fc1_weight.abs().amax(dim=1), fc2_weight.abs().amax(dim=0))  # (F,)
        dead[magnitude.argmax()] = False
    return dead


def shrink_ffn(
    fc1_weight: torch.Tensor,
    fc1_bias: torch.Tensor,
    fc2_weight: torch.Tensor,
    fc2_bias: torch.Tensor,
    remove: torch.Tensor,
    activation: Callable[[torch.Tensor], torch.Tensor],
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Drop FFN units and fold their constant output into fc2's bias.

    A unit whose fc1 row is zero outputs ``activation(fc1_bias[i])`` whatever the input, which adds
    ``activation(fc1_bias[i]) * fc2_weight[:, i]`` to every output; that term moves into ``fc2_bias``.
    The removal is exact when the removed fc1 rows are exactly zero (whatever their fc2 columns hold).

    Args:
        fc1_weight: (F, in); fc1_bias: (F,); fc2_weight: (out, F); fc2_bias: (out,).
        remove: (F,) bool, e.g. from :func:`dead_units`; at least one unit must stay.
        activation: the FFN's elementwise activation.
    Returns:
        ``(fc1_weight (K, in), fc1_bias (K,), fc2_weight (out, K), fc2_bias (out,))`` with K kept units.
    """
    if bool(remove.all()):
        raise ValueError("an FFN layer must keep at least one unit")
    keep = ~remove
    constant = activation(fc1_bias[remove])  # (R,)
    folded_bias = fc2_bias + fc2_weight[:, remove] @ constant.to(fc2_weight.dtype)  # (out,)
    return fc1_weight[keep], fc1_bias[keep], fc2_weight[:, keep], folded_bias
