"""DSP: the Gumbel soft top-K, the hard selection, gates on real fairseq attention, checkpoints."""
import copy

import pytest
import torch

from neuroprune_fairseq import head_masks
from neuroprune_fairseq.core.dsp import annealed_temperature, hard_top_k, relaxed_mask, soft_top_k
from neuroprune_fairseq.core.selection import keep_top_k
from neuroprune_fairseq.head_masks import DSP_LOGITS_KEY, masks_from_state_dict

from .fairseq_run import build_in_process, random_sample

DSP = ["--np-dsp-anneal-updates", "10"]


@pytest.mark.parametrize("k", [1, 3, 7])
@pytest.mark.parametrize("tau", [5.0, 0.5, 0.05])
def test_soft_top_k_sums_to_k(k, tau):
    scores = torch.randn(4, 10, generator=torch.Generator().manual_seed(k))
    mask = soft_top_k(scores, k, tau)
    assert torch.allclose(mask.sum(-1), torch.full((4,), float(k)), atol=1e-4)
    assert bool((mask >= 0).all())  # (a single entry may exceed 1: the relaxation bounds sums, not entries)


def test_soft_top_k_concentrates_on_the_hard_top_k_as_the_temperature_falls():
    scores = torch.tensor([0.3, 2.0, -1.0, 1.2, 0.9, -0.4])
    hard = hard_top_k(scores, 3)
    gaps = [float((soft_top_k(scores, 3, tau) - hard).abs().max()) for tau in (3.0, 1.0, 0.3, 0.03)]
    assert gaps == sorted(gaps, reverse=True) and gaps[0] > 0.3 and gaps[-1] < 1e-3


def test_straight_through_is_hard_forward_with_the_soft_gradient():
    logits = torch.tensor([0.1, 1.0, -0.5, 0.7], requires_grad=True)
    mask = relaxed_mask(logits, 2, 0.5, straight_through=True)
    assert mask.tolist() == [0.0, 1.0, 0.0, 1.0]
    (mask * torch.tensor([1.0, 2.0, 3.0, 4.0])).sum().backward()
    assert logits.grad is not None and float(logits.grad.abs().sum()) > 0


def test_temperature_anneals_exponentially_from_initial_to_final():
    assert annealed_temperature(0, 1.0, 0.01, 100) == 1.0
    assert annealed_temperature(50, 1.0, 0.01, 100) == pytest.approx(0.1)
    assert annealed_temperature(100, 1.0, 0.01, 100) == annealed_temperature(500, 1.0, 0.01, 100) == 0.01


def test_hard_selection_keeps_exactly_k_with_one_head_per_module():
    scores = torch.tensor([9.0, 8.0, 7.0, 0.1, 0.3, 0.2, 5.0, 4.0, 3.0])  # module 1's heads all score low
    mask = keep_top_k(scores, [3, 3, 3], 4)
    assert int(mask.sum()) == 4
    assert mask.tolist() == [1, 1, 0, 0, 1, 0, 1, 0, 0]  # module 1 keeps its best head (index 4), then the best overall
    per_module = keep_top_k(scores, [3, 3, 3], 6, per_module=True)
    assert [int(per_module[i:i + 3].sum()) for i in (0, 3, 6)] == [2, 2, 2]
    with pytest.raises(ValueError, match="at least one per module"):
        keep_top_k(scores, [3, 3, 3], 2)
    with pytest.raises(ValueError, match="multiple of the 3 modules"):
        keep_top_k(scores, [3, 3, 3], 4, per_module=True)


def test_gate_gradients_flow_to_the_logits(tmp_path):
    task, model, criterion = build_in_process(tmp_path, "--np-dsp-heads", "54", *DSP)
    model.train()
    task.dsp.sample(update_num=0)
    loss, _, _ = criterion(model, random_sample(task))
    loss.backward()
    grad = task.dsp.logits.grad
    assert grad is not None and bool(torch.isfinite(grad).all()) and int((grad != 0).sum()) > 50


