"""One-shot post-training pruning of one weight matrix: magnitude, Wanda and SparseGPT (tensors in, tensors out).

Each method prunes the weight ``W`` (out, in) of a linear layer ``y = W x + b`` with no retraining. The
data-aware ones read the layer's calibration inputs only through ``H = sum_t x_t x_t^T`` (in, in), the
inputs' second moment summed over calibration tokens (the layer Hessian of ``||W X - W' X||^2`` up to a
factor 2).

Sparsity rule shared by every method: a matrix of ``n`` entries gets exactly ``round(s * n)`` zeros,
chosen by the method's score. An N:M pattern instead zeroes exactly N of every M consecutive inputs of
each row (``2:4`` as in SparseGPT and Wanda), sparsity N/M.

- magnitude: the smallest ``|w|`` of the whole matrix.
- Wanda (Sun, Liu, Bair, Kolter 2023): score ``|w_ij| * ||x_j||_2`` (``||x_j||^2 = H_jj``), compared
  within each output row; the zeros are spread evenly over the rows.
- SparseGPT (Frantar and Alistarh 2023): columns are pruned left to right; each pruned weight's error is
  compensated on the columns to its right by the optimal brain surgeon update, read from the upper
  Cholesky factor ``U`` of the dampened inverse Hessian (``H^-1 = U^T U``; row i of ``U`` scaled by
  ``1/U_ii`` is row 0 of the inverse of ``H`` restricted to columns i..in-1). The mask is chosen per block
  of columns from the saliency ``w^2 / U_ii^2`` of the block's weights as updated so far.

Dead inputs (zero on every calibration token, ``H_jj = 0``): SparseGPT first zeroes their weights and sets
``H_jj = 1``, as its authors' code does; those zeros score 0, so they are the first of the block's share
and add to it only where a block has more of them than its share. Wanda scores them 0, so they are the
first of each row's share of zeros, but none beyond it (as in Wanda's code). Magnitude reads no data and
treats them like any other input.

Bad numbers are refused with a ``ValueError`` saying what is wrong: a NaN or infinite weight or Hessian
entry, a Hessian whose size is not the weight's input size, an N:M pattern without ``0 < N < M``.
"""
import logging
from typing import List, Optional, Sequence, Tuple

import torch

Pattern = Tuple[int, int]  # (N zeros, per M consecutive inputs)
DAMP_RETRIES = 4  # each retry multiplies the dampening by 10

log = logging.getLogger(__name__)


def check_sparsity(sparsity: float) -> None:
    """``ValueError`` unless ``0 <= sparsity < 1``."""
    if not 0 <= sparsity < 1:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")


def parse_pattern(text: str) -> Pattern:
    """``"N:M"`` -> ``(N, M)`` with ``0 < N < M``; ``ValueError`` otherwise."""
    parts = text.split(":")
    if len(parts) != 2 or not all(p.isdigit() for p in parts) or not 0 < int(parts[0]) < int(parts[1]):
        raise ValueError(f"an N:M pattern is two integers 0 < N < M written N:M (N zeros in every M inputs), got '{text}'")
    return int(parts[0]), int(parts[1])


def check_pattern(pattern: Optional[Pattern], columns: int, what: str = "the matrix") -> None:
    """``ValueError`` unless an N:M pattern is two integers ``0 < N < M`` and M divides the input size ``columns``."""
    if pattern is None:
        return
    if len(pattern) != 2 or not all(isinstance(v, int) for v in pattern) or not 0 < pattern[0] < pattern[1]:
        raise ValueError(f"an N:M pattern (N zeros in every M inputs) needs integers 0 < N < M, got {tuple(pattern)} for {what}")
    if columns % pattern[1]:
        raise ValueError(f"N:M pattern {pattern[0]}:{pattern[1]} needs an input size that is a multiple of "
                         f"{pattern[1]}, but {what} has {columns} inputs")


def check_finite(tensor: torch.Tensor, what: str) -> None:
    """``ValueError`` naming ``what`` and counting its entries when any is NaN or infinite."""
    bad = int((~torch.isfinite(tensor)).sum())
    if bad:
        raise ValueError(f"{what} has NaN or infinite entries ({bad} of {tensor.numel()})")


