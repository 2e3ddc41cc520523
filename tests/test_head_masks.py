"""Head masks on real fairseq MultiheadAttention modules: every forward path, loading, elimination."""
import pytest
import torch
from fairseq.modules.multihead_attention import MultiheadAttention

from neuroprune import checkpoint_stats
from neuroprune.state_keys import MASK_BUFFER
from neuroprune_fairseq import head_masks


def _module(seed=0, embed=12, heads=3):
    torch.manual_seed(seed)
    attn = MultiheadAttention(embed, heads, self_attention=True)
    for p in attn.parameters():
        torch.nn.init.normal_(p, std=0.3)
    head_masks.attach(attn)
    return attn.eval()


def _reference_without_head(attn, x, head):
    """Per-head attention computed by hand with head ``head`` left out."""
    T, B, E = x.shape
    H, d = attn.num_heads, attn.head_dim
    q = (attn.q_proj(x) * attn.scaling).view(T, B, H, d)
    k, v = attn.k_proj(x).view(T, B, H, d), attn.v_proj(x).view(T, B, H, d)
    probs = torch.softmax(torch.einsum("tbhd,sbhd->bhts", q, k), -1)  # (B, H, T, T)
    heads = torch.einsum("bhts,sbhd->tbhd", probs, v)  # (T, B, H, d)
    heads[:, :, head] = 0
    return heads.reshape(T, B, E) @ attn.out_proj.weight.T + attn.out_proj.bias


def test_masked_head_contributes_nothing_on_fast_and_incremental_paths():
    """Fused (teacher-forced) and incremental (beam search) paths both equal the reference
    computed with the masked head removed."""
    attn = _module()
    x = torch.randn(4, 2, 12)
    expected = _reference_without_head(attn, x, head=1)
    head_masks.head_mask(attn)[1] = 0
    head_masks.enforce_module(attn)
    fused, _ = attn(x, x, x)
    assert torch.allclose(fused, expected, atol=1e-5)
    state, steps = {}, []
    for t in range(4):  # incremental decoding never takes the fused path
        out, _ = attn(x[t : t + 1], x[t : t + 1], x[t : t + 1], incremental_state=state)
        steps.append(out)
    causal = _reference_without_head_causal(attn, x, head=1)
    assert torch.allclose(torch.cat(steps), causal, atol=1e-5)


def _reference_without_head_causal(attn, x, head):
    T = x.shape[0]
    return torch.cat([_reference_without_head(attn, x[: t + 1], head)[t : t + 1] for t in range(T)])


def test_enforce_zeroes_rows_biases_and_out_columns():
    attn = _module()
    head_masks.head_mask(attn)[0] = 0
    head_masks.enforce_module(attn)
    for proj in (attn.q_proj, attn.k_proj, attn.v_proj):
        assert proj.weight[:4].abs().sum() == 0 and proj.bias[:4].abs().sum() == 0
        assert proj.weight[4:].abs().sum() > 0
    assert attn.out_proj.weight[:, :4].abs().sum() == 0 and attn.out_proj.weight[:, 4:].abs().sum() > 0


def test_plain_checkpoint_without_masks_loads_with_all_heads_active():
    plain = MultiheadAttention(12, 3, self_attention=True)
    attn = _module()
    attn.load_state_dict(plain.state_dict())
    assert head_masks.head_mask(attn).tolist() == [1.0, 1.0, 1.0]


def test_loading_a_mask_zeroes_the_pruned_head():
    """A checkpoint's mask is applied on load even if its parameters were not zeroed."""
    attn = _module()
    state = {k: v.clone() for k, v in attn.state_dict().items()}
    state["np_head_mask"] = torch.tensor([1.0, 0.0, 1.0])
    attn.load_state_dict(state)
    assert attn.q_proj.weight[4:8].abs().sum() == 0


def test_mask_of_wrong_shape_is_refused_clearly():
    attn = _module()
    state = attn.state_dict()
    state["np_head_mask"] = torch.ones(4)
    with pytest.raises(ValueError, match="does not fit this architecture"):
        attn.load_state_dict(state)


