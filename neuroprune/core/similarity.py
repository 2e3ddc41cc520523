"""A data-aware distance between the heads of one attention module (the weight-only ones, the paper's
l_inf and its scale-free form, are ``core.heads.linf_distances``).

``output``: how badly one head's output predicts the other's on calibration data: the error of the
  data-aware fold of ``i`` into ``j`` relative to ``i``'s output variance (``core.fold``), the larger of
  the two directions. 0 for heads whose outputs are an affine map of each other, about 1 for unrelated heads.
"""
import torch

from .fold import fit_head_map, fold_into, head_output_energy, output_change_error


def output_distances(out_weight: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor, num_heads: int,
                     ridge: float) -> torch.Tensor:
    """(H, H) symmetric relative prediction errors between heads' outputs (see the module docstring).

    Args:
        out_weight: (E, H*d) out-projection weight; mean (H*d,), cov (H*d, H*d): head-output statistics.
        num_heads: H; ridge: as in ``core.fold.fit_head_map``.
    """
    weight = out_weight.detach().double()
    d = weight.shape[1] // num_heads
    energy = head_output_energy(weight, cov, num_heads)  # (H,)
    relative = torch.zeros(num_heads, num_heads, dtype=torch.float64)
    for i in range(num_heads):
        for j in range(num_heads):
            if i == j:
                continue
            folded = fold_into(weight, [(i, j, *fit_head_map(mean, cov, i, j, d, ridge))], d)
            relative[i, j] = output_change_error(weight, *folded, mean, cov) / max(float(energy[i]), 1e-30)
    return torch.maximum(relative, relative.T).float()
