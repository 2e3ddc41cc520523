"""NeuroPrune's two sparsity regularizers (paper Sec. 4.1 Eq. 1 and Sec. 4.2 Eq. 2).

Both take ``nn.Linear``-layout weights, i.e. ``(out_features, in_features)``, and return a scalar.
They are computed in float32 whatever the parameters' dtype, so fp16/bf16 training cannot overflow
the sums.
"""
import torch


def near_zero_fraction(weight: torch.Tensor, eps: float) -> torch.Tensor:
    """Per-row share of entries with ``|w| < eps``.

    Args:
        weight: (rows, cols) matrix.
        eps: threshold below which an entry counts as disconnected.
    Returns:
        (rows,) float32 tensor in [0, 1], detached (it is a weight, not a function to differentiate).
    """
    with torch.no_grad():
        return (weight.detach().abs() < eps).float().mean(dim=1)  # (rows,)


def mlp_row_penalty(weight: torch.Tensor, eps: float) -> torch.Tensor:
    """Preferential-attachment weighted l1 of one MLP matrix (one term of Eq. 1).

    Each row's l1 norm is weighted by the share of its entries that are already near zero, so
    poorly connected neurons are pushed harder towards zero than well connected hubs.

    Args:
        weight: (out, in) ``fc1.weight`` (ffn, embed) or ``fc2.weight`` (embed, ffn).
        eps: near-zero threshold.
    Returns:
        0-dim float32 tensor ``sum_r frac_r * sum_c |w_rc|``.
    """
    row_weight = near_zero_fraction(weight, eps)  # (out,)
    row_l1 = weight.float().abs().sum(dim=1)  # (out,)
    return (row_weight * row_l1).sum()


def mlp_penalty(fc1_weight: torch.Tensor, fc2_weight: torch.Tensor, eps: float) -> torch.Tensor:
    """R_mlp of one FFN block (Eq. 1): the weighted l1 of ``fc1`` plus that of ``fc2``.

    Args:
        fc1_weight: (ffn, embed).
        fc2_weight: (embed, ffn).
        eps: near-zero threshold.
    """
    return mlp_row_penalty(fc1_weight, eps) + mlp_row_penalty(fc2_weight, eps)


def safe_sqrt(x: torch.Tensor) -> torch.Tensor:
    """``sqrt(x)`` for ``x >= 0`` whose gradient at exactly 0 is 0 instead of inf/NaN."""
    positive = x > 0
    return torch.where(positive, torch.sqrt(torch.where(positive, x, torch.ones_like(x))), torch.zeros_like(x))


def attention_penalty(q_weight: torch.Tensor, k_weight: torch.Tensor, v_weight: torch.Tensor) -> torch.Tensor:
    """R_attn of one attention module (Eq. 2): l1^0.5 group penalty over input dimensions.

    A group is input dimension ``i``: column ``i`` of the stacked ``[Q; K; V]`` weights (in the
    paper's layout, row ``i`` of ``[Q, K, V]``). The penalty is ``sum_i sqrt(sum_j |A_ji|)``.
    A group that is exactly zero contributes 0 and gets a zero (finite) gradient.

    Cross-attention whose keys/values come from an input of another width than the queries' (a decoder
    wider than its encoder) has two sets of input neurons: then Q's columns form groups of their own and
    the stacked ``[K; V]`` columns theirs. In general the matrices of each input width are stacked; with one
    width (self-attention, or the paper's equal-width cross-attention) this is the paper's grouping.

    Args:
        q_weight, k_weight, v_weight: (out, in_q), (out, in_k), (out, in_v) projection weights of one module.
    Returns:
        0-dim float32 tensor.
    """
    group_l1 = {}  # input width -> (width,) column l1 norms summed over the matrices of that width
    for weight in (q_weight, k_weight, v_weight):
        column_l1 = weight.float().abs().sum(dim=0)  # (in,)
        group_l1[column_l1.numel()] = group_l1.get(column_l1.numel(), 0) + column_l1
    return sum(safe_sqrt(l1).sum() for l1 in group_l1.values())


def l1_penalty(*weights: torch.Tensor) -> torch.Tensor:
    """Plain l1 norm summed over matrices (the l1 baseline's regularizer), in float32.

    Args:
        weights: tensors of any shape.
    Returns:
        0-dim float32 tensor ``sum |w|``.
    """
    return sum(w.float().abs().sum() for w in weights)
