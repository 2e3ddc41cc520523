"""One-shot pruning of one matrix (magnitude, Wanda, SparseGPT) and of one ReLU FFN block (SparseLLM), on random data."""
import logging

import pytest
import torch
import torch.nn.functional as F

from neuroprune.core.post_training import (
    check_pattern, check_sparsity, inverse_hessian_factor, magnitude, parse_pattern, reconstruction_error, sparsegpt,
    spread, wanda,
)
from neuroprune.core.sparsellm import sparsellm_ffn, update_p, update_z


def correlated_inputs(tokens, width, seed):
    """(tokens, width) inputs with correlated columns of unequal scale, like a real layer's."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(tokens, width, generator=g, dtype=torch.float64) @ torch.randn(width, width, generator=g, dtype=torch.float64)


def random_weight(rows, cols, seed):
    return torch.randn(rows, cols, generator=torch.Generator().manual_seed(seed))


def hessian(x):
    return x.T @ x  # (in, in)


def ffn(seed, tokens=400, width=24, hidden=32):
    g = torch.Generator().manual_seed(seed)
    x = correlated_inputs(tokens, width, seed).float() * 0.3
    return (torch.randn(hidden, width, generator=g) * 0.3, torch.randn(hidden, generator=g) * 0.1,
            torch.randn(width, hidden, generator=g) * 0.3, torch.randn(width, generator=g) * 0.1, x)


PRUNERS = {
    "magnitude": lambda w, h, s, pattern=None: magnitude(w, s, pattern),
    "wanda": lambda w, h, s, pattern=None: wanda(w, h, s, pattern),
    "sparsegpt": lambda w, h, s, pattern=None: sparsegpt(w, h, s, pattern, block_size=8),
}


def test_sparsegpt_at_sparsity_zero_returns_the_weight_unchanged():
    """No weight pruned means no error to compensate: every entry comes back bit for bit."""
    w, x = random_weight(9, 20, 0), correlated_inputs(100, 20, 0)
    assert torch.equal(sparsegpt(w, hessian(x), 0.0, block_size=8), w)


@pytest.mark.parametrize("method", list(PRUNERS))
@pytest.mark.parametrize("shape,sparsity", [((7, 10), 0.33), ((13, 24), 0.5), ((5, 24), 0.9), ((6, 11), 0.05)])
def test_each_method_zeroes_exactly_round_s_n_entries(method, shape, sparsity):
    """7x10 at 0.33 -> round(23.1) = 23 zeros; the blocks of SparseGPT (8 columns) and the rows of Wanda
    must share out that count exactly, even when it does not divide evenly."""
    w, x = random_weight(*shape, 1), correlated_inputs(60, shape[1], 1)
    pruned = PRUNERS[method](w, hessian(x), sparsity)
    assert int((pruned == 0).sum()) == round(sparsity * w.numel())
    if method == "wanda":
        per_row = (pruned == 0).sum(1)
        assert int(per_row.max() - per_row.min()) <= 1


@pytest.mark.parametrize("method", list(PRUNERS))
def test_each_method_follows_an_n_m_pattern(method):
    """2:4 and 1:4: every group of 4 consecutive inputs of every row holds exactly N zeros."""
    w, x = random_weight(6, 16, 2), correlated_inputs(80, 16, 2)
    for n in (1, 2):
        groups = (PRUNERS[method](w, hessian(x), None, (n, 4)) == 0).reshape(6, 4, 4)
        assert bool((groups.sum(-1) == n).all())


def test_spread_shares_a_count_in_proportion_and_exactly():
    assert spread(23, [8, 2]) == [18, 5]  # 23 * 8 / 10 = 18.4 -> 18, the rest 5
    assert spread(10, [1, 1, 1]) == [3, 4, 3] and sum(spread(7, [5] * 4)) == 7


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("sparsity", [0.5, 0.7, 0.9])
def test_sparsegpt_reconstructs_no_worse_than_magnitude_on_random_data(seed, sparsity):
    w, x = random_weight(24, 32, seed), correlated_inputs(300, 32, seed + 10)
    h = hessian(x)
    sgpt = float(((w.double() - sparsegpt(w, h, sparsity, block_size=16).double()) @ x.T).pow(2).sum())
    mag = float(((w.double() - magnitude(w, sparsity).double()) @ x.T).pow(2).sum())
    assert sgpt <= mag
    assert reconstruction_error(w, magnitude(w, sparsity), h) == pytest.approx(mag / float((w.double() @ x.T).pow(2).sum()))


def obs_reference(w, h, sparsity, block, damp):
    """SparseGPT written the slow way: the optimal brain surgeon update with the inverse of the (dampened)
    Hessian restricted to the columns not yet pruned, inverted explicitly at every column."""
    w, h = w.double().clone(), h.double()
    h = h + damp * h.diagonal().mean() * torch.eye(h.shape[0], dtype=h.dtype)
    rows, cols = w.shape
    for start in range(0, cols, block):
        columns = range(start, start + block)
        saliency = torch.stack([w[:, j] ** 2 / torch.linalg.inv(h[j:, j:])[0, 0] for j in columns], 1)  # (rows, block)
        order = torch.argsort(saliency.flatten(), stable=True)[: round(sparsity * rows * block)]
        prune = torch.zeros(rows * block, dtype=torch.bool)
        prune[order] = True
        prune = prune.view(rows, block)
        for k, j in enumerate(columns):
            inverse = torch.linalg.inv(h[j:, j:])  # (cols - j, cols - j)
            kept = w[:, j].masked_fill(prune[:, k], 0)
            w[:, j:] -= torch.outer((w[:, j] - kept) / inverse[0, 0], inverse[0])
            w[:, j] = kept
    return w


def test_sparsegpt_matches_the_obs_update_computed_with_explicit_inverses():
    """The Cholesky rows and the lazy block updates must equal the textbook OBS sequence."""
    w, x = random_weight(6, 12, 3).double(), correlated_inputs(50, 12, 3)
    expected = obs_reference(w, hessian(x), 0.5, block=4, damp=0.01)
    assert torch.allclose(sparsegpt(w, hessian(x), 0.5, block_size=4, damp=0.01), expected, atol=1e-9)


def test_wanda_ranks_by_weight_times_input_norm_within_each_row():
    """Input 0 carries 100x the signal of the others: Wanda keeps its small weights, magnitude drops them;
    with inputs of equal norm Wanda is magnitude pruning row by row."""
    w = torch.tensor([[0.1, 1.0, 2.0, 3.0], [0.2, 3.0, 1.0, 2.0]])
    h = torch.diag(torch.tensor([1e4, 1.0, 1.0, 1.0]))
    assert torch.equal(wanda(w, h, 0.5), torch.tensor([[0.1, 0.0, 0.0, 3.0], [0.2, 3.0, 0.0, 0.0]]))
    assert torch.equal(magnitude(w, 0.5), torch.tensor([[0.0, 0.0, 2.0, 3.0], [0.0, 3.0, 0.0, 2.0]]))
    same = random_weight(5, 8, 4)
    by_row = torch.stack([row.masked_fill(row.abs() <= row.abs().sort().values[3], 0) for row in same])
    assert torch.equal(wanda(same, torch.eye(8) * 7.0, 0.5), by_row)


def test_sparsellm_iteration_zero_is_sparsegpt_on_both_matrices():
    w1, b1, w2, b2, x = ffn(5)
    result = sparsellm_ffn(w1, b1, w2, b2, x, 0.6, iterations=1, block_size=8)
    p = F.relu(x.double() @ w1.double().T + b1.double())  # (n, hidden): the dense activations fc2 reads
    assert torch.equal(result.fc1, sparsegpt(w1, hessian(x.double()), 0.6, block_size=8))
    assert torch.equal(result.fc2, sparsegpt(w2, hessian(p), 0.6, block_size=8))


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("sparsity,pattern", [(0.5, None), (0.8, None), (None, (2, 4))])
def test_sparsellm_objective_never_increases_and_sparsity_is_kept(seed, sparsity, pattern):
    w1, b1, w2, b2, x = ffn(seed)
    result = sparsellm_ffn(w1, b1, w2, b2, x, sparsity, pattern, iterations=6, block_size=8)
    history = result.objective
    assert all(later <= earlier * (1 + 1e-12) for earlier, later in zip(history, history[1:]))
    assert history[-1] < 0.9 * history[0]  # the alternating steps do lower it
    share = 0.5 if pattern else sparsity
    for pruned in (result.fc1, result.fc2):
        assert int((pruned == 0).sum()) == round(share * pruned.numel())
    assert len(result.output_error) == 6 and all(0 < e < 1 for e in result.output_error)


def test_z_step_is_the_per_entry_minimum():
    """Against a fine grid search of alpha (z - m)^2 + gamma (p - relu(z))^2 for each entry."""
    g = torch.Generator().manual_seed(6)
    m, p = torch.randn(40, generator=g, dtype=torch.float64), torch.randn(40, generator=g, dtype=torch.float64)
    z = update_z(m, p, 0.3, 0.7)
    grid = torch.linspace(-4, 4, 80001, dtype=torch.float64)[:, None]  # (G, 1)
    cost = 0.3 * (grid - m) ** 2 + 0.7 * (p - grid.clamp_min(0)) ** 2  # (G, 40)
    best = cost.min(0).values
    assert torch.all(0.3 * (z - m) ** 2 + 0.7 * (p - z.clamp_min(0)) ** 2 <= best + 1e-9)


def test_p_step_is_the_ridge_least_squares_solution():
    """Against torch.linalg.lstsq on the stacked system [sqrt(beta) W2^T; sqrt(gamma) I] p = [sqrt(beta) t; sqrt(gamma) relu(z)]."""
    g = torch.Generator().manual_seed(7)
    w2, t, z = (torch.randn(*s, generator=g, dtype=torch.float64) for s in ((5, 8), (30, 5), (30, 8)))
    beta, gamma = 0.4, 0.1
    a = torch.cat([beta ** 0.5 * w2, gamma ** 0.5 * torch.eye(8, dtype=torch.float64)])  # (13, 8)
    b = torch.cat([beta ** 0.5 * t.T, gamma ** 0.5 * F.relu(z).T])  # (13, 30)
    assert torch.allclose(update_p(w2, t, z, beta, gamma), torch.linalg.lstsq(a, b).solution.T, atol=1e-10)


def test_sparsellm_needs_more_tokens_than_the_ffn_width():
    w1, b1, w2, b2, x = ffn(0, tokens=32, hidden=32)
    with pytest.raises(ValueError, match="more calibration tokens than the FFN width: got 32 tokens for width 32"):
        sparsellm_ffn(w1, b1, w2, b2, x, 0.5)
    with pytest.raises(ValueError, match="at least 1 iteration"):
        sparsellm_ffn(w1, b1, w2, b2, torch.cat([x, x]), 0.5, iterations=0)


@pytest.mark.parametrize("bad", [1.0, -0.1, 1.5])
def test_sparsity_outside_zero_one_is_refused(bad):
    with pytest.raises(ValueError, match=r"sparsity must be in \[0, 1\)"):
        check_sparsity(bad)
    for method, prune in PRUNERS.items():
        with pytest.raises(ValueError, match=r"sparsity must be in \[0, 1\)"):
            prune(random_weight(4, 8, 0), torch.eye(8), bad)


@pytest.mark.parametrize("text", ["2:2", "0:4", "3", "a:b", "2:4:8", "-1:4"])
def test_malformed_patterns_are_refused(text):
    with pytest.raises(ValueError, match=f"0 < N < M written N:M .*got '{text}'"):
        parse_pattern(text)


def test_a_pattern_whose_m_does_not_divide_the_inputs_is_refused():
    assert parse_pattern("2:4") == (2, 4)
    with pytest.raises(ValueError, match="multiple of 5, but fc1 has 12 inputs"):
        check_pattern((2, 5), 12, "fc1")
    for prune in PRUNERS.values():
        with pytest.raises(ValueError, match="multiple of 5, but the matrix has 12 inputs"):
            prune(random_weight(4, 12, 0), torch.eye(12), None, (2, 5))
    with pytest.raises(ValueError, match="block size 6 must be a multiple of the pattern's M = 4"):
        sparsegpt(random_weight(4, 12, 0), torch.eye(12), None, (2, 4), block_size=6)


def test_an_indefinite_hessian_is_retried_with_more_dampening_and_logged(caplog):
    """diag(1, 1, -0.02): 1 % of the mean diagonal (0.66) does not make it positive, 10 % does."""
    h = torch.diag(torch.tensor([1.0, 1.0, -0.02]))
    with caplog.at_level(logging.WARNING):
        upper = inverse_hessian_factor(h, 0.01)
    assert "not positive definite with dampening 0.01" in caplog.text and "retrying with 0.1" in caplog.text
    damped = h.double() + 0.1 * (1.98 / 3) * torch.eye(3, dtype=torch.float64)
    assert torch.allclose(upper.T @ upper, torch.linalg.inv(damped))


def test_a_hessian_that_stays_singular_is_refused_after_the_retries(caplog):
    h = torch.eye(4)
    h[1, 1] = float("nan")
    with caplog.at_level(logging.WARNING), pytest.raises(ValueError, match="not positive definite even with dampening 100"):
        sparsegpt(random_weight(3, 4, 0), h, 0.5)
    assert caplog.text.count("retrying") == 4
