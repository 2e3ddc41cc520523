"""Similarity, Algorithm 3, chains, folding and planning on hand-built tensors."""
import itertools

import torch

from neuroprune.core.heads import (
    find_dominating,
    fold_out_projection,
    head_distances,
    head_parameters,
    plan_elimination,
    resolve_chains,
    similarity_matrix,
)


def _sim(edges, n):
    s = torch.eye(n, dtype=torch.bool)
    for i, j in edges:
        s[i, j] = s[j, i] = True
    return s


def test_head_parameters_slices_rows_per_head():
    """Head h owns rows h*d:(h+1)*d of each of q, k, v."""
    q = torch.arange(4 * 2, dtype=torch.float).reshape(4, 2)
    heads = head_parameters(q, q + 100, q + 200, num_heads=2)
    assert heads.shape == (2, 3 * 2 * 2)
    assert heads[1].tolist() == [4, 5, 6, 7, 104, 105, 106, 107, 204, 205, 206, 207]


def test_distance_is_l_inf_and_threshold_inclusive():
    params = torch.tensor([[0.0, 0.0], [0.1, -0.3], [0.0, 0.05]])
    d = head_distances(params)
    assert torch.allclose(d[0, 1], torch.tensor(0.3)) and torch.allclose(d[1, 2], torch.tensor(0.35))
    s = similarity_matrix(d, theta=0.3)
    assert s[0, 1] and s[0, 2] and not s[1, 2] and s.diagonal().all()


def test_non_similar_heads_are_all_kept():
    assert find_dominating(_sim([], 4)) == [0, 1, 2, 3]


def test_identical_neighbourhoods_keep_the_latest_head():
    """The paper's tie-break: among equal neighbourhoods the later head dominates."""
    assert find_dominating(_sim([(0, 1), (0, 2), (1, 2)], 3)) == [2, 2, 2]


def test_hub_dominates_its_leaves():
    """A head similar to all others (the hub) keeps, its leaves fold into it, even if earlier."""
    dom = find_dominating(_sim([(1, 0), (1, 2), (1, 3)], 4))
    assert dom == [1, 1, 1, 1]


def test_path_graph_keeps_the_two_inner_hubs():
    """Path 0-1-2-3: each end folds into its neighbour, the two middle heads are kept."""
    assert find_dominating(_sim([(0, 1), (1, 2), (2, 3)], 4)) == [1, 1, 2, 2]


def test_chain_resolves_to_a_kept_head():
    """A dominator map 3 -> 0 -> 1 -> 2 resolves every head to 2, the head that keeps itself."""
    assert resolve_chains([1, 2, 2, 0]) == [2, 2, 2, 2]


def test_algorithm3_output_has_no_chains_on_all_small_graphs():
    """Algorithm 3's scan only moves to supersets, so its pick is never itself replaced:
    checked on every similarity graph with 4 heads."""
    pairs = list(itertools.combinations(range(4), 2))
    for bits in range(1 << len(pairs)):
        dom = find_dominating(_sim([p for b, p in enumerate(pairs) if bits >> b & 1], 4))
        assert resolve_chains(dom) == dom


def test_fold_moves_out_columns_to_dominator():
    out = torch.arange(2 * 6, dtype=torch.float).reshape(2, 6)  # 3 heads, head_dim 2
    folded = fold_out_projection(out, kept_for=[2, 1, 2], head_dim=2)
    assert folded[:, 0:2].abs().sum() == 0
    assert torch.equal(folded[:, 2:4], out[:, 2:4])
    assert torch.equal(folded[:, 4:6], out[:, 4:6] + out[:, 0:2])


def test_merging_identical_heads_leaves_module_output_unchanged():
    """Two heads with equal q/k/v rows: folding one into the other keeps the output exactly."""
    torch.manual_seed(0)
    embed, heads, d = 8, 2, 4
    q, k, v = (torch.randn(embed, embed) for _ in range(3))
    for w in (q, k, v):
        w[d:] = w[:d]  # head 1 == head 0
    out = torch.randn(embed, embed)
    x = torch.randn(5, embed)

    def forward(q, k, v, out):
        qh, kh, vh = ((x @ w.T).reshape(5, heads, d).transpose(0, 1) for w in (q, k, v))  # (H, T, d)
        att = torch.softmax(qh @ kh.transpose(1, 2) / d**0.5, -1) @ vh  # (H, T, d)
        return att.transpose(0, 1).reshape(5, embed) @ out.T  # (T, embed)

    plan = plan_elimination(q, k, v, torch.ones(heads, dtype=torch.bool), theta=0.0)
    assert plan.kept_for == [1, 1] and plan.pruned == [0]
    keep = torch.tensor([0.0] * d + [1.0] * d)
    after = forward(q * keep[:, None], k * keep[:, None], v * keep[:, None], fold_out_projection(out, plan.kept_for, d))
    assert torch.allclose(after, forward(q, k, v, out), atol=1e-5)


def test_plan_ignores_masked_heads_and_keeps_one():
    """Masked heads (all zero, pairwise identical) are neither compared nor revived."""
    q = torch.zeros(6, 2)
    q[4:] = 1.0  # head 2 active and distinct
    plan = plan_elimination(q, q, q, torch.tensor([False, False, True]), theta=10.0)
    assert plan.kept_for == [-1, -1, 2] and plan.pruned == []
    assert plan.min_distance == float("inf")


def test_plan_high_theta_folds_everything_into_last_head():
    torch.manual_seed(0)
    q, k, v = (torch.randn(12, 6) for _ in range(3))
    plan = plan_elimination(q, k, v, torch.ones(3, dtype=torch.bool), theta=100.0)
    assert plan.kept_for == [2, 2, 2] and plan.pruned == [0, 1]
    assert plan.min_distance > 0
