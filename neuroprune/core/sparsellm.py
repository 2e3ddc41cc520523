"""SparseLLM (Ling, Bai, Kim, Zhao, Li 2024, arXiv 2402.17946) on one ReLU feed-forward block: fc1 and fc2
pruned jointly through auxiliary variables (tensors in, tensors out).

The block is ``y = W2 relu(W1 x + b1) + b2``. With the calibration inputs as rows ``X`` (n, d) and the dense
block's output ``Y`` (n, d_out) as the target, the pre-activation ``z`` (n, f) and the activation output
``p`` (n, f) become free variables, and

    F = alpha ||z - X W1^T - b1||^2 + gamma ||p - relu(z)||^2 + beta ||p W2^T + b2 - Y||^2

is minimised over sparse W1, W2 and over p, z, one block of variables at a time (biases stay fixed):

- iteration 0: z and p start at the dense block's values; W1 and W2 are pruned by SparseGPT (Hessians
  ``X^T X`` and ``p^T p``), which is exactly layer-wise SparseGPT;
- every further iteration refits W1 to ``z - b1`` and W2 to ``(p, Y - b2)`` by ridge least squares and
  prunes each refit by SparseGPT on its own inputs' Hessian (for a least-squares refit ``W*``, its term of F
  is a constant plus ``||(W - W*) inputs^T||^2``, what SparseGPT minimises);
- every iteration then sets p by a ridge solve (exact: ``(beta W2^T W2 + gamma I) p = beta W2^T (Y - b2)
  + gamma relu(z)`` per token) and z in closed form (per entry, the better of the minimisers over z >= 0
  and over z <= 0).

Every re-pruned matrix is taken, as in the paper and its public code. SparseGPT only approximates the
constrained W steps, so F can rise at an iteration; ``acceptance_test=True`` keeps a re-pruned matrix only
when its term of F is not larger, and with the p and z steps exact, F then never increases after iteration
0. That test is not in the paper: the z step pulls z towards the current fc1's output, so the re-pruned fc1
is rejected on most iterations and the result stays close to (or equal to) layer-wise SparseGPT.

Compared with the public code (BaiTheBest/SparseLLM, OPT path): the same weights alpha = beta = gamma =
0.1 (only their ratios matter) and 4 iterations by default; it refits W1 with the pseudo-inverse of X where
this uses a ridge solve, and moves W2 by 10 gradient steps (learning rate 0.01) where this refits W2 exactly.
Everything is computed in float64. The p step's Hessian ``p^T p`` (f, f) needs more calibration tokens than
the FFN width ``f``.
"""
from dataclasses import dataclass
from typing import Callable, List, Optional

import torch
import torch.nn.functional as F

from .post_training import Pattern, check_finite, check_sparsity, sparsegpt


@dataclass
class PrunedFfn:
    """SparseLLM's result: the pruned weights and, after each iteration, F per token and the block's errors.

    Iteration 0 is layer-wise SparseGPT, so ``output_error[0]`` and ``heldout_error[0]`` are SparseGPT's.
    """

    fc1: torch.Tensor  # (f, d)
    fc2: torch.Tensor  # (d_out, f)
    objective: List[float]  # F / n after iterations 0, 1, ...
    output_error: List[float]  # ||Y - Y_hat||^2 / ||Y||^2 of the block with that iteration's weights, calibration inputs
    heldout_error: List[float]  # the same on the held-out inputs (empty without them)


def squared(t: torch.Tensor) -> float:
    return float(t.pow(2).sum())


def ridge_fit(inputs: torch.Tensor, targets: torch.Tensor, damp: float) -> torch.Tensor:
    """``W`` minimising ``||inputs W^T - targets||^2 + lambda ||W||^2``, ``lambda = damp * mean(diag(inputs^T inputs))``.

    Args:
        inputs: (n, i); targets: (n, o).
    Returns:
        (o, i).
    """
    gram = inputs.T @ inputs  # (i, i)
    ridge = damp * (float(gram.diagonal().mean()) or 1.0)
    eye = torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
    return torch.linalg.solve(gram + ridge * eye, inputs.T @ targets).T


def update_p(fc2: torch.Tensor, target: torch.Tensor, z: torch.Tensor, beta: float, gamma: float) -> torch.Tensor:
    """The p (n, f) minimising ``beta ||p W2^T - target||^2 + gamma ||p - relu(z)||^2``; target = Y - b2 (n, d_out)."""
    eye = torch.eye(fc2.shape[1], dtype=fc2.dtype, device=fc2.device)
    system = beta * fc2.T @ fc2 + gamma * eye  # (f, f), positive definite for gamma > 0
    return torch.linalg.solve(system, (beta * target @ fc2 + gamma * F.relu(z)).T).T


def update_z(m: torch.Tensor, p: torch.Tensor, alpha: float, gamma: float) -> torch.Tensor:
    """Per entry, the z minimising ``alpha (z - m)^2 + gamma (p - relu(z))^2``; m = X W1^T + b1 (n, f)."""
    nonneg = ((alpha * m + gamma * p) / (alpha + gamma)).clamp_min(0)  # best z >= 0
    nonpos = m.clamp_max(0)  # best z <= 0

    def cost(z):
        return alpha * (z - m) ** 2 + gamma * (p - F.relu(z)) ** 2

    return torch.where(cost(nonneg) <= cost(nonpos), nonneg, nonpos)


