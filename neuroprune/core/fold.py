"""Folding pruned heads into the heads that stay, on plain tensors.

An attention module's output is ``y = W o + b`` with ``o`` (H*d,) the concatenated head outputs,
``W`` (E, H*d) the out-projection weight and ``b`` (E,) its bias; head ``h`` owns columns
``h*d:(h+1)*d`` of ``W`` (``W_h``). Pruning head ``i`` and folding it into the kept head ``j`` changes
``W`` and ``b`` only: the kept heads' q/k/v, hence their outputs, are untouched. So with calibration
statistics of ``o`` (mean ``mu``, covariance ``C``) the error a fold makes on the module's output is
exact: for ``dW = W_after - W_before`` and ``db = b_after - b_before``,
``E||dW o + db||^2 = tr(dW C dW^T) + ||dW mu + db||^2`` (:func:`output_change_error`).

Three folds:
* the paper's (``W_j += W_i``), plus the value-bias carry ``b += W_i (b_v,i - b_v,j)``
  (:func:`value_bias_carry`), which makes it exact for heads with identical weights: their attention
  probabilities are equal and each probability row sums to one, so ``o_i - o_j = b_v,i - b_v,j``;
* none (mask only: ``W_i`` dropped);
* data-aware (:func:`data_fold`): ``o_i ~ A o_j + c`` fitted by least squares on calibration data,
  ``W_j += W_i A`` and ``b += W_i c``, with a ridge that pulls ``A`` towards the identity (the paper's
  fold), so identical heads give ``A = I, c = 0`` exactly and a near-constant keeper cannot blow ``A`` up.
"""
from typing import List, Tuple

import torch


def _cols(head: int, head_dim: int) -> slice:
    return slice(head * head_dim, (head + 1) * head_dim)


def pruned_pairs(kept_for: List[int]) -> List[Tuple[int, int]]:
    """``(pruned head, head it is folded into)`` for every head an elimination plan removes."""
    return [(head, keeper) for head, keeper in enumerate(kept_for) if keeper not in (-1, head)]


def value_bias_carry(out_weight: torch.Tensor, v_bias: torch.Tensor, kept_for: List[int], head_dim: int) -> torch.Tensor:
    """Out-projection bias change that carries each folded head's value-bias difference.

    Args:
        out_weight: (E, H*d) out-projection weight before folding.
        v_bias: (H*d,) value projection bias.
        kept_for: the plan (see ``core.heads.EliminationPlan``).
        head_dim: d.
    Returns:
        (E,) ``sum_i W_i (b_v,i - b_v,j)`` over pruned heads ``i`` folded into ``j``.
    """
    carry = torch.zeros(out_weight.shape[0], dtype=out_weight.dtype, device=out_weight.device)
    for head, keeper in pruned_pairs(kept_for):
        carry += out_weight[:, _cols(head, head_dim)] @ (v_bias[_cols(head, head_dim)] - v_bias[_cols(keeper, head_dim)])
    return carry


def fit_head_map(mean: torch.Tensor, cov: torch.Tensor, source: int, target: int, head_dim: int, ridge: float):
    """Least-squares map from head ``target``'s output to head ``source``'s: ``o_s ~ A o_t + c``.

    Minimises ``E||o_s - A o_t - c||^2 + lam ||A - I||^2`` with ``lam = ridge * max(tr(C_ss), tr(C_tt)) / d``
    (scale-free, and not vanishing with a near-constant keeper), i.e. ``A = (C_st + lam I)(C_tt + lam I)^-1``
    and ``c = mu_s - A mu_t``.

    Args:
        mean: (H*d,) mean of the concatenated head outputs; cov: (H*d, H*d) their covariance.
        source, target: head indices; head_dim: d; ridge: >= 0 (0 = ordinary least squares).
    Returns:
        ``A`` (d, d) and ``c`` (d,), float64.
    """
    s, t = _cols(source, head_dim), _cols(target, head_dim)
    cov, mean = cov.double(), mean.double()
    c_tt, c_st = cov[t, t], cov[s, t]
    lam = ridge * max(float(torch.trace(c_tt)), float(torch.trace(cov[s, s])), 1e-12) / head_dim
    eye = torch.eye(head_dim, dtype=torch.float64)
    a = torch.linalg.solve(c_tt + lam * eye, (c_st + lam * eye).T).T  # (C_st + lam I)(C_tt + lam I)^-1, C_tt symmetric
    return a, mean[s] - a @ mean[t]


