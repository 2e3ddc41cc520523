"""The criterion against stock label-smoothed cross entropy, built through fairseq's own config path."""
import math

import pytest
import torch
from fairseq.criterions.label_smoothed_cross_entropy import LabelSmoothedCrossEntropyCriterion

from neuroprune.state_keys import MASK_BUFFER
from neuroprune_fairseq import head_masks

from .fairseq_run import build_in_process, random_sample


def _direct_penalties(model, eps):
    """R_attn and R_mlp written out from the layers themselves (not through the plugin's module walk)."""
    layers = list(model.encoder.layers) + list(model.decoder.layers)
    attentions = [layer.self_attn for layer in layers] + [layer.encoder_attn for layer in model.decoder.layers]
    r_attn = sum(float(torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight]).abs().sum(0).sqrt().sum()) for a in attentions)
    matrices = [m.weight for layer in layers for m in (layer.fc1, layer.fc2)]
    r_mlp = sum(float((w.abs() < eps).float().mean(1) @ w.abs().sum(1)) for w in matrices)
    return r_attn, r_mlp


def test_zero_alpha_beta_reproduces_label_smoothed_cross_entropy(tmp_path):
    task, model, criterion = build_in_process(tmp_path)
    plain = LabelSmoothedCrossEntropyCriterion(task, sentence_avg=False, label_smoothing=0.1)
    model.train()
    ours = criterion(model, random_sample(task))
    torch.manual_seed(0)
    ref = plain(model, random_sample(task))
    assert torch.equal(ours[0], ref[0]) and ours[1] == ref[1]
    assert "np_attn" not in ours[2]


def test_penalty_is_added_on_the_per_token_scale(tmp_path):
    """loss = CE_sum + sample_size * (alpha * R_attn + beta * R_mlp), so after fairseq divides by
    sample_size the objective is mean CE + alpha * R_attn + beta * R_mlp."""
    task, model, criterion = build_in_process(tmp_path, "--np-alpha", "0.01", "--np-beta", "0.5")
    model.train()
    loss, sample_size, log = criterion(model, random_sample(task))
    plain = LabelSmoothedCrossEntropyCriterion(task, sentence_avg=False, label_smoothing=0.1)
    ce, _, _ = plain(model, random_sample(task))
    r_attn, r_mlp = _direct_penalties(model, eps=1e-4)
    assert sample_size == 12  # 3 sentences of 4 target tokens
    assert math.isclose(float(loss), float(ce) + 12 * (0.01 * r_attn + 0.5 * r_mlp), rel_tol=1e-5)
    assert math.isclose(float(log["np_attn"]) / 12, r_attn, rel_tol=1e-5)


def test_the_mlp_penalty_uses_the_tasks_eps(tmp_path):
    """The criterion reads --np-eps (a task flag) through the config; at 0.05 many initial weights count as near
    zero, so R_mlp differs clearly from its value at the default 1e-4."""
    task, model, criterion = build_in_process(tmp_path, "--np-beta", "1", "--np-eps", "0.05")
    assert criterion.np_eps == 0.05
    model.train()
    loss, sample_size, log = criterion(model, random_sample(task))
    r_mlp = _direct_penalties(model, eps=0.05)[1]
    assert r_mlp > 2 * _direct_penalties(model, eps=1e-4)[1]
    assert math.isclose(float(log["np_mlp"]) / sample_size, r_mlp, rel_tol=1e-5)


def test_the_stock_task_can_carry_the_criterion_without_the_mlp_penalty(tmp_path):
    """--task translation has no --np-eps: R_attn works, R_mlp (which needs eps) is refused by name."""
    task, model, criterion = build_in_process(tmp_path, "--task", "translation", "--np-alpha", "0.01")
    assert criterion.np_eps is None and not hasattr(model.encoder.layers[0].self_attn, MASK_BUFFER)
    model.train()
    _, sample_size, log = criterion(model, random_sample(task))
    assert math.isclose(float(log["np_attn"]) / sample_size, _direct_penalties(model, 1e-4)[0], rel_tol=1e-5)
    with pytest.raises(ValueError, match="--np-beta > 0 needs --task neuroprune_translation"):
        build_in_process(tmp_path, "--task", "translation", "--np-beta", "0.1")