def output_error(x: torch.Tensor, fc1: torch.Tensor, b1: torch.Tensor, fc2: torch.Tensor, dense: torch.Tensor,
                 b2: torch.Tensor) -> float:
    """``||Y - Y_hat||^2 / ||Y||^2`` of the block with weights fc1 (f, d), fc2 (d_out, f) on rows x (n, d), where
    ``dense`` (n, d_out) is ``Y - b2`` (0 when ``Y = 0``)."""
    return squared(F.relu(x @ fc1.T + b1) @ fc2.T - dense) / max(squared(dense + b2), 1e-300)


def check_ffn(fc1: torch.Tensor, b1: torch.Tensor, fc2: torch.Tensor, b2: torch.Tensor, inputs: torch.Tensor,
              heldout: Optional[torch.Tensor]) -> None:
    """``ValueError`` naming the tensor that is not finite or whose size does not fit fc1 (f, d)."""
    f, d = fc1.shape
    sizes = {"fc1's bias": (b1, (f,)), "fc2's weight": (fc2, (fc2.shape[0], f)), "fc2's bias": (b2, (fc2.shape[0],)),
             "fc1's calibration input matrix": (inputs, (inputs.shape[0], d))}
    if heldout is not None:
        sizes["fc1's held-out input matrix"] = (heldout, (heldout.shape[0], d))
    for what, (tensor, shape) in sizes.items():
        if tuple(tensor.shape) != shape:
            raise ValueError(f"{what} is {tuple(tensor.shape)}, expected {shape} for fc1 {(f, d)}")
    for what, tensor in {"fc1's weight": fc1, **{k: t for k, (t, _) in sizes.items()}}.items():
        check_finite(tensor, what)


def _better(current: torch.Tensor, candidate: torch.Tensor, term: Callable[[torch.Tensor], float]) -> torch.Tensor:
    return candidate if term(candidate) <= term(current) else current


def sparsellm_ffn(fc1: torch.Tensor, b1: torch.Tensor, fc2: torch.Tensor, b2: torch.Tensor, inputs: torch.Tensor,
                  sparsity: float, pattern: Optional[Pattern] = None, iterations: int = 4,
                  alpha: float = 0.1, beta: float = 0.1, gamma: float = 0.1,
                  block_size: int = 128, damp: float = 0.01, acceptance_test: bool = False,
                  heldout: Optional[torch.Tensor] = None) -> PrunedFfn:
    """Prune a ReLU FFN block's fc1 (f, d) and fc2 (d_out, f) jointly by SparseLLM.

    Args:
        b1: (f,); b2: (d_out,): the biases (zeros for a layer without bias).
        inputs: (n, d) calibration inputs of fc1, one row per token; n must exceed f.
        sparsity, pattern, block_size, damp: as for :func:`~.post_training.sparsegpt`, applied to both matrices.
        iterations: alternating rounds, iteration 0 (layer-wise SparseGPT) included.
        alpha, beta, gamma: weights of F's three terms.
        acceptance_test: keep a re-pruned matrix only when its term of F is not larger (not in the paper).
        heldout: optional (m, d) other inputs of fc1, on which each iteration's block error is measured.
    Returns:
        :class:`PrunedFfn`, its weights in the input weights' dtype.
    Raises:
        ValueError: too few tokens, bad sparsity/pattern/iterations, a tensor not finite or of the wrong size
        (the message names it), or F not finite.
    """
    check_ffn(fc1, b1, fc2, b2, inputs, heldout)
    n, f = inputs.shape[0], fc1.shape[0]
    if n <= f:
        raise ValueError(f"SparseLLM needs more calibration tokens than the FFN width: got {n} tokens for width {f}")
    if iterations < 1:
        raise ValueError(f"SparseLLM needs at least 1 iteration, got {iterations}")
    if pattern is None:
        check_sparsity(sparsity)
    x, w1, w2, b1, b2 = (t.detach().double() for t in (inputs, fc1, fc2, b1, b2))  # (n, d), (f, d), (d_out, f)
    z = x @ w1.T + b1  # (n, f)
    p = F.relu(z)  # (n, f)
    target = p @ w2.T  # (n, d_out): Y - b2 of the dense block
    xtx = x.T @ x  # (d, d)
    if heldout is not None:
        held = heldout.detach().double()  # (m, d)
        held_dense = F.relu(held @ w1.T + b1) @ w2.T  # (m, d_out): Y - b2 on the held-out inputs

    def prune(weight, hessian):
        return sparsegpt(weight, hessian, sparsity, pattern, block_size, damp)

    objective, calibration_error, heldout_error = [], [], []
    for step in range(iterations):
        if step == 0:
            w1, w2 = prune(w1, xtx), prune(w2, p.T @ p)
        else:
            new1, new2 = prune(ridge_fit(x, z - b1, damp), xtx), prune(ridge_fit(p, target, damp), p.T @ p)
            if acceptance_test:
                new1 = _better(w1, new1, lambda w: squared(z - x @ w.T - b1))
                new2 = _better(w2, new2, lambda w: squared(p @ w.T - target))
            w1, w2 = new1, new2
        p = update_p(w2, target, z, beta, gamma)
        m = x @ w1.T + b1  # (n, f)
        z = update_z(m, p, alpha, gamma)
        value = (alpha * squared(z - m) + gamma * squared(p - F.relu(z)) + beta * squared(p @ w2.T - target)) / n
        if value != value or value == float("inf"):
            raise ValueError(f"SparseLLM's objective is not finite at iteration {step}: increase the dampening")
        objective.append(value)
        calibration_error.append(output_error(x, w1, b1, w2, target, b2))
        if heldout is not None:
            heldout_error.append(output_error(held, w1, b1, w2, held_dense, b2))
    return PrunedFfn(w1.to(fc1.dtype), w2.to(fc2.dtype), objective, calibration_error, heldout_error)
