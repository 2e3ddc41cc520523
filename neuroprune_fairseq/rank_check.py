"""Check that every data-parallel rank holds the same masks and parameters after an elimination pass.

Elimination is deterministic given the parameters (explicit index tie-breaks, no randomness), so ranks
that entered a pass with identical parameters leave it identical; this check turns that guarantee into
a hard error if anything (a non-deterministic kernel, a desynchronised optimizer) breaks it.
"""
import torch
import torch.distributed as dist

from neuroprune.state_keys import MASK_BUFFER


def state_fingerprint(model) -> torch.Tensor:
    """(3,) float64: active heads, sum and sum of squares of all parameters."""
    masks = [b for n, b in model.named_buffers() if n.endswith(MASK_BUFFER)]
    params = list(model.parameters())
    device = params[0].device
    with torch.no_grad():
        return torch.stack([
            sum(m.double().sum() for m in masks).to(device),
            sum(p.double().sum() for p in params),
            sum(p.double().pow(2).sum() for p in params),
        ])


def check_identical_across_ranks(model) -> int:
    """All-gather the fingerprint; raise ``RuntimeError`` if ranks differ.

    Returns:
        The number of ranks compared (1 when not distributed).
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return 1
    mine = state_fingerprint(model)
    gathered = [torch.zeros_like(mine) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, mine)
    if any(not torch.equal(g, gathered[0]) for g in gathered):
        raise RuntimeError(f"neuroprune: ranks disagree after head elimination: {[g.tolist() for g in gathered]}")
    return len(gathered)
