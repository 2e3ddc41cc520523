"""Calibration: seeded sentence choice, hooked layer inputs at non-padding positions, moments."""
import pytest
import torch

from neuroprune_fairseq.calibration import InputStats, calibration_batches, capture_linear_inputs, head_output_stats
from neuroprune_fairseq.model_parts import attention_modules

from .fairseq_run import build_in_process, preprocess, write_toy_corpus


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """A binarized toy corpus and a tiny model (random init, non-zero weights) on its dictionaries."""
    root = tmp_path_factory.mktemp("calib")
    write_toy_corpus(root / "text")
    preprocess(root / "text", root / "bin")
    task, model, _ = build_in_process(root, data_bin=root / "bin")
    return task, model


def test_batches_hold_the_asked_number_of_distinct_sentences_and_are_seeded(toy):
    task, model = toy
    batches = calibration_batches(task, model, "train", 50, max_tokens=200, seed=3)
    ids = torch.cat([b["id"] for b in batches]).tolist()
    assert len(ids) == len(set(ids)) == 50 and len(batches) > 1  # max_tokens 200 splits them
    again = calibration_batches(task, model, "train", 50, max_tokens=200, seed=3)
    other = calibration_batches(task, model, "train", 50, max_tokens=200, seed=4)
    assert sorted(ids) == sorted(torch.cat([b["id"] for b in again]).tolist())
    assert sorted(ids) != sorted(torch.cat([b["id"] for b in other]).tolist())
    everything = calibration_batches(task, model, "valid", 1000)
    assert sum(len(b["id"]) for b in everything) == 24  # the whole (24-sentence) split, nothing more
    with pytest.raises(ValueError, match="at least one sentence"):
        calibration_batches(task, model, "train", 0)


def test_hooked_inputs_are_the_layer_inputs_at_non_padding_positions(toy):
    """The first encoder layer's q_proj reads the embeddings (layer-normed first in a pre-norm model) and the
    first decoder layer's cross-attention k_proj reads the encoder output: both recomputed here by
    calling the modules directly, padding positions dropped by hand."""
    task, model = toy
    batches = calibration_batches(task, model, "train", 30, max_tokens=150)
    names = ["encoder.layers.0.self_attn.q_proj", "decoder.layers.0.encoder_attn.k_proj", "decoder.layers.1.fc1"]
    modules = dict(model.named_modules())
    got = {n: [] for n in names}
    model.train()
    capture_linear_inputs(model, batches, {n: modules[n] for n in names}, lambda n, rows: got[n].append(rows))
    assert model.training  # mode restored
    assert all(not attn.skip_embed_dim_check for _, attn in attention_modules(model))  # fast path restored
    model.eval()
    pad = task.source_dictionary.pad()
    for sample, q_rows, k_rows in zip(batches, got[names[0]], got[names[1]]):
        src = sample["net_input"]["src_tokens"]  # (B, S)
        with torch.no_grad():
            x, _ = model.encoder.forward_embedding(src)  # (B, S, C)
            layer = model.encoder.layers[0]
            normed = layer.self_attn_layer_norm(x) if layer.normalize_before else x
            enc = model.encoder(src, sample["net_input"]["src_lengths"])["encoder_out"][0]  # (S, B, C)
        keep = src.ne(pad)  # (B, S)
        expected_q = normed.transpose(0, 1)[keep.t()]  # time-major order, as the hooks see it
        assert torch.allclose(q_rows, expected_q, atol=1e-5)
        assert torch.allclose(k_rows, enc[keep.t()], atol=1e-5)
    target_tokens = sum(int(b["net_input"]["prev_output_tokens"].ne(pad).sum()) for b in batches)
    assert sum(r.shape[0] for r in got[names[2]]) == target_tokens


def test_input_stats_match_torch_mean_and_covariance():
    stats = InputStats()
    rows = [torch.randn(7, 5), torch.randn(4, 5) + 2.0]
    for r in rows:
        stats("layer", r)
    mean, cov = stats.mean_cov("layer")
    both = torch.cat(rows).double()
    assert stats.count["layer"] == 11
    assert torch.allclose(mean, both.mean(0))
    assert torch.allclose(cov, torch.cov(both.T, correction=0))


def test_head_output_stats_cover_every_attention_module_with_its_out_proj_width(toy):
    task, model = toy
    stats = head_output_stats(model, calibration_batches(task, model, "train", 20))
    modules = attention_modules(model)
    assert list(stats) == [name for name, _ in modules]
    for (_, attn), (mean, cov) in zip(modules, stats.values()):
        width = attn.num_heads * attn.head_dim
        assert mean.shape == (width,) and cov.shape == (width, width)
        assert torch.allclose(cov, cov.T) and float(torch.linalg.eigvalsh(cov).min()) > -1e-9


def test_a_layer_outside_the_transformer_layers_is_refused(toy):
    task, model = toy
    with pytest.raises(ValueError, match="inside transformer layers"):
        capture_linear_inputs(model, [], {"decoder.output_projection": model.decoder.output_projection}, lambda *a: None)
