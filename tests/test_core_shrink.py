"""Head selection, dead-unit detection and the FFN bias fold on hand-built tensors."""
import pytest
import torch
import torch.nn.functional as F

from neuroprune.core.shrink import dead_units, select_heads, shrink_ffn


def test_select_heads_keeps_active_rows_and_columns_in_order():
    """Head h owns rows (q/k/v) or columns (out-projection) h*d:(h+1)*d; masked ones go, order stays."""
    weight = torch.arange(6 * 2, dtype=torch.float).reshape(6, 2)  # 3 heads of 2 rows
    mask = torch.tensor([1.0, 0.0, 1.0])
    assert select_heads(weight, mask, head_dim=2, dim=0).tolist() == [[0, 1], [2, 3], [8, 9], [10, 11]]
    assert select_heads(weight.T, mask, head_dim=2, dim=1).tolist() == [[0, 2, 8, 10], [1, 3, 9, 11]]
    assert select_heads(torch.arange(6.0), mask, head_dim=2, dim=0).tolist() == [0, 1, 4, 5]


def test_select_heads_refuses_a_mask_that_does_not_fit():
    with pytest.raises(ValueError, match="3 heads of 2 need 6"):
        select_heads(torch.zeros(8, 2), torch.ones(3), head_dim=2, dim=0)


def test_a_unit_is_dead_only_when_both_its_fc1_row_and_fc2_column_are_near_zero():
    fc1 = torch.ones(4, 3)
    fc2 = torch.ones(2, 4)
    fc1[0], fc2[:, 0] = 0, 5e-5  # dead (below eps)
    fc1[1] = 0  # fc2 column still large
    fc2[:, 2] = 0  # fc1 row still large
    assert dead_units(fc1, fc2, eps=1e-4).tolist() == [True, False, False, False]


def test_an_all_dead_layer_keeps_its_largest_unit():
    fc1 = torch.zeros(3, 2)
    fc2 = torch.zeros(2, 3)
    fc1[1, 0] = 2e-5
    assert dead_units(fc1, fc2, eps=1e-4).tolist() == [True, False, True]


@pytest.mark.parametrize("activation", [F.relu, F.gelu])
def test_removing_units_with_zero_fc1_rows_is_exact(activation):
    """The removed units' constant activation(bias) * fc2 column moves into fc2's bias, so the FFN's
    output is unchanged even when their fc2 columns are far from zero."""
    torch.manual_seed(0)
    fc1_w, fc1_b, fc2_w, fc2_b = torch.randn(8, 5), torch.randn(8), torch.randn(4, 8), torch.randn(4)
    remove = torch.tensor([True, False, True, True, False, False, True, False])
    fc1_w[remove] = 0
    x = torch.randn(7, 5)

    def ffn(w1, b1, w2, b2):
        return F.linear(activation(F.linear(x, w1, b1)), w2, b2)  # (7, 4)

    shrunk = shrink_ffn(fc1_w, fc1_b, fc2_w, fc2_b, remove, activation)
    assert [tuple(t.shape) for t in shrunk] == [(4, 5), (4,), (4, 4), (4,)]
    assert torch.allclose(ffn(*shrunk), ffn(fc1_w, fc1_b, fc2_w, fc2_b), atol=1e-6)


def test_shrink_ffn_refuses_to_remove_every_unit():
    with pytest.raises(ValueError, match="at least one unit"):
        shrink_ffn(torch.zeros(2, 3), torch.zeros(2), torch.zeros(3, 2), torch.zeros(3), torch.ones(2, dtype=torch.bool), F.relu)
