"""--np-cpu-bf16-autocast: the training forward runs its matmuls in bfloat16 on CPU, while the loss, the
gradients and the weights stay float32. Compared with the same step computed without the flag (the float32
reference), not with itself."""
import torch

from .fairseq_run import build_in_process, random_sample


class Backward:
    """The one thing fairseq's train_step asks of its optimizer."""

    def backward(self, loss):
        loss.backward()


def _step(tmp_path, *flags):
    """One train_step on a fixed batch; returns (loss, fc1 output dtype seen in the forward, gradients)."""
    tmp_path.mkdir()
    task, model, criterion = build_in_process(tmp_path, "--np-alpha", "1e-4", "--np-beta", "1e-3", "--dropout", "0", *flags)
    seen = []
    model.decoder.layers[0].fc1.register_forward_hook(lambda module, inputs, output: seen.append(output.dtype))
    loss, _, _ = task.train_step(random_sample(task), model, criterion, Backward(), update_num=0)
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return loss.detach(), seen, grads, model


def test_the_forward_runs_in_bfloat16_and_loss_gradients_weights_stay_float32(tmp_path):
    loss32, seen32, grads32, _ = _step(tmp_path / "a")
    loss16, seen16, grads16, model = _step(tmp_path / "b", "--np-cpu-bf16-autocast")
    assert seen32 == [torch.float32] and seen16 == [torch.bfloat16]
    assert loss16.dtype == torch.float32 and all(p.dtype == torch.float32 for p in model.parameters())
    assert all(g.dtype == torch.float32 for g in grads16.values()) and grads16.keys() == grads32.keys()
    assert loss16 != loss32  # a different computation ...
    assert abs(float(loss16 - loss32)) < 1e-2 * float(loss32)  # ... that bfloat16's 8-bit mantissa keeps close
    flat32 = torch.cat([g.flatten() for g in grads32.values()])
    flat16 = torch.cat([grads16[n].flatten() for n in grads32])
    assert torch.nn.functional.cosine_similarity(flat32, flat16, dim=0) > 0.99

