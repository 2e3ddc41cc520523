"""Sparsity during training (``neuroprune_fairseq.sparse_training``): the gradual magnitude pruning schedule,
the fixed zeros and the proximal step, on a hand-built model with a masked head, against hand computations."""
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn
from fairseq.modules.multihead_attention import MultiheadAttention

from neuroprune.core.gradual import cubic_target, prune_smallest, soft_threshold
from neuroprune_fairseq import head_masks
from neuroprune_fairseq.sparse_training import WeightSparsity, prunable_matrices

EMBED, HEADS, FFN = 8, 2, 12  # head_dim 4


class Layer(nn.Module):
    def __init__(self):
        super().__init__()
        self.self_attn = MultiheadAttention(EMBED, HEADS, self_attention=True)
        self.fc1, self.fc2 = nn.Linear(EMBED, FFN), nn.Linear(FFN, EMBED)


def _model(seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(Layer())
    head_masks.attach(model)
    head_masks.head_mask(model[0].self_attn).copy_(torch.tensor([1.0, 0.0]))  # head 1 removed
    head_masks.enforce(model)
    return model


def _cfg(**kw):
    base = dict(np_keep_zeros=False, np_gmp_sparsity=0.0, np_gmp_start_update=0, np_gmp_end_update=0, np_gmp_interval=10,
                np_prox_strength=0.0)
    return SimpleNamespace(**{**base, **kw})


def _noisy_step(model, generator):
    """What an optimizer does to the weights: every entry moves, zeros included."""
    with torch.no_grad():
        for _, weight, _ in prunable_matrices(model):
            weight.add_(0.01 * torch.randn(weight.shape, generator=generator))
        head_masks.enforce(model)


def _zero_share(weight, active):
    return float((weight[active] == 0).sum()) / int(active.sum())


def test_cubic_target_is_zhu_and_gupta_formula_by_hand():
    """s_t = s_f (1 - (1 - k/n)^3) after the k-th of n pruning steps (s_0 = 0), constant between steps, 0 before
    the start and s_f from the end on."""
    final, start, end, interval = 0.8, 20, 60, 10
    for update in range(0, 80):
        k = min(max((update - start) // interval, 0), 4)
        expected = 0.0 if update < start else final * (1 - (1 - k / 4) ** 3)
        assert cubic_target(update, final, start, end, interval) == pytest.approx(expected, abs=1e-12)
    with pytest.raises(ValueError, match="multiple of the interval"):
        cubic_target(5, 0.5, 0, 25, 10)


def test_gradual_schedule_reaches_its_target_exactly_at_its_last_step():
    """Every matrix's share of zeros among its active entries follows the schedule (rounded to whole entries), the
    zeros only grow, the removed head is not counted, and the last pruning step lands exactly on the target."""
    model, gen = _model(), torch.Generator().manual_seed(1)
    final, start, end, interval = 0.75, 2, 14, 4
    sparsity = WeightSparsity(_cfg(np_gmp_sparsity=final, np_gmp_start_update=start, np_gmp_end_update=end, np_gmp_interval=interval))
    previous = None
    for update_num in range(20):
        sparsity.before_update(model)
        _noisy_step(model, gen)
        sparsity.after_update(model, SimpleNamespace(), update_num, lr=1e-3)
        done = update_num + 1
        k = 0 if done < start else min((done - start) // interval, (end - start) // interval)
        expected = 0.0 if done < start else final * (1 - (1 - k / 3) ** 3)
        zeros = {}
        for name, weight, active in prunable_matrices(model):
            n_active = int(active.sum())
            assert n_active == (weight.numel() // 2 if "_proj" in name else weight.numel())  # half of q/k/v/out is head 1
            assert _zero_share(weight, active) == round(expected * n_active) / n_active, (name, done)
            zeros[name] = weight == 0
        if previous is not None:
            assert all(bool((previous[n] <= zeros[n]).all()) for n in zeros)  # a pruned weight stays pruned
        previous = zeros
    for name, weight, active in prunable_matrices(model):
        assert _zero_share(weight, active) == round(final * int(active.sum())) / int(active.sum())


def test_kept_zeros_stay_zero_and_others_move():
    model, gen = _model(), torch.Generator().manual_seed(2)
    fc1 = model[0].fc1.weight
    with torch.no_grad():
        fc1[:, :3] = 0  # a pruned model's zeros
    sparsity = WeightSparsity(_cfg(np_keep_zeros=True))
    before = fc1.detach().clone()
    sparsity.before_update(model)
    _noisy_step(model, gen)
    sparsity.after_update(model, SimpleNamespace(), 0, lr=1e-3)
    assert bool((fc1[:, :3] == 0).all())
    assert bool((fc1[:, 3:] != before[:, 3:]).all())


def test_proximal_step_zeroes_exactly_the_weights_below_lr_times_strength():
    """lr 0.1, strength 0.5: weights with |w| <= 0.05 become zero, every other one moves 0.05 towards zero."""
    model = _model()
    lr, strength = 0.1, 0.5
    before = {name: weight.detach().clone() for name, weight, _ in prunable_matrices(model)}
    WeightSparsity(_cfg(np_prox_strength=strength)).after_update(model, SimpleNamespace(), 0, lr=lr)
    for name, weight, _ in prunable_matrices(model):
        for old, new in zip(before[name].flatten().tolist(), weight.flatten().tolist()):
            if abs(old) <= lr * strength:
                assert new == 0.0
            else:
                assert new == pytest.approx(old - math.copysign(lr * strength, old), abs=1e-7)


def test_prune_smallest_counts_only_active_entries():
    weight = torch.tensor([[0.5, -0.1, 0.3], [0.2, -0.4, 0.05]])
    active = torch.tensor([[True, True, True], [False, False, True]])
    out = prune_smallest(weight, active, 0.5)  # round(0.5 * 4) = 2 of the active: 0.05 and -0.1
    assert torch.equal(out, torch.tensor([[0.5, 0.0, 0.3], [0.2, -0.4, 0.0]]))


def test_soft_threshold_by_hand():
    assert soft_threshold(torch.tensor([0.3, -0.3, 0.1, -0.05]), 0.1).tolist() == pytest.approx([0.2, -0.2, 0.0, 0.0])


@pytest.mark.parametrize("kw, message", [
    (dict(np_gmp_sparsity=1.0, np_gmp_end_update=10), "--np-gmp-sparsity must be in"),
    (dict(np_gmp_sparsity=0.5, np_gmp_start_update=0, np_gmp_end_update=25, np_gmp_interval=10), "--np-gmp-end-update 25"),
    (dict(np_gmp_sparsity=0.5, np_gmp_end_update=0), "--np-gmp-start-update 0, --np-gmp-end-update 0"),
    (dict(np_prox_strength=-1.0), "--np-prox-strength must be >= 0"),
])
def test_bad_flags_are_refused_by_name(kw, message):
    with pytest.raises(ValueError, match=message):
        WeightSparsity(_cfg(**kw))