def test_mask_with_no_active_head_is_refused():
    attn = _module()
    state = attn.state_dict()
    state["np_head_mask"] = torch.zeros(3)
    with pytest.raises(ValueError, match="at least one active head"):
        attn.load_state_dict(state)


def test_eliminate_identical_heads_keeps_output_and_masks():
    """Heads 0 and 2 made identical: the pass keeps 2 (later), masks 0, output unchanged."""
    attn = _module()
    with torch.no_grad():
        for proj in (attn.q_proj, attn.k_proj, attn.v_proj):
            proj.weight[0:4] = proj.weight[8:12]
            proj.bias[0:4] = proj.bias[8:12]
    x = torch.randn(5, 2, 12)
    before, _ = attn(x, x, x)
    plan = head_masks.eliminate(attn, theta=0.0)[""]  # the module itself is its only attention module
    after, _ = attn(x, x, x)
    assert plan.kept_for == [2, 1, 2]
    assert head_masks.head_mask(attn).tolist() == [0.0, 1.0, 1.0]
    assert torch.allclose(before, after, atol=1e-5)


def test_model_without_attention_is_refused():
    with pytest.raises(ValueError, match="no fairseq MultiheadAttention"):
        head_masks.attach(torch.nn.Linear(3, 3))


def test_budget_pass_hits_k_on_a_toy_model():
    """Three modules with distinct random heads: the smallest distance merges exactly one pair, so K = 8
    is hit exactly; smaller budgets are never undercut."""
    from torch import nn

    model = nn.ModuleList([_module(seed=s) for s in range(3)])  # 9 heads
    choice, plans = head_masks.eliminate_to_budget(model, target=8, floor=8)
    assert choice.reached and sum(head_masks.heads_kept(model).values()) == 8 == choice.kept
    assert sum(len(p.pruned) for p in plans.values()) == 1
    for k in (6, 4, 3):
        choice, _ = head_masks.eliminate_to_budget(model, target=k, floor=k)
        assert sum(head_masks.heads_kept(model).values()) == choice.kept >= k


def test_state_dict_zeroing_and_head_dim_match_the_live_module():
    """checkpoint_stats on a module's state dict gives fairseq's head_dim (full size and exported) and
    zeroes what enforce_module zeroes on the live module: the masked head's q/k/v rows and biases, its
    out-projection columns and its bias_k / bias_v entries, each checked slice by slice."""
    torch.manual_seed(0)
    attn = MultiheadAttention(12, 3, self_attention=True, add_bias_kv=True)
    for p in attn.parameters():
        torch.nn.init.normal_(p, std=0.3)
    head_masks.attach(attn)
    head_masks.head_mask(attn)[1] = 0
    state = {f"encoder.layers.0.self_attn.{k}": v.clone() for k, v in attn.state_dict().items()}
    original = {k: v.clone() for k, v in attn.state_dict().items()}
    head_masks.enforce_module(attn)
    masked = checkpoint_stats.apply_head_masks(state)

    head = slice(4, 8)  # head 1 of width 12 // 3
    for name, live in attn.state_dict().items():
        from_state, before = masked[f"encoder.layers.0.self_attn.{name}"], original[name]
        assert torch.equal(from_state, live), name
        expected = before.clone()
        if name.startswith(("q_proj", "k_proj", "v_proj")):
            expected[head] = 0
        elif name in ("out_proj.weight", "bias_k", "bias_v"):
            expected[..., head] = 0
        assert torch.equal(live, expected), name
    heads = {"encoder": attn.num_heads}
    assert checkpoint_stats.module_head_dim(state, "encoder.layers.0.self_attn", heads) == attn.head_dim == 4
    exported = {k: v for k, v in state.items() if not k.endswith(MASK_BUFFER)}
    exported["encoder.layers.0.self_attn.q_proj.weight"] = state["encoder.layers.0.self_attn.q_proj.weight"][:8]
    exported["encoder.layers.0.self_attn.out_proj.weight"] = state["encoder.layers.0.self_attn.out_proj.weight"][:, :8]
    assert checkpoint_stats.module_head_dim(exported, "encoder.layers.0.self_attn", heads) == 4
    assert checkpoint_stats.module_masks(exported, heads) == {"encoder.layers.0.self_attn": [1, 1, 0]}
