"""Penalties against hand-computed values and against autograd of direct formulas."""
import math

import torch

from neuroprune_fairseq.core.penalties import attention_penalty, mlp_penalty, mlp_row_penalty


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


def test_mlp_penalty_gradient_matches_direct_formula():
    """The gradient is that of sum_r c_r * |w_r|_1 with the counts c_r held constant."""
    torch.manual_seed(0)
    w = torch.randn(5, 7)
    w[w.abs() < 0.5] = 0.0
    w.requires_grad_(True)
    mlp_row_penalty(w, eps=1e-4).backward()
    w2 = w.detach().clone().requires_grad_(True)
    counts = (w2.detach().abs() < 1e-4).float().sum(1) / w2.shape[1]
    (counts[:, None] * w2.abs()).sum().backward()
    assert torch.allclose(w.grad, w2.grad)
    assert w.grad.abs().sum() > 0


def test_attention_penalty_groups_are_input_columns():
    """sum_i sqrt(sum_j |A_ji|) over the stacked q/k/v columns."""
    q = torch.tensor([[1.0, 0.0], [3.0, 0.0]])
    k = torch.tensor([[0.0, 4.0], [0.0, 0.0]])
    v = torch.tensor([[0.0, 0.0], [5.0, 5.0]])
    # column 0: 1+3+5 = 9 -> 3; column 1: 4+5 = 9 -> 3
    assert math.isclose(float(attention_penalty(q, k, v)), 6.0, rel_tol=1e-6)


def test_attention_penalty_gradient_matches_direct_formula():
    torch.manual_seed(0)
    ws = [torch.randn(6, 4, requires_grad=True) for _ in range(3)]
    attention_penalty(*ws).backward()
    ws2 = [w.detach().clone().requires_grad_(True) for w in ws]
    torch.sqrt(torch.cat(ws2, 0).abs().sum(0)).sum().backward()
    for a, b in zip(ws, ws2):
        assert torch.allclose(a.grad, b.grad, atol=1e-6)


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
    """Large bf16 weights do not overflow: the sums are taken in float32."""
    w = torch.full((64, 64), 60000.0, dtype=torch.float16)
    value = attention_penalty(w, w, w)
    assert value.dtype == torch.float32 and torch.isfinite(value)


def test_penalties_under_bf16_autocast_stay_float32_and_finite():
    """Inside CPU bf16 autocast the sums are still float32 and match the float32 value."""
    torch.manual_seed(0)
    ws = [torch.randn(64, 64) * 100 for _ in range(3)]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = attention_penalty(*ws)
        mlp = mlp_penalty(ws[0], ws[1], eps=1e-4)
    assert value.dtype == mlp.dtype == torch.float32
    assert torch.isclose(value, attention_penalty(*ws)) and torch.isfinite(mlp)
