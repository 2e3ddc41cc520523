"""prune_model on a tiny random-init fairseq transformer (no training): each refusal of bad numbers names the
layer, and SparseLLM's per-iteration held-out FFN error agrees with the layer's own measurement and, on the
first layer, with SparseGPT's."""
import copy

import pytest
import torch

from neuroprune_fairseq.post_pruning import Settings, prune_model

from .fairseq_run import build_in_process


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Task and model (embed 48, FFN 64, 6 encoder and 6 decoder layers, post-norm), weights as initialised."""
    task, model, _ = build_in_process(tmp_path_factory.mktemp("post_pruning"))
    return task, model.eval()


def batches(task, seed, count=2, sentences=12, length=6):
    """``count`` random batches of ``sentences`` x ``length`` tokens in fairseq's sample format (no padding)."""
    g, d = torch.Generator().manual_seed(seed), task.target_dictionary
    made = []
    for b in range(count):
        src = torch.randint(d.nspecial, len(d), (sentences, length), generator=g)
        prev = torch.cat([torch.full((sentences, 1), d.eos()), torch.randint(d.nspecial, len(d), (sentences, length - 1), generator=g)], 1)
        made.append({"id": torch.arange(b * sentences, (b + 1) * sentences),
                     "net_input": {"src_tokens": src, "src_lengths": torch.full((sentences,), length), "prev_output_tokens": prev}})
    return made


def poisoned(model, parameter, value, index=3):
    """A copy of ``model`` with one entry of ``parameter`` set to ``value``."""
    copied = copy.deepcopy(model)
    with torch.no_grad():
        copied.get_parameter(parameter).view(-1)[index] = value
    return copied


@pytest.mark.parametrize("method,parameter,message", [
    ("magnitude", "encoder.layers.1.self_attn.k_proj.weight",
     r"encoder\.layers\.1\.self_attn\.k_proj: the weight \(48, 48\) has NaN or infinite entries \(1 of 2304\)"),
    ("wanda", "decoder.layers.2.encoder_attn.out_proj.weight",
     r"decoder\.layers\.2\.encoder_attn\.out_proj: the weight \(48, 48\) has NaN or infinite entries \(1 of 2304\)"),
    ("sparsegpt", "encoder.layers.4.fc2.weight", r"encoder\.layers\.4\.fc2: the weight \(48, 64\) has NaN or infinite entries"),
    ("sparsellm", "decoder.layers.0.fc2.weight", r"decoder\.layers\.0: fc2's weight has NaN or infinite entries \(1 of 3072\)"),
])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_weight_that_is_not_finite_is_refused_naming_its_layer(tiny, method, parameter, message, value):
    task, model = tiny
    with pytest.raises(ValueError, match=message):
        prune_model(poisoned(model, parameter, value), batches(task, 0), Settings(method, 0.5))


@pytest.mark.parametrize("method,message", [
    ("wanda", r"encoder\.layers\.1\.fc1: the Hessian \(calibration inputs' second moment\) has NaN or infinite entries \(95 of 2304\)"),
    ("sparsegpt", r"encoder\.layers\.1\.fc1: the Hessian \(calibration inputs' second moment\) has NaN or infinite entries \(95 of 2304\)"),
    ("sparsellm", r"encoder\.layers\.1: fc1's calibration input matrix has NaN or infinite entries \(144 of 6912\)"),
])
def test_calibration_inputs_that_are_not_finite_are_refused_naming_the_layer(tiny, method, message):
    """A NaN in the layer norm before encoder layer 1's fc1 (post-norm) makes input 3 of fc1 NaN on each of the
    144 source tokens: row and column 3 of its Hessian, 2 * 48 - 1 = 95 entries (Wanda's norm of input 3
    among them); the attention projections before it read clean inputs."""
    task, model = tiny
    with pytest.raises(ValueError, match=message):
        prune_model(poisoned(model, "encoder.layers.1.self_attn_layer_norm.weight", float("nan")), batches(task, 0),
                    Settings(method, 0.5))


@pytest.mark.parametrize("pattern", [(4, 4), (6, 4), (0, 4)])
def test_a_pattern_without_0_lt_n_lt_m_is_refused_naming_the_first_matrix(tiny, pattern):
    """(4, 4) zeroed every weight before (only the text form "4:4" was refused); k_proj is the first matrix fairseq
    defines."""
    task, model = tiny
    with pytest.raises(ValueError, match=rf"got \({pattern[0]}, {pattern[1]}\) for encoder\.layers\.0\.self_attn\.k_proj"):
        prune_model(copy.deepcopy(model), batches(task, 0), Settings("sparsegpt", pattern[0] / pattern[1], pattern))


def test_sparsellm_heldout_error_per_iteration_against_the_layer_and_sparsegpt(tiny):
    """The last iteration's held-out error is the layer's ffn_heldout_error, measured by the layer's own modules
    after write-back (float32); iteration 0's, on encoder layer 0 (whose inputs no pruning precedes), is
    SparseGPT's ffn_heldout_error from a separate SparseGPT run."""
    task, model = tiny
    calibration, heldout = batches(task, 0), batches(task, 1, count=1)
    by_sparsellm = prune_model(copy.deepcopy(model), calibration, Settings("sparsellm", 0.6), heldout)["layers"]
    by_sparsegpt = prune_model(copy.deepcopy(model), calibration, Settings("sparsegpt", 0.6), heldout)["layers"]
    for layer in by_sparsellm:
        history = layer["sparsellm"]["heldout_error"]
        assert len(history) == 4 and history[-1] == pytest.approx(layer["ffn_heldout_error"], rel=1e-4), layer["name"]
    assert by_sparsellm[0]["sparsellm"]["heldout_error"][0] == pytest.approx(by_sparsegpt[0]["ffn_heldout_error"], rel=1e-4)
    assert any(layer["sparsellm"]["heldout_error"][-1] != layer["sparsellm"]["heldout_error"][0] for layer in by_sparsellm)
