"""Head importance of Michel, Levy and Neubig (2019, "Are Sixteen Heads Really Better than One?").

A head's importance is ``|dL / d xi_h|`` for a gate ``xi_h`` (= 1) that scales the head's output
before the out-projection. No gates need to be inserted: with ``y = W x`` and the head's slice of
``x`` scaled by ``xi_h``, ``dL/dxi_h = sum_t g_t . (W[:, H_h] x_t[H_h]) = <W[:, H_h], dL/dW[:, H_h]>``,
the inner product of the out-projection's head columns with their ordinary gradient.
"""
from typing import List

import torch


def head_gate_gradient(out_weight: torch.Tensor, out_grad: torch.Tensor, num_heads: int) -> torch.Tensor:
    """``dL/dxi_h`` of every head of one module, from the out-projection weight and its gradient.

    Args:
        out_weight: (embed_out, H * d) ``out_proj.weight``.
        out_grad: same shape, its gradient.
        num_heads: H.
    Returns:
        (H,) float32 signed gate gradients.
    """
    rows, cols = out_weight.shape
    product = out_weight.detach().float() * out_grad.detach().float()  # (E, H*d)
    return product.reshape(rows, num_heads, cols // num_heads).sum(dim=(0, 2))  # (H,)


def normalize_per_module(scores: List[torch.Tensor]) -> List[torch.Tensor]:
    """Michel et al.'s per-layer normalisation: each module's scores divided by their l2 norm."""
    return [s / s.norm().clamp_min(1e-20) for s in scores]


def iterative_targets(start: int, final: int, steps: int) -> List[int]:
    """Head counts after each of ``steps`` pruning rounds, evenly spaced from ``start`` to ``final``."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    return [round(start - (start - final) * i / steps) for i in range(1, steps + 1)]
