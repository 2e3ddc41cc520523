"""The elimination pass's variants: the paper's default (unchanged but for the value-bias carry), the
data-aware fold, the importance keep rule, the scale-free and output similarities."""
import pytest
import torch
from fairseq.modules.multihead_attention import MultiheadAttention

from neuroprune.core.fold import fit_head_map, head_output_energy
from neuroprune.core.heads import keep_most_important, linf_distances
from neuroprune.core.similarity import output_distances
from neuroprune_fairseq import head_masks
from neuroprune_fairseq.head_masks import PassVariant

from .fixtures.make_paper_reference import reference_modules

REFERENCE = torch.load(__import__("pathlib").Path(__file__).with_name("fixtures") / "paper_reference.pt")


def _module(seed=0, embed=12, heads=3, copies=((0, 2),), v_bias_shift=0.0):
    """A random module whose heads ``i`` are exact copies of heads ``j`` for ``(i, j)`` in ``copies``;
    the copies' value biases shifted by ``v_bias_shift``."""
    torch.manual_seed(seed)
    attn = MultiheadAttention(embed, heads, self_attention=True)
    d = embed // heads
    with torch.no_grad():
        for p in attn.parameters():
            p.normal_(std=0.3)
        for i, j in copies:
            for proj in (attn.q_proj, attn.k_proj, attn.v_proj):
                proj.weight[i * d:(i + 1) * d] = proj.weight[j * d:(j + 1) * d]
                proj.bias[i * d:(i + 1) * d] = proj.bias[j * d:(j + 1) * d]
            attn.v_proj.bias[i * d:(i + 1) * d] += v_bias_shift
    head_masks.attach(attn)
    return attn.eval()


def _head_stats(attn, x):
    """Mean and covariance of the concatenated head outputs on inputs ``x`` (T, B, E), via out_proj's input."""
    seen = []
    attn.skip_embed_dim_check = True
    handle = attn.out_proj.register_forward_pre_hook(lambda _m, args: seen.append(args[0].reshape(-1, args[0].shape[-1])))
    with torch.no_grad():
        attn(x, x, x)
    handle.remove()
    rows = torch.cat(seen).double()
    return {"": (rows.mean(0), torch.cov(rows.T, correction=0))}


def _mse(attn, x, reference):
    with torch.no_grad():
        return float(((attn(x, x, x)[0] - reference) ** 2).mean())


def test_default_pass_matches_the_pre_variant_code_but_for_the_value_bias_carry():
    """Against a checkpoint pruned by the code before variants (tests/fixtures): every tensor equal,
    except out_proj.bias, which moved by exactly sum_i W_out[:, H_i] (b_v,i - b_v,j) (written out here)."""
    for key, run in (("budget_12", lambda m: head_masks.eliminate_to_budget(m, 12, 12)[1]),
                     ("theta_0.6", lambda m: head_masks.eliminate(m, 0.6))):
        modules = reference_modules()
        before = {k: v.clone() for k, v in modules.state_dict().items()}
        assert all(torch.equal(before[k], v) for k, v in REFERENCE["before"].items())
        plans = run(modules)
        after, expected = modules.state_dict(), REFERENCE[key]
        for name in expected:
            if not name.endswith("out_proj.bias"):
                assert torch.equal(after[name], expected[name]), (key, name)
        for m, plan in enumerate(plans.values()):
            carry = torch.zeros(24)
            for head, keeper in enumerate(plan.kept_for):
                if keeper not in (-1, head):
                    w = before[f"{m}.out_proj.weight"][:, 4 * head:4 * head + 4]
                    bv = before[f"{m}.v_proj.bias"]
                    carry += w @ (bv[4 * head:4 * head + 4] - bv[4 * keeper:4 * keeper + 4])
            assert torch.allclose(after[f"{m}.out_proj.bias"] - expected[f"{m}.out_proj.bias"], carry, atol=1e-6), key
        assert sum(len(p.pruned) for p in plans.values()) > 0


def test_paper_fold_keeps_the_output_of_heads_that_differ_only_in_value_bias():
    attn = _module(v_bias_shift=0.1)
    x = torch.randn(6, 2, 12)
    with torch.no_grad():
        before = attn(x, x, x)[0]
    bias_before = attn.out_proj.bias.clone()
    plan = head_masks.eliminate(attn, theta=0.0)[""]
    assert plan.kept_for == [2, 1, 2]
    assert _mse(attn, x, before) < 1e-12
    with torch.no_grad():  # without the carry the output moves: the test above can fail
        attn.out_proj.bias.copy_(bias_before)
    assert _mse(attn, x, before) > 1e-4


@pytest.mark.parametrize("shift", [0.0, 0.1])
def test_data_fold_is_exact_on_identical_heads(shift):
    attn = _module(v_bias_shift=shift)
    x = torch.randn(6, 4, 12)
    stats = _head_stats(attn, x)
    with torch.no_grad():
        before = attn(x, x, x)[0]
    mean, cov = stats[""]
    a, c = fit_head_map(mean, cov, 0, 2, 4, ridge=0.01)
    assert torch.allclose(a, torch.eye(4, dtype=torch.float64), atol=1e-6)  # float32 head outputs
    assert torch.allclose(c, torch.full((4,), shift, dtype=torch.float64), atol=1e-6)
    head_masks.eliminate(attn, 0.0, PassVariant(fold="data"), stats)
    assert head_masks.head_mask(attn).tolist() == [0.0, 1.0, 1.0]
    assert _mse(attn, x, before) < 1e-10


