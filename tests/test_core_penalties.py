"""Penalties and their gradients against hand-computed values, and their precision against float64."""
import math

import torch

from neuroprune.core.penalties import attention_penalty, mlp_penalty, mlp_row_penalty


def test_mlp_row_penalty_hand_computed():
    """Row weight = share of |w| < eps in the row; a fully dense row costs nothing."""
    w = torch.tensor([[0.0, 2.0, -1.0, 0.00001],  # 2 of 4 near zero -> 0.5 * 3.00001
                      [1.0, 1.0, 1.0, 1.0]])       # 0 of 4 -> 0
    assert math.isclose(float(mlp_row_penalty(w, eps=1e-4)), 0.5 * 3.00001, rel_tol=1e-6)


def test_mlp_penalty_adds_fc1_and_fc2_rows():
    """fc1 (ffn, embed) and fc2 (embed, ffn) are each weighted by their own rows."""
    fc1 = torch.tensor([[0.0, 3.0], [1.0, 1.0], [0.0, 0.0]])  # rows: 0.5*3, 0, 1*0
    fc2 = torch.tensor([[0.0, 0.0, 4.0], [2.0, 2.0, 2.0]])     # rows: (2/3)*4, 0
    assert math.isclose(float(mlp_penalty(fc1, fc2, eps=1e-4)), 1.5 + 8 / 3, rel_tol=1e-6)


def test_mlp_penalty_gradient_by_hand():
    """d/dw_rc of frac_r * |w_rc| is frac_r * sign(w_rc): the near-zero share is a constant weight, not
    differentiated (autograd gives |w|'s gradient 0 at w = 0)."""
    w = torch.tensor([[0.0, 2.0, -1.0, 0.00001],  # frac 0.5
                      [1.0, 1.0, 1.0, 1.0]], requires_grad=True)  # frac 0
    mlp_row_penalty(w, eps=1e-4).backward()
    assert torch.allclose(w.grad, torch.tensor([[0.0, 0.5, -0.5, 0.5], [0.0, 0.0, 0.0, 0.0]]))


def test_attention_penalty_groups_are_input_columns():
    """sum_i sqrt(sum_j |A_ji|) over the stacked q/k/v columns."""
    q = torch.tensor([[1.0, 0.0], [3.0, 0.0]])
    k = torch.tensor([[0.0, 4.0], [0.0, 0.0]])
    v = torch.tensor([[0.0, 0.0], [5.0, 5.0]])
    # column 0: 1+3+5 = 9 -> 3; column 1: 4+5 = 9 -> 3
    assert math.isclose(float(attention_penalty(q, k, v)), 6.0, rel_tol=1e-6)


def test_attention_penalty_gradient_by_hand():
    """d/dA_ji sqrt(sum_j |A_ji|) = sign(A_ji) / (2 sqrt(s_i)); both groups have s = 9, so every non-zero
    entry gets sign / 6 and the zeros get 0."""
    q = torch.tensor([[1.0, 0.0], [3.0, 0.0]], requires_grad=True)
    k = torch.tensor([[0.0, 4.0], [0.0, 0.0]], requires_grad=True)
    v = torch.tensor([[0.0, 0.0], [-5.0, 5.0]], requires_grad=True)
    attention_penalty(q, k, v).backward()
    sixth = 1 / 6
    assert torch.allclose(q.grad, torch.tensor([[sixth, 0.0], [sixth, 0.0]]))
    assert torch.allclose(k.grad, torch.tensor([[0.0, sixth], [0.0, 0.0]]))
    assert torch.allclose(v.grad, torch.tensor([[0.0, 0.0], [-sixth, sixth]]))


def test_attention_penalty_zero_group_is_finite():
    """An all-zero input column gives value 0 for that group and finite (zero) gradients."""
    ws = [torch.randn(6, 4) for _ in range(3)]
    for w in ws:
        w[:, 2] = 0.0
        w.requires_grad_(True)
    value = attention_penalty(*ws)
    value.backward()
    assert torch.isfinite(value)
    for w in ws:
        assert torch.isfinite(w.grad).all()
        assert (w.grad[:, 2] == 0).all()
    all_zero = [torch.zeros(3, 3, requires_grad=True) for _ in range(3)]
    attention_penalty(*all_zero).backward()
    assert all(torch.isfinite(w.grad).all() for w in all_zero)


def test_penalties_are_float32_under_half_precision():
    """Large fp16 weights do not overflow (fp16's largest value is 65504): every column sums 3 * 64 * 60000."""
    w = torch.full((64, 64), 60000.0, dtype=torch.float16)
    value = attention_penalty(w, w, w)
    assert value.dtype == torch.float32
    assert math.isclose(float(value), 64 * math.sqrt(3 * 64 * 60000), rel_tol=1e-6)


def test_penalties_under_bf16_autocast_keep_float32_precision():
    """Inside CPU bf16 autocast the sums are still float32: they match a float64 computation to 1e-6
    (bf16 sums would be off by about 1e-2)."""
    torch.manual_seed(0)
    ws = [torch.randn(64, 64) * 100 for _ in range(3)]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = attention_penalty(*ws)
        mlp = mlp_penalty(ws[0], ws[1], eps=1.0)
    assert value.dtype == mlp.dtype == torch.float32
    w64 = [w.double() for w in ws]
    expected_attn = (w64[0].abs().sum(0) + w64[1].abs().sum(0) + w64[2].abs().sum(0)).sqrt().sum()
    expected_mlp = sum(((w.abs() < 1.0).double().mean(1) * w.abs().sum(1)).sum() for w in (w64[0], w64[1]))
    assert math.isclose(float(value), float(expected_attn), rel_tol=1e-6)
    assert math.isclose(float(mlp), float(expected_mlp), rel_tol=1e-6) and float(mlp) > 0
