"""Sparsity during training through the real fairseq-train: the flags reach the task, gradual magnitude pruning
lands exactly on its target in every matrix of a model whose heads a pass removed, and the proximal step leaves
exact zeros. Slow (two short trainings)."""
import re

import pytest
import torch

from neuroprune.checkpoint_stats import masks_from_state_dict

from .fairseq_run import preprocess, run, train_args, write_toy_corpus

pytestmark = pytest.mark.slow
MATRICES = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("sparse")
    write_toy_corpus(root / "text")
    preprocess(root / "text", root / "bin")
    return root


def _active(state, key):
    """Entries of ``key`` in unmasked heads (rows of q/k/v, columns of out), every entry of fc1/fc2; by hand."""
    weight = state[key]
    module = key.rsplit(".", 2)[0]
    mask = state.get(f"{module}.np_head_mask")
    if mask is None:
        return torch.ones_like(weight, dtype=torch.bool)
    if "out_proj" in key:
        return mask.repeat_interleave(weight.shape[1] // mask.numel()).bool()[None, :].expand_as(weight)
    return mask.repeat_interleave(weight.shape[0] // mask.numel()).bool()[:, None].expand_as(weight)


def test_gradual_magnitude_pruning_reaches_its_target_in_every_matrix(data, tmp_path):
    """Heads pruned after epoch 1 (theta 100: one per module), GMP to 0.6 from update 0 to 12 every 3 updates; after
    3 epochs every matrix has exactly round(0.6 * active) zeros among its active entries, the others still train."""
    log = run("fairseq-train", *train_args(data / "bin", tmp_path / "ckpt", "--np-theta", "100", "--max-epoch", "3",
                                           "--np-gmp-sparsity", "0.6", "--np-gmp-end-update", "12", "--np-gmp-interval", "3",
                                           "--no-epoch-checkpoints", "--disable-validation")).stdout
    assert re.search(r"gradual magnitude pruning after 12 updates: 0.6000 of each matrix's active entries zero", log)
    assert "gradual magnitude pruning after 3 updates: 0.3469" in log  # 0.6 (1 - (3/4)^3)
    state = torch.load(tmp_path / "ckpt" / "checkpoint_last.pt", map_location="cpu", weights_only=False)["model"]
    assert sum(sum(m) for m in masks_from_state_dict(state).values()) == 18
    checked = 0
    for key in state:
        if key.endswith(tuple(f"{m}.weight" for m in MATRICES)):
            active = _active(state, key)
            zeros = int((state[key][active] == 0).sum())
            assert zeros == round(0.6 * int(active.sum())), key
            assert int((state[key][~active] != 0).sum()) == 0, key  # removed heads stay zero
            checked += 1
    assert checked == 18 * 4 + 12 * 2  # 18 attention modules' q/k/v/out, 12 layers' fc1/fc2


def test_proximal_step_leaves_exact_zeros(data, tmp_path):
    """A strong proximal step (lr 0.002 x 5 per update) zeroes a large share of the matrices outright."""
    run("fairseq-train", *train_args(data / "bin", tmp_path / "ckpt", "--np-prox-strength", "5", "--max-epoch", "2",
                                     "--no-epoch-checkpoints", "--disable-validation"))
    state = torch.load(tmp_path / "ckpt" / "checkpoint_last.pt", map_location="cpu", weights_only=False)["model"]
    fc1 = state["encoder.layers.0.fc1.weight"]
    assert float((fc1 == 0).float().mean()) > 0.2
    assert float((state["encoder.embed_tokens.weight"] == 0).float().mean()) < 0.01  # embeddings are not touched