@pytest.mark.parametrize("seed", range(4))
def test_data_fold_never_changes_the_output_more_than_masking_on_the_calibration_data(seed):
    """Dissimilar random heads forced together (theta large): on the data the fold was fitted on, the
    folded module's output is at least as close to the original as the mask-only module's, and
    (ordinary least squares being strictly better here) closer than the paper's fold."""
    x = torch.randn(8, 6, 12, generator=torch.Generator().manual_seed(seed))
    results = {}
    for fold in ("none", "data", "paper"):
        attn = _module(seed=seed, heads=3, copies=())
        with torch.no_grad():
            before = attn(x, x, x)[0]
        stats = _head_stats(attn, x)
        head_masks.eliminate(attn, 100.0, PassVariant(fold=fold, ridge=0.0), stats)
        assert int(head_masks.head_mask(attn).sum()) == 1
        results[fold] = _mse(attn, x, before)
    assert results["data"] <= results["none"] + 1e-9
    assert results["data"] < results["paper"]


def test_fit_recovers_a_known_affine_map_and_stays_near_identity_for_a_dead_keeper():
    g = torch.Generator().manual_seed(0)
    target = torch.randn(500, 3, generator=g, dtype=torch.float64)
    true_a = torch.tensor([[1.0, 0.5, 0.0], [0.0, -2.0, 0.3], [0.2, 0.0, 0.7]], dtype=torch.float64)
    true_c = torch.tensor([0.1, -0.2, 0.3], dtype=torch.float64)
    rows = torch.cat([target @ true_a.T + true_c, target], 1)  # head 0 = A head 1 + c
    a, c = fit_head_map(rows.mean(0), torch.cov(rows.T, correction=0), 0, 1, 3, ridge=0.0)
    assert torch.allclose(a, true_a, atol=1e-8) and torch.allclose(c, true_c, atol=1e-8)
    dead = torch.cat([target, 1e-9 * torch.randn(500, 3, generator=g, dtype=torch.float64)], 1)  # keeper ~ constant
    a, _ = fit_head_map(dead.mean(0), torch.cov(dead.T, correction=0), 0, 1, 3, ridge=0.01)
    assert float((a - torch.eye(3, dtype=torch.float64)).abs().max()) < 0.5  # OLS would be ~1e9


def test_importance_rule_keeps_the_loudest_head_of_a_group():
    assert keep_most_important([2, 1, 2, -1, 1], torch.tensor([5.0, 1.0, 3.0, 9.0, 2.0])) == [0, 4, 0, -1, 4]
    attn = _module()
    with torch.no_grad():
        attn.out_proj.weight[:, 0:4] = 3.0 * attn.out_proj.weight[:, 8:12]  # head 0 (a copy of head 2), 3x louder
    x = torch.randn(6, 2, 12)
    stats = _head_stats(attn, x)
    energy = head_output_energy(attn.out_proj.weight, stats[""][1], 3)
    assert float(energy[0]) == pytest.approx(9 * float(energy[2]), rel=1e-6)  # same outputs, 3x the columns
    with torch.no_grad():
        before = attn(x, x, x)[0]
    head_masks.eliminate(attn, 0.0, PassVariant(keep="importance"), stats)
    assert head_masks.head_mask(attn).tolist() == [1.0, 1.0, 0.0]  # the paper would keep head 2
    assert _mse(attn, x, before) < 1e-12  # identical heads: folding either way is exact


def test_scaled_linf_ignores_scale_and_output_distance_finds_copies():
    attn = _module(copies=())
    with torch.no_grad():
        for proj in (attn.q_proj, attn.k_proj, attn.v_proj):
            proj.weight[8:12] = 0.5 * proj.weight[0:4]
    raw = linf_distances(attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight, 3)
    scaled = linf_distances(attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight, 3, scaled=True)
    assert float(raw[0, 2]) > 0.1 and float(scaled[0, 2]) < 1e-6 and float(scaled[0, 1]) > 0.1
    copy = _module()
    out = output_distances(copy.out_proj.weight, *_head_stats(copy, torch.randn(6, 4, 12))[""], 3, ridge=0.01)
    assert torch.allclose(out, out.T)
    assert float(out[0, 2]) < 1e-8 and float(out[0, 1]) > 0.1 and float(out[1, 2]) > 0.1


def test_bad_variants_and_missing_statistics_are_refused():
    with pytest.raises(ValueError, match="unknown fold 'sum'"):
        PassVariant(fold="sum")
    with pytest.raises(ValueError, match="unknown similarity"):
        PassVariant(similarity="cosine")
    with pytest.raises(ValueError, match="ridge must be >= 0"):
        PassVariant(ridge=-1.0)
    with pytest.raises(ValueError, match="needs calibration statistics"):
        head_masks.eliminate(_module(), 0.0, PassVariant(fold="data"))
