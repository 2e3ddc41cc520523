"""Cross-attention whose keys/values are narrower than its queries: a stock fairseq ``transformer`` with
--encoder-embed-dim 32 and --decoder-embed-dim 48 (k_proj/v_proj of decoder cross-attention are (48, 32),
q_proj is (48, 48)). Penalties group each input's own neurons; heads are compared within Q, K and V."""
import math

import pytest
import torch

from neuroprune.core.heads import head_distances, head_parameters, plan_elimination
from neuroprune.core.penalties import attention_penalty
from neuroprune_fairseq import head_masks
from neuroprune_fairseq.criterion import model_penalties
from neuroprune_fairseq.model_parts import attention_modules

from .fairseq_run import build_in_process, random_sample

CROSS_WIDTH = ["--arch", "transformer", "--encoder-embed-dim", "32", "--decoder-embed-dim", "48",
               "--encoder-ffn-embed-dim", "40", "--decoder-ffn-embed-dim", "40", "--encoder-layers", "1",
               "--decoder-layers", "2", "--encoder-attention-heads", "4", "--decoder-attention-heads", "4",
               "--dropout", "0.0"]


def test_penalty_groups_each_inputs_columns_by_hand():
    q = torch.tensor([[1.0, 0.0, 3.0], [0.0, 0.0, 1.0]])  # (2, 3): query input columns l1 1, 0, 4
    k = torch.tensor([[1.0, 2.0], [3.0, 0.0]])  # (2, 2): key/value input columns, with v: 4 + 0, 2 + 7
    v = torch.tensor([[0.0, 2.0], [0.0, 5.0]])
    assert math.isclose(float(attention_penalty(q, k, v)), (1 + 0 + 2) + (2 + 3), rel_tol=1e-6)


def test_head_distance_is_the_largest_of_the_q_k_v_distances_by_hand():
    """Two heads of one row each: |q0 - q1|_inf = 2, |k0 - k1|_inf = 2, |v0 - v1|_inf = 3."""
    q = torch.tensor([[1.0, 0.0, 3.0], [0.0, 0.0, 1.0]])
    k = torch.tensor([[1.0, 2.0], [3.0, 0.0]])
    v = torch.tensor([[0.0, 2.0], [0.0, 5.0]])
    assert head_parameters(q, k, v, 2).shape == (2, 3 + 2 + 2)
    assert head_distances(head_parameters(q, k, v, 2)).tolist() == [[0.0, 3.0], [3.0, 0.0]]
    active = torch.ones(2, dtype=torch.bool)
    assert plan_elimination(q, k, v, active, theta=2.9).kept_for == [0, 1]
    assert plan_elimination(q, k, v, active, theta=3.0).kept_for == [1, 1]


@pytest.fixture
def cross_width(tmp_path):
    return build_in_process(tmp_path, "--np-alpha", "0.01", "--np-beta", "0.01", model_args=CROSS_WIDTH)


def test_model_penalty_and_criterion_on_narrower_keys(cross_width):
    task, model, criterion = cross_width
    cross = model.decoder.layers[0].encoder_attn
    assert cross.q_proj.weight.shape == (48, 48) and cross.k_proj.weight.shape == (48, 32)
    expected = 0.0
    for _, attn in attention_modules(model):  # by hand: sqrt of every query column, sqrt of every key+value column
        q, k, v = (p.weight.detach().abs() for p in (attn.q_proj, attn.k_proj, attn.v_proj))
        if q.shape[1] == k.shape[1]:
            expected += float((q.sum(0) + k.sum(0) + v.sum(0)).sqrt().sum())
        else:
            expected += float(q.sum(0).sqrt().sum() + (k.sum(0) + v.sum(0)).sqrt().sum())
    r_attn, _ = model_penalties(model, eps=1e-4)
    assert math.isclose(float(r_attn), expected, rel_tol=1e-5)
    model.train()
    loss, _, log = criterion(model, random_sample(task))
    loss.backward()
    assert math.isclose(float(log["np_attn"]) / 12, expected, rel_tol=1e-5)
    assert torch.isfinite(cross.k_proj.weight.grad).all() and cross.k_proj.weight.grad.abs().sum() > 0


def test_folding_identical_heads_of_a_narrow_key_module_keeps_the_output(cross_width):
    """All four heads of each cross-attention made equal (q/k/v rows and biases): one pass at theta 0 keeps the
    last head, folds the others' out-projection columns into it, and the model's log-probs do not move."""
    task, model, _ = cross_width
    model.eval()
    sample = random_sample(task)
    crosses = [layer.encoder_attn for layer in model.decoder.layers]
    with torch.no_grad():
        for attn in crosses:
            d = attn.head_dim
            for proj in (attn.q_proj, attn.k_proj, attn.v_proj):
                proj.weight.copy_(proj.weight[:d].repeat(4, 1))
                proj.bias.copy_(proj.bias[:d].repeat(4))
        before = model.get_normalized_probs(model(**sample["net_input"]), log_probs=True)
        plans = head_masks.eliminate(model, theta=0.0)  # only the equal heads are at distance 0
        after = model.get_normalized_probs(model(**sample["net_input"]), log_probs=True)
    assert [plans[f"decoder.layers.{i}.encoder_attn"].kept_for for i in (0, 1)] == [[3, 3, 3, 3]] * 2
    assert [head_masks.head_mask(a).tolist() for a in crosses] == [[0.0, 0.0, 0.0, 1.0]] * 2
    assert (after - before).abs().max() < 1e-5
    assert sum(head_masks.heads_kept(model).values()) == 4 + 2 * 4 + 2 * 1  # encoder self, decoder self, cross


def test_every_module_can_be_eliminated_and_masked(cross_width):
    _, model, _ = cross_width
    plans = head_masks.eliminate(model, theta=1e9)
    assert len(plans) == 5 and sum(head_masks.heads_kept(model).values()) == 5
    for attn in (layer.encoder_attn for layer in model.decoder.layers):
        assert attn.k_proj.weight[:36].abs().sum() == 0 and attn.v_proj.weight[36:].abs().sum() > 0


def test_export_of_a_pruned_narrow_key_model_gives_the_same_output(cross_width, tmp_path):
    """shrink_checkpoint cuts heads by rows of q/k/v, whatever their input width; the exported model agrees."""
    from fairseq import options

    from neuroprune_fairseq.exported_model import ExportedTransformerModel
    from neuroprune_fairseq.shrink_checkpoint import exported_args, model_shapes, shrink_state

    task, model, _ = cross_width
    head_masks.eliminate(model, theta=1e9)  # one head left in every module
    args = options.parse_args_and_arch(options.get_training_parser(), [str(tmp_path), "-s", "de", "-t", "en", *CROSS_WIDTH])
    state = shrink_state(model.state_dict(), args, eps=1e-4)
    assert state["decoder.layers.0.encoder_attn.k_proj.weight"].shape == (12, 32)
    shapes = model_shapes(state, args)
    exported = ExportedTransformerModel.build_model(exported_args(args, shapes), task)
    exported.load_state_dict(state)
    sample = random_sample(task)
    with torch.no_grad():
        expected = model.eval()(**sample["net_input"])[0]
        got = exported.eval()(**sample["net_input"])[0]
    assert set(shapes["heads"].values()) == {1} and (got - expected).abs().max() < 1e-5