def test_l1_baseline_penalises_the_same_matrices_with_plain_l1(tmp_path):
    task, model, criterion = build_in_process(tmp_path, "--np-alpha", "0.01", "--np-beta", "0.5", "--np-penalty", "l1")
    model.train()
    loss, sample_size, log = criterion(model, random_sample(task))
    plain = LabelSmoothedCrossEntropyCriterion(task, sentence_avg=False, label_smoothing=0.1)
    ce, _, _ = plain(model, random_sample(task))
    attn = sum(float(m.weight.abs().sum()) for _, a in head_masks.attention_modules(model) for m in (a.q_proj, a.k_proj, a.v_proj))
    ffn = sum(float(layer.fc1.weight.abs().sum() + layer.fc2.weight.abs().sum())
              for layer in list(model.encoder.layers) + list(model.decoder.layers))  # (ffn, embed) and (embed, ffn)
    assert math.isclose(float(loss), float(ce) + sample_size * (0.01 * attn + 0.5 * ffn), rel_tol=1e-5)
    assert math.isclose(float(log["np_mlp"]) / sample_size, ffn, rel_tol=1e-5)


def test_penalty_is_left_out_of_validation(tmp_path):
    task, model, criterion = build_in_process(tmp_path, "--np-alpha", "0.01")
    model.eval()
    _, _, log = criterion(model, random_sample(task))
    assert "np_attn" not in log


@pytest.mark.parametrize("flag,value,message", [
    ("--np-alpha", "-1", "--np-alpha must be >= 0"),
    ("--np-beta", "-0.1", "--np-beta must be >= 0"),
    ("--np-theta", "-0.2", "--np-theta must be >= 0"),
    ("--np-eps", "0", "--np-eps must be > 0"),
])
def test_bad_flag_values_are_refused_by_name(tmp_path, flag, value, message):
    with pytest.raises(ValueError, match=message):
        build_in_process(tmp_path, flag, value)


def test_stock_transformer_arch_gets_masks_and_penalties(tmp_path):
    """No architecture requirement: fairseq's own transformer_iwslt_de_en (4 heads per module) works."""
    stock = ["--arch", "transformer_iwslt_de_en", "--encoder-embed-dim", "32", "--decoder-embed-dim", "32",
             "--encoder-ffn-embed-dim", "48", "--decoder-ffn-embed-dim", "48", "--share-all-embeddings"]
    task, model, criterion = build_in_process(tmp_path, "--np-alpha", "0.01", "--np-beta", "0.01", model_args=stock)
    assert head_masks.total_heads(model) == 18 * 4 and sum(head_masks.heads_kept(model).values()) == 72
    model.train()
    loss, _, log = criterion(model, random_sample(task))
    loss.backward()
    assert torch.isfinite(loss) and float(log["np_mlp"]) >= 0 and float(log["np_attn"]) > 0


def test_heads_that_do_not_divide_the_embedding_are_refused_by_flag(tmp_path):
    uneven = ["--arch", "neuroprune_iwslt_de_en_narrow", "--encoder-embed-dim", "50", "--decoder-embed-dim", "48",
              "--share-all-embeddings"]
    with pytest.raises(ValueError, match="--encoder-attention-heads 6 must divide --encoder-embed-dim 50"):
        build_in_process(tmp_path, model_args=uneven)


@pytest.mark.parametrize("flags,message", [
    (["--np-head-budget", "54", "--np-theta", "0.3"], "do not also give --np-theta"),
    (["--np-head-budget", "200"], "--np-head-budget 200 is outside"),
    (["--np-head-budget", "10"], "each of its 18 attention modules"),
])
def test_head_budget_flags_are_checked(tmp_path, flags, message):
    with pytest.raises(ValueError, match=message):
        build_in_process(tmp_path, *flags)
