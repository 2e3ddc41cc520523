"""Two guards of the pruning code: a domination cycle is refused, and a pruned head's extra key/value biases
(fairseq's --add-bias-kv) are zeroed with its other parameters."""
import pytest
import torch
from fairseq.modules.multihead_attention import MultiheadAttention

from neuroprune.core.heads import resolve_chains
from neuroprune_fairseq import head_masks


def test_chains_resolve_to_the_head_at_their_end():
    assert resolve_chains([1, 2, 2, 3]) == [2, 2, 2, 3]


@pytest.mark.parametrize("dominator,head", [([1, 0], 0), ([0, 2, 3, 1], 1)])
def test_a_domination_cycle_is_refused_naming_a_head_on_it(dominator, head):
    """find_dominating cannot produce one; a corrupted or hand-made plan must not loop forever."""
    with pytest.raises(ValueError, match=rf"domination cycle through head {head}: \{dominator}"):
        resolve_chains(dominator)


def test_masked_heads_bias_k_and_bias_v_are_zeroed_and_the_others_kept():
    torch.manual_seed(0)
    attn = MultiheadAttention(12, 3, self_attention=True, add_bias_kv=True)  # head_dim 4
    with torch.no_grad():
        for p in attn.parameters():
            p.add_(torch.rand_like(p) + 0.5)  # every entry non-zero
    head_masks.attach(attn)
    before = {n: p.detach().clone() for n, p in attn.named_parameters()}
    head_masks.head_mask(attn)[1] = 0
    head_masks.enforce_module(attn)
    head_1 = slice(4, 8)
    for name in ("bias_k", "bias_v"):  # (1, 1, 12)
        extra = getattr(attn, name).detach()
        assert extra[..., head_1].abs().sum() == 0, name
        assert torch.equal(extra[..., :4], before[name][..., :4]) and torch.equal(extra[..., 8:], before[name][..., 8:]), name