def check_weight(weight: torch.Tensor, xtx: Optional[torch.Tensor] = None) -> None:
    """``ValueError`` for a weight (out, in) or Hessian that is not finite, or a Hessian that is not (in, in)."""
    check_finite(weight, f"the weight {tuple(weight.shape)}")
    if xtx is None:
        return
    if tuple(xtx.shape) != (weight.shape[1],) * 2:
        raise ValueError(f"the Hessian is {tuple(xtx.shape)} but the weight {tuple(weight.shape)} has {weight.shape[1]} "
                         f"inputs: expected ({weight.shape[1]}, {weight.shape[1]})")
    check_finite(xtx, "the Hessian (calibration inputs' second moment)")


def spread(total: int, sizes: Sequence[int]) -> List[int]:
    """``total`` split over parts of the given sizes in proportion, by rounding the running sum: the counts
    add up to ``total`` exactly and each is within one of its proportional share."""
    whole, counts, done, before = sum(sizes), [], 0, 0
    for size in sizes:
        done += size
        upto = round(total * done / whole)
        counts.append(upto - before)
        before = upto
    return counts


def lowest(scores: torch.Tensor, count: int) -> torch.Tensor:
    """Bool mask of the ``count`` smallest entries of ``scores`` (any shape); ties go to the lower index."""
    flat = torch.zeros(scores.numel(), dtype=torch.bool, device=scores.device)
    flat[torch.argsort(scores.flatten(), stable=True)[:count]] = True
    return flat.view(scores.shape)


def lowest_per_row(scores: torch.Tensor, counts: Sequence[int]) -> torch.Tensor:
    """Bool mask of the ``counts[r]`` smallest entries of each row ``r`` of ``scores`` (rows, cols)."""
    ranks = torch.argsort(torch.argsort(scores, dim=1, stable=True), dim=1)  # (rows, cols): rank within the row
    return ranks < torch.tensor(counts, device=scores.device)[:, None]


