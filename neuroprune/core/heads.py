"""Redundant-head elimination (paper Sec. 4.3, Algorithms 2 and 3), on plain tensors.

Layout follows ``nn.Linear`` (out, in): head ``h`` of a module with ``head_dim = d`` owns rows
``h*d:(h+1)*d`` of the q/k/v weights and biases and columns ``h*d:(h+1)*d`` of the out-projection
weight (the weights that consume the head's output, the paper's ``L_in,H``).
"""
from dataclasses import dataclass, field
from typing import List

import torch


def head_parameters(q_weight: torch.Tensor, k_weight: torch.Tensor, v_weight: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Each head's [Q, K, V] weight slices, flattened and concatenated.

    The inputs may differ in width (cross-attention whose keys/values come from a narrower or wider
    encoder): two heads of one module are compared entry by entry within Q, within K and within V, which
    read the same inputs, so the l_inf distance of :func:`head_distances` is the largest of the three.

    Args:
        q_weight, k_weight, v_weight: (embed, in_q), (embed, in_k), (embed, in_v) projection weights.
        num_heads: heads in the module; must divide ``embed``.
    Returns:
        (num_heads, head_dim * (in_q + in_k + in_v)) tensor.
    """
    embed = q_weight.shape[0]
    if embed % num_heads != 0:
        raise ValueError(f"num_heads={num_heads} does not divide the projection size {embed}")
    per_head = [w.reshape(num_heads, -1) for w in (q_weight, k_weight, v_weight)]  # (H, d*in_w) each
    return torch.cat(per_head, dim=1)  # (H, d*(in_q+in_k+in_v))


def head_distances(head_params: torch.Tensor) -> torch.Tensor:
    """Pairwise l_inf distance between heads.

    Args:
        head_params: (H, P) from :func:`head_parameters`.
    Returns:
        (H, H) symmetric float tensor with a zero diagonal.
    """
    return (head_params[:, None, :] - head_params[None, :, :]).abs().amax(dim=-1)  # (H, H)


def similarity_matrix(distances: torch.Tensor, theta: float) -> torch.Tensor:
    """``S[i, j] = 1{l_inf(A_i, A_j) <= theta}`` with ``S[i, i] = 1`` (Algorithm 2).

    Args:
        distances: (H, H) from :func:`head_distances`.
        theta: similarity threshold (>= 0).
    Returns:
        (H, H) bool tensor.
    """
    similar = distances <= theta
    similar.fill_diagonal_(True)
    return similar


def find_dominating(similar: torch.Tensor) -> List[int]:
    """Algorithm 3 (FIND_DOMINATING) exactly as written in the paper.

    For each head ``i`` start with ``j* = i`` and scan ``j = 0..H-1``: move to ``j`` when ``j``'s
    neighbourhood strictly contains ``j*``'s (``s = S[j*] - S[j]`` has a -1 and no +1), or when the
    neighbourhoods are equal and ``j`` comes later (``j* < j``; the bias towards later heads).

    Args:
        similar: (H, H) bool similarity matrix with a true diagonal.
    Returns:
        ``dominator`` list of length H: ``dominator[i]`` is the ``j*`` found for head ``i``
        (``D[i, j*] = 1``); ``dominator[i] == i`` means the scan kept ``i``.
    """
    rows = similar.tolist()
    num_heads = len(rows)
    dominator = []
    for i in range(num_heads):
        best = i
        for j in range(num_heads):
            diff = [a - b for a, b in zip(rows[best], rows[j])]  # S[j*] - S[j]
            strictly_contained = -1 in diff and 1 not in diff
            equal_and_later = not any(diff) and best < j
            if strictly_contained or equal_and_later:
                best = j
        dominator.append(best)
    return dominator


def resolve_chains(dominator: List[int]) -> List[int]:
    """Follow ``i -> dominator[i] -> ...`` until a head that dominates itself.

    Every step moves to a strictly larger neighbourhood or to an equal one at a later index, so the
    walk cannot cycle and ends at a kept head.

    Args:
        dominator: output of :func:`find_dominating`.
    Returns:
        ``kept_for`` list: the kept head each head is folded into (itself when kept).
    """
    kept_for = []
    for head in range(len(dominator)):
        seen = {head}
        while dominator[head] != head:
            head = dominator[head]
            if head in seen:
                raise ValueError(f"domination cycle through head {head}: {dominator}")
            seen.add(head)
        kept_for.append(head)
    return kept_for


@dataclass
class EliminationPlan:
    """What one elimination pass does to one attention module.

    Attributes:
        kept_for: length-H list; ``kept_for[h]`` is the active head that ``h`` is folded into
            (``h`` itself when kept), or ``-1`` for a head that was already masked.
        min_distance: smallest l_inf distance between two active heads (inf with < 2 active).
    """

    kept_for: List[int]
    min_distance: float

    @property
    def pruned(self) -> List[int]:
        """Heads this pass removes."""
        return [h for h, k in enumerate(self.kept_for) if k not in (-1, h)]


@dataclass
class ModuleDistances:
    """Pairwise head distances of one module's active heads.

    Attributes:
        num_heads: heads in the module, active or not.
        live: indices of the active heads, ascending.
        distances: (L, L) l_inf distances between the active heads.
        min_distance: smallest distance between two active heads (inf with fewer than two); derived once
            here because every plan at every candidate theta reports it.
    """

    num_heads: int
    live: List[int]
    distances: torch.Tensor
    min_distance: float = field(init=False)

    def __post_init__(self):
        if len(self.live) < 2:
            self.min_distance = float("inf")
        else:
            inf_diagonal = torch.diag(torch.full((len(self.live),), float("inf"), device=self.distances.device))
            self.min_distance = float((self.distances + inf_diagonal).min())


def linf_distances(q_weight: torch.Tensor, k_weight: torch.Tensor, v_weight: torch.Tensor, num_heads: int,
                   scaled: bool = False) -> torch.Tensor:
    """(H, H) l_inf distances between the heads' [Q, K, V] slices (:func:`head_parameters`).

    ``scaled`` divides each head's slice by its largest magnitude first, so the distance compares the
    weights' pattern rather than their scale (on a dense model the raw distance between two heads is
    about their largest weight).
    """
    params = head_parameters(q_weight.detach().float(), k_weight.detach().float(), v_weight.detach().float(), num_heads)  # (H, P)
    if scaled:
        params = params / params.abs().amax(dim=1, keepdim=True).clamp_min(1e-12)
    return head_distances(params)


def live_distances(distances: torch.Tensor, active: torch.Tensor) -> ModuleDistances:
    """A module's (H, H) distances restricted to its active heads.

    Masked heads are left out (their all-zero slices would otherwise look alike).

    Args:
        distances: (H, H); active: (H,) bool, heads not yet masked; at least one must be true.
    """
    live = [h for h in range(active.numel()) if bool(active[h])]
    if not live:
        raise ValueError("an attention module must keep at least one active head")
    return ModuleDistances(num_heads=active.numel(), live=live, distances=distances[live][:, live])


def module_distances(q_weight: torch.Tensor, k_weight: torch.Tensor, v_weight: torch.Tensor, active: torch.Tensor) -> ModuleDistances:
    """The paper's l_inf distances between the active heads of one module.

    Args:
        q_weight, k_weight, v_weight: (embed, in_q), (embed, in_k), (embed, in_v) projection weights.
        active: (H,) bool, heads not yet masked; at least one must be true.
    """
    return live_distances(linf_distances(q_weight, k_weight, v_weight, active.numel()), active)


def plan_from_distances(module: ModuleDistances, theta: float) -> EliminationPlan:
    """Algorithm 2 (ELIM_REDUNDANT) on one module's active heads at threshold ``theta``.

    Indices keep their order, so the bias towards later heads is the paper's.
    """
    kept_for = [-1] * module.num_heads
    local = resolve_chains(find_dominating(similarity_matrix(module.distances, theta)))
    for position, head in enumerate(module.live):
        kept_for[head] = module.live[local[position]]
    return EliminationPlan(kept_for=kept_for, min_distance=module.min_distance)


def plan_elimination(
    q_weight: torch.Tensor,
    k_weight: torch.Tensor,
    v_weight: torch.Tensor,
    active: torch.Tensor,
    theta: float,
) -> EliminationPlan:
    """Algorithm 2 restricted to the module's active heads (see :func:`module_distances`).

    Args:
        q_weight, k_weight, v_weight: (embed, in_q), (embed, in_k), (embed, in_v) projection weights.
        active: (H,) bool, heads not yet masked; at least one must be true.
        theta: similarity threshold.
    Returns:
        An :class:`EliminationPlan`; at least one active head is always kept.
    """
    return plan_from_distances(module_distances(q_weight, k_weight, v_weight, active), theta)


def fold_out_projection(out_weight: torch.Tensor, kept_for: List[int], head_dim: int) -> torch.Tensor:
    """Fold each pruned head's out-projection columns into its kept dominator, zero its own.

    ``out[:, J] += out[:, H_i]`` for every head ``i`` pruned into ``J`` (the paper's
    ``L_in,J = L_in,J + L_in,H_i``). When the two heads compute identical outputs the module's output
    is unchanged.

    Args:
        out_weight: (out, H * head_dim) out-projection weight.
        kept_for: from :class:`EliminationPlan`.
        head_dim: columns per head.
    Returns:
        New (out, H * head_dim) tensor.
    """
    folded = out_weight.clone()
    for head, keeper in enumerate(kept_for):
        if keeper in (-1, head):
            continue
        source = slice(head * head_dim, (head + 1) * head_dim)
        target = slice(keeper * head_dim, (keeper + 1) * head_dim)
        folded[:, target] += out_weight[:, source]
        folded[:, source] = 0
    return folded


def head_row_mask(head_mask: torch.Tensor, head_dim: int) -> torch.Tensor:
    """Expand a per-head mask to the q/k/v rows (or out-projection columns) it covers.

    Args:
        head_mask: (H,) 0/1 tensor.
        head_dim: rows per head.
    Returns:
        (H * head_dim,) tensor of the mask's dtype.
    """
    return head_mask.repeat_interleave(head_dim)  # (H*d,)


def keep_most_important(kept_for: List[int], importance: torch.Tensor) -> List[int]:
    """The importance rule for which head stays: in each group of heads folded together, the head
    with the largest ``importance`` is kept and the others are folded into it (ties: lower index).

    Args:
        kept_for: a plan's ``kept_for`` (the groups are the heads sharing a keeper).
        importance: (H,) scores.
    Returns:
        New ``kept_for`` with the same groups.
    """
    best = {}
    for head, keeper in enumerate(kept_for):
        if keeper == -1:
            continue
        if keeper not in best or float(importance[head]) > float(importance[best[keeper]]):
            best[keeper] = head
    return [-1 if keeper == -1 else best[keeper] for keeper in kept_for]
