"""Michel et al.'s head importance without gates: ``dL/dxi_h = <W_out[:, H_h], dL/dW_out[:, H_h]>``
(core.importance.head_gate_gradient) against autograd through explicit gates xi = 1 on a whole fairseq model."""
import torch

from neuroprune.core.importance import head_gate_gradient
from neuroprune_fairseq.model_parts import attention_modules

from .fairseq_run import build_in_process, random_sample


def _add_gates(model):
    """One gate tensor (H,) of ones per attention module, scaling each head's output before out_proj."""
    gates = []
    for _, attn in attention_modules(model):
        gate = torch.ones(attn.num_heads, requires_grad=True)
        attn.skip_embed_dim_check = True  # fairseq's slow path, which calls out_proj as a module

        def scale(_module, args, gate=gate, d=attn.head_dim):
            x = args[0]  # (T, B, H*d)
            return ((x.reshape(*x.shape[:-1], -1, d) * gate[:, None]).reshape(x.shape),)  # (T, B, H, d) scaled

        attn.out_proj.register_forward_pre_hook(scale)
        gates.append(gate)
    return gates


def test_gate_gradient_from_out_projection_equals_autograd_through_gates(tmp_path):
    task, model, criterion = build_in_process(tmp_path, "--dropout", "0.0")
    with torch.no_grad():  # non-zero biases too, so nothing vanishes by accident of the initialisation
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    gates = _add_gates(model)
    model.eval()
    loss, _, _ = criterion(model, random_sample(task))
    loss.backward()
    modules = attention_modules(model)
    for gate, (name, attn) in zip(gates, modules):
        expected = gate.grad  # (H,) autograd
        got = head_gate_gradient(attn.out_proj.weight, attn.out_proj.weight.grad, attn.num_heads)
        assert expected.abs().min() > 1e-6, name  # every head matters, so a zero from a bug would show
        assert torch.allclose(got, expected, rtol=1e-3, atol=1e-6), name
    assert len(gates) == 18