def lowest_n_of_m(scores: torch.Tensor, pattern: Pattern) -> torch.Tensor:
    """Bool mask of the N smallest entries in every group of M consecutive columns of ``scores`` (rows, cols)."""
    n, m = pattern
    rows, cols = scores.shape
    groups = scores.reshape(rows, cols // m, m)  # (rows, groups, M)
    ranks = torch.argsort(torch.argsort(groups, dim=2, stable=True), dim=2)
    return (ranks < n).reshape(rows, cols)


def score_mask(scores: torch.Tensor, sparsity: float, pattern: Optional[Pattern], per_row: bool = False) -> torch.Tensor:
    """Mask (True = prune) of ``round(sparsity * numel)`` lowest scores (over the matrix, or spread evenly
    over the rows when ``per_row``), or of an N:M pattern when one is given."""
    if pattern is not None:
        check_pattern(pattern, scores.shape[1])
        return lowest_n_of_m(scores, pattern)
    check_sparsity(sparsity)
    count = round(sparsity * scores.numel())
    if per_row:
        return lowest_per_row(scores, spread(count, [scores.shape[1]] * scores.shape[0]))
    return lowest(scores, count)


def magnitude(weight: torch.Tensor, sparsity: float, pattern: Optional[Pattern] = None) -> torch.Tensor:
    """``weight`` (out, in) with its smallest-magnitude entries zeroed (a new tensor)."""
    check_weight(weight)
    return weight.masked_fill(score_mask(weight.abs(), sparsity, pattern), 0)


def wanda(weight: torch.Tensor, xtx: torch.Tensor, sparsity: float, pattern: Optional[Pattern] = None) -> torch.Tensor:
    """``weight`` (out, in) pruned by Wanda's score ``|w_ij| * sqrt(H_jj)`` within each output row.

    Args:
        weight: (out, in).
        xtx: (in, in) ``H``; only its diagonal (the squared l2 norm of each input over the tokens) is used.
    """
    check_weight(weight, xtx)
    norms = xtx.diagonal().clamp_min(0).sqrt().to(weight)  # (in,)
    return weight.masked_fill(score_mask(weight.abs() * norms[None, :], sparsity, pattern, per_row=True), 0)


def inverse_hessian_factor(xtx: torch.Tensor, damp: float) -> torch.Tensor:
    """Upper Cholesky factor ``U`` of ``(H + lambda I)^-1`` in float64, ``lambda = damp * mean(diag H)``
    (``damp`` itself when the diagonal is all zero).

    A factorisation that fails (a Hessian that is not positive definite, or not finite) is retried with
    10x the dampening, up to :data:`DAMP_RETRIES` times, each retry logged as a warning.

    Raises:
        ValueError: the last retry failed too.
    """
    h = xtx.double()  # (in, in)
    scale = float(h.diagonal().mean().abs()) or 1.0
    eye = torch.eye(h.shape[0], dtype=h.dtype, device=h.device)
    for attempt in range(DAMP_RETRIES + 1):
        factor = damp * 10 ** attempt
        lower, info = torch.linalg.cholesky_ex(h + factor * scale * eye)
        if int(info) == 0 and bool(torch.isfinite(lower).all()):
            upper, info = torch.linalg.cholesky_ex(torch.cholesky_inverse(lower), upper=True)
            if int(info) == 0 and bool(torch.isfinite(upper).all()):
                return upper
        if attempt < DAMP_RETRIES:
            log.warning("Hessian (%d inputs) not positive definite with dampening %g of its mean diagonal; retrying with %g",
                        h.shape[0], factor, factor * 10)
    raise ValueError(f"the Hessian ({h.shape[0]} inputs) is not positive definite even with dampening {factor:g} of its "
                     f"mean diagonal: its calibration inputs are degenerate or not finite")


def sparsegpt(weight: torch.Tensor, xtx: torch.Tensor, sparsity: float, pattern: Optional[Pattern] = None,
              block_size: int = 128, damp: float = 0.01) -> torch.Tensor:
    """``weight`` (out, in) pruned by SparseGPT on the layer Hessian ``xtx`` (in, in); a new tensor.

    Args:
        sparsity: share of zeros (ignored when ``pattern`` is given).
        pattern: optional (N, M): N zeros in every M consecutive inputs of each row.
        block_size: columns whose mask is chosen together (with a pattern, a multiple of M).
        damp: dampening, as a fraction of the Hessian's mean diagonal (see :func:`inverse_hessian_factor`).
    Returns:
        The pruned weight, same dtype and device; exactly ``weight`` when nothing is pruned and no input is dead.
    """
    check_weight(weight, xtx)
    rows, cols = weight.shape
    if pattern is not None:
        check_pattern(pattern, cols)
        if block_size % pattern[1]:
            raise ValueError(f"block size {block_size} must be a multiple of the pattern's M = {pattern[1]}")
    else:
        check_sparsity(sparsity)
    h, w = xtx.double().clone(), weight.detach().double().clone()  # (in, in), (out, in)
    dead = h.diagonal() == 0  # (in,): inputs that are zero on every calibration token
    h.diagonal()[dead] = 1
    w[:, dead] = 0
    upper = inverse_hessian_factor(h, damp)  # (in, in)
    starts = list(range(0, cols, block_size))
    counts = [0] * len(starts) if pattern else spread(round(sparsity * w.numel()), [min(block_size, cols - s) for s in starts])
    for start, count in zip(starts, counts):
        end = min(start + block_size, cols)
        block, u = w[:, start:end], upper[start:end, start:end]  # (out, B) view, (B, B)
        d = u.diagonal()  # (B,)
        prune = torch.zeros_like(block, dtype=torch.bool) if pattern else lowest(block ** 2 / d ** 2, count)
        errors = torch.zeros_like(block)  # (out, B)
        for j in range(end - start):
            if pattern is not None and j % pattern[1] == 0:
                group = slice(j, j + pattern[1])
                prune[:, group] = lowest_n_of_m(block[:, group] ** 2 / d[group] ** 2, pattern)
            kept = block[:, j].masked_fill(prune[:, j], 0)  # (out,)
            errors[:, j] = (block[:, j] - kept) / d[j]
            block[:, j:] -= errors[:, j, None] * u[j, j:][None, :]
            block[:, j] = kept  # exact zeros where pruned
        w[:, end:] -= errors @ upper[start:end, end:]
    return w.to(weight.dtype)


def reconstruction_error(weight: torch.Tensor, pruned: torch.Tensor, xtx: torch.Tensor) -> float:
    """``||(W - W') X||^2 / ||W X||^2`` on the calibration inputs, from ``H = X X^T`` (0 when ``W X = 0``)."""
    w, diff = weight.double(), (weight - pruned).double()
    total = float(torch.einsum("oi,ij,oj->", w, xtx.double(), w))
    return float(torch.einsum("oi,ij,oj->", diff, xtx.double(), diff)) / total if total > 0 else 0.0
