"""The criterion against stock label-smoothed cross entropy, built through fairseq's own config path."""
import math

import pytest
import torch
from fairseq.criterions.label_smoothed_cross_entropy import LabelSmoothedCrossEntropyCriterion

from neuroprune_fairseq import head_masks
from neuroprune_fairseq.criterion import model_penalties

from .fairseq_run import TINY_MODEL, build_in_process, random_sample


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
    r_attn, r_mlp = model_penalties(model, eps=1e-4)
    assert sample_size == 12
    assert math.isclose(float(loss), float(ce) + 12 * (0.01 * float(r_attn) + 0.5 * float(r_mlp)), rel_tol=1e-5)
    assert math.isclose(float(log["np_attn"]) / 12, float(r_attn), rel_tol=1e-5)


def test_l1_baseline_penalises_the_same_matrices_with_plain_l1(tmp_path):
    task, model, criterion = build_in_process(tmp_path, "--np-alpha", "0.01", "--np-beta", "0.5", "--np-penalty", "l1")
    model.train()
    loss, sample_size, log = criterion(model, random_sample(task))
    plain = LabelSmoothedCrossEntropyCriterion(task, sentence_avg=False, label_smoothing=0.1)
    ce, _, _ = plain(model, random_sample(task))
    attn = sum(float(m.weight.abs().sum()) for _, a in head_masks.attention_modules(model) for m in (a.q_proj, a.k_proj, a.v_proj))
    ffn = sum(float(layer.fc1.weight.abs().sum() + layer.fc2.weight.abs().sum())
              for layer in list(model.encoder.layers) + list(model.decoder.layers))
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
