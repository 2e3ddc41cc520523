"""fairseq's own FP16Optimizer, built on CPU: the master-weight sync after in-place edits (optim_sync) and the
loss scale DSP divides its gate gradients by (dsp_gates._loss_scale)."""
import pytest
import torch
from fairseq import options
from fairseq.dataclass.utils import convert_namespace_to_omegaconf
from fairseq.modules.multihead_attention import MultiheadAttention
from fairseq.optim.fp16_optimizer import FP16Optimizer

from neuroprune_fairseq import head_masks
from neuroprune_fairseq.dsp_gates import _loss_scale
from neuroprune_fairseq.optim_sync import copy_model_params_to_master


def _fp16_setup(monkeypatch, *flags):
    """A half-precision attention module (head masks attached) and fairseq's FP16Optimizer over it (SGD, lr 0)."""
    # The flat master copy lives on torch.cuda.current_device(); a CPU tensor's device index is None.
    monkeypatch.setattr(torch.cuda, "current_device", lambda: None)
    args = options.parse_args_and_arch(options.get_training_parser(), [
        "unused-data", "--arch", "transformer_iwslt_de_en", "--optimizer", "sgd", "--lr", "0", "--fp16", *flags])
    cfg = convert_namespace_to_omegaconf(args)
    torch.manual_seed(0)
    attn = MultiheadAttention(8, 2, self_attention=True)
    head_masks.attach(attn)
    attn.half()
    params = [p for p in attn.parameters() if p.requires_grad]
    return attn, FP16Optimizer.build_optimizer(cfg, params)


def _train_step(attn, optimizer):
    """One fp16 update as fairseq's trainer does it: scaled backward, then a step of the fp32 master copy."""
    optimizer.zero_grad()
    x = torch.randn(3, 1, 8).half()
    out, _ = attn(x, x, x)
    optimizer.backward(out.float().sum())
    optimizer.step()


@pytest.mark.parametrize("flags,flat", [((), True), (("--fp16-no-flatten-grads",), False)])
def test_an_edit_after_a_step_survives_the_next_step_only_with_the_sync(monkeypatch, flags, flat):
    """FP16Optimizer.step copies its fp32 master into the model; an elimination pass edits the model between
    steps. With lr 0 the next step must leave the edit in place, which it does only after the sync."""
    attn, optimizer = _fp16_setup(monkeypatch, *flags)
    assert optimizer.has_flat_params is flat
    _train_step(attn, optimizer)
    original = {n: p.detach().clone() for n, p in attn.named_parameters()}
    head_masks.head_mask(attn)[0] = 0
    head_masks.enforce_module(attn)  # zeroes head 0's q/k/v rows and out_proj columns in the fp16 model
    edited = {n: p.detach().clone() for n, p in attn.named_parameters()}
    assert float(edited["q_proj.weight"][:4].abs().sum()) == 0 < float(original["q_proj.weight"][:4].abs().sum())

    _train_step(attn, optimizer)  # no sync: the stale master copy comes back
    assert all(torch.equal(p, original[n]) for n, p in attn.named_parameters())

    head_masks.enforce_module(attn)
    assert copy_model_params_to_master(optimizer) is True
    _train_step(attn, optimizer)
    assert all(torch.equal(p, edited[n]) for n, p in attn.named_parameters())


def test_an_optimizer_without_master_copy_is_left_alone():
    param = torch.nn.Parameter(torch.ones(3))
    assert copy_model_params_to_master(torch.optim.SGD([param], lr=0.1)) is False


def test_loss_scale_is_the_factor_fairseq_multiplied_the_backward_by(monkeypatch):
    """DSP unscales its gate gradients by _loss_scale: check it against the factor in a real fp16 backward,
    before and after the dynamic scaler halves it on an overflow."""
    attn, optimizer = _fp16_setup(monkeypatch, "--fp16-init-scale", "32")
    x = torch.randn(3, 1, 8).half()
    for expected in (32.0, 16.0):
        attn.zero_grad()
        out, _ = attn(x, x, x)
        optimizer.backward(out.float().sum())
        scaled = attn.v_proj.bias.grad.float()
        attn.zero_grad()
        out, _ = attn(x, x, x)
        out.float().sum().backward()
        assert _loss_scale(optimizer) == expected
        assert torch.allclose(scaled / _loss_scale(optimizer), attn.v_proj.bias.grad.float(), rtol=1e-3, atol=1e-3)
        with pytest.raises(OverflowError):
            optimizer.scaler.check_overflow(float("inf"))  # what fairseq does on an inf gradient norm
    assert _loss_scale(torch.optim.SGD([torch.nn.Parameter(torch.ones(1))], lr=0.1)) == 1.0