def test_dsp_with_all_heads_leaves_the_model_output_unchanged(tmp_path):
    task, model, _ = build_in_process(tmp_path)
    dsp_task, gated, _ = build_in_process(tmp_path, "--np-dsp-heads", "108", *DSP)
    gated.load_state_dict(model.state_dict())
    dsp_task.dsp.sample(update_num=3)
    assert bool((dsp_task.dsp.gates == 1).all())
    sample = random_sample(task)
    model.train(), gated.train()  # the tiny model has no dropout: training mode is deterministic
    assert torch.allclose(gated(**sample["net_input"])[0], model(**sample["net_input"])[0], atol=1e-5)


def test_checkpoint_state_holds_the_hard_top_k_which_other_loaders_apply(tmp_path):
    dsp_task, gated, _ = build_in_process(tmp_path, "--np-dsp-heads", "27", *DSP)
    with torch.no_grad():
        dsp_task.dsp.logits.copy_(torch.randn(108, generator=torch.Generator().manual_seed(0)))
    state = gated.state_dict()
    masks = masks_from_state_dict(state)
    assert sum(map(sum, masks.values())) == 27 and all(sum(m) >= 1 for m in masks.values())
    assert all(bool(head_masks.head_mask(a).all()) for _, a in head_masks.attention_modules(gated))  # live model untouched
    _, plain, _ = build_in_process(tmp_path)
    plain.load_state_dict(copy.deepcopy(state))  # generation / export: the logits are dropped, the mask applied
    attn = plain.encoder.layers[0].self_attn
    pruned = [h for h, m in enumerate(masks["encoder.layers.0.self_attn"]) if m == 0]
    d = attn.head_dim
    assert pruned and all(float(attn.q_proj.weight[h * d:(h + 1) * d].abs().sum()) == 0 for h in pruned)
    resumed_task, resumed, _ = build_in_process(tmp_path, "--np-dsp-heads", "27", *DSP)
    resumed.load_state_dict(copy.deepcopy(state))  # DSP resume: logits back, every head trains on
    assert torch.equal(resumed_task.dsp.logits.detach(), state[DSP_LOGITS_KEY])
    assert all(bool(head_masks.head_mask(a).all()) for _, a in head_masks.attention_modules(resumed))


def test_logit_step_uses_the_update_gradient_and_skips_non_finite_ones(tmp_path):
    task, model, criterion = build_in_process(tmp_path, "--np-dsp-heads", "54", *DSP)
    model.train()
    task.dsp.sample(update_num=0)
    loss, sample_size, _ = criterion(model, random_sample(task))
    loss.backward()
    task.dsp.add_sample_size(sample_size)
    before = task.dsp.logits.detach().clone()
    assert task.dsp.step(optimizer=None)
    assert not torch.equal(before, task.dsp.logits.detach()) and task.dsp.logits.grad is None
    task.dsp.sample(update_num=1)
    task.dsp.logits.grad = torch.full((108,), float("nan"))
    after = task.dsp.logits.detach().clone()
    assert not task.dsp.step(optimizer=None) and torch.equal(after, task.dsp.logits.detach())


@pytest.mark.parametrize("flags,message", [
    (["--np-dsp-heads", "200"], "--np-dsp-heads 200: cannot keep 200 heads"),
    (["--np-dsp-heads", "10"], "at least one per module"),
    (["--np-dsp-heads", "50", "--np-dsp-per-module"], "with --np-dsp-per-module: .*multiple of the 18 modules"),
    (["--np-dsp-heads", "54", "--np-theta", "0.3"], "pick one method"),
    (["--np-dsp-heads", "54", "--np-dsp-lr", "0"], "--np-dsp-lr must be > 0"),
    (["--np-dsp-heads", "54", "--np-dsp-temp-final", "-1"], "--np-dsp-temp-final must be > 0"),
])
def test_bad_dsp_flags_are_refused_by_name(tmp_path, flags, message):
    with pytest.raises(ValueError, match=message):
        build_in_process(tmp_path, *flags)