def output_change_error(weight_before: torch.Tensor, weight_after: torch.Tensor, bias_change: torch.Tensor,
                        mean: torch.Tensor, cov: torch.Tensor) -> float:
    """Mean squared change of the module's output ``E||dW o + db||^2`` over the calibration data.

    Args:
        weight_before, weight_after: (E, H*d) out-projection weights; bias_change: (E,) ``db``.
        mean: (H*d,), cov: (H*d, H*d) statistics of the head outputs of the unpruned module.
    """
    dw = (weight_after - weight_before).double()
    shift = dw @ mean.double() + bias_change.double()
    return float(torch.trace(dw @ cov.double() @ dw.T) + shift @ shift)


def fold_into(out_weight: torch.Tensor, folds, head_dim: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Apply maps ``(i, j, A, c)``: ``W_j += W_i A``, bias ``+= W_i c``, ``W_i = 0`` (``W_i`` as before any fold).

    Args:
        out_weight: (E, H*d); folds: iterable of (pruned head, keeper, A (d, d) or None, c (d,) or None),
            None meaning no map (masking alone); head_dim: d.
    Returns:
        (new weight (E, H*d), bias change (E,)), float64.
    """
    weight = out_weight.detach().double()
    new = weight.clone()
    bias = torch.zeros(weight.shape[0], dtype=torch.float64, device=weight.device)
    for head, keeper, a, c in folds:
        w_i = weight[:, _cols(head, head_dim)]
        if a is not None:
            new[:, _cols(keeper, head_dim)] += w_i @ a.to(weight.device)
            bias += w_i @ c.to(weight.device)
        new[:, _cols(head, head_dim)] = 0
    return new, bias


def data_fold(out_weight: torch.Tensor, kept_for: List[int], head_dim: int, mean: torch.Tensor, cov: torch.Tensor,
              ridge: float) -> Tuple[torch.Tensor, torch.Tensor, bool]:
    """The data-aware fold of every pruned head into its keeper, never worse than masking alone.

    Each pruned head ``i`` folded into ``j`` adds ``W_i A`` to ``W_j`` and ``W_i c`` to the bias
    (:func:`fit_head_map`); its own columns become zero. If the result changes the module's output more
    than masking alone would (:func:`output_change_error`; possible only through the ridge or through
    cross terms between several folded heads), masking alone is returned instead.

    Args:
        out_weight: (E, H*d) out-projection weight; kept_for: the plan; head_dim: d.
        mean, cov: head-output statistics (see :func:`fit_head_map`); ridge: see there.
    Returns:
        (new weight (E, H*d), bias change (E,), whether the fitted fold was used), in ``out_weight``'s dtype.
    """
    pairs = pruned_pairs(kept_for)
    fitted = fold_into(out_weight, [(i, j, *fit_head_map(mean, cov, i, j, head_dim, ridge)) for i, j in pairs], head_dim)
    masked = fold_into(out_weight, [(i, j, None, None) for i, j in pairs], head_dim)
    weight = out_weight.detach().double()
    use_fit = output_change_error(weight, *fitted, mean, cov) <= output_change_error(weight, *masked, mean, cov)
    new_weight, change = fitted if use_fit else masked
    return new_weight.to(out_weight.dtype), change.to(out_weight.dtype), use_fit


def head_output_energy(out_weight: torch.Tensor, cov: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Each head's share of the module's output variance, ``tr(W_h C_hh W_h^T)``: an importance score.

    Args:
        out_weight: (E, H*d); cov: (H*d, H*d) head-output covariance; num_heads: H.
    Returns:
        (H,) float64.
    """
    weight, cov = out_weight.detach().double(), cov.double()
    d = weight.shape[1] // num_heads
    return torch.stack([torch.trace(weight[:, _cols(h, d)] @ cov[_cols(h, d), _cols(h, d)] @ weight[:, _cols(h, d)].T)
                        for h in range(num_heads)])
