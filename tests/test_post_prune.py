"""tools.post_prune on a tiny trained fairseq model: exact sparsity of the active weights, head masks kept,
sparsity 0 zeroes only dead inputs' weights, N:M patterns, exported checkpoints, generation, and one error per
bad input."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from neuroprune import checkpoint_stats
from neuroprune_fairseq.tools import export, post_prune

from .fairseq_run import PLUGIN_DIR, preprocess, run, train_args, write_toy_corpus

NUM_TEST = 16
REPO = Path(__file__).resolve().parents[1]
MASKS = {"encoder.layers.0.self_attn": [1, 0, 1, 0, 0, 1], "decoder.layers.1.encoder_attn": [0, 1, 1, 1, 1, 0]}
PRUNABLE = tuple(checkpoint_stats.MATRIX_SUFFIXES.values())
# every test here prunes a model trained by fairseq-train in the module fixture: out of the fast loop
pytestmark = pytest.mark.slow


def _state(path):
    return torch.load(path, map_location="cpu", weights_only=False)["model"]


def _prune(root, name, *flags):
    """Run the tool in process on the masked checkpoint; returns the output's path and the record."""
    out = root / f"{name}.pt"
    record = post_prune.main(["--checkpoint", str(root / "masked.pt"), "--data-bin", str(root / "bin"), "--out", str(out),
                              "--cpu", *flags])
    return out, record


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """A tiny model trained 2 epochs, with heads masked in two modules (weights zeroed as a masking run leaves them)."""
    root = tmp_path_factory.mktemp("post_prune")
    write_toy_corpus(root / "text", sizes=(("train", 240), ("valid", 24), ("test", NUM_TEST)))
    preprocess(root / "text", root / "bin")
    run("fairseq-train", *train_args(root / "bin", root / "ckpt", "--max-epoch", "2", "--no-epoch-checkpoints"))
    ckpt = torch.load(root / "ckpt" / "checkpoint_last.pt", map_location="cpu", weights_only=False)
    for module, mask in MASKS.items():
        ckpt["model"][f"{module}.np_head_mask"] = torch.tensor(mask, dtype=torch.float)
    ckpt["model"] = checkpoint_stats.apply_head_masks(ckpt["model"])
    torch.save(ckpt, root / "masked.pt")
    return root


@pytest.fixture(scope="module")
def pruned(toy):
    """Each method at sparsity 0.6, and SparseGPT / SparseLLM at 2:4."""
    runs = {m: _prune(toy, m, "--method", m, "--sparsity", "0.6", "--heldout-sentences", "10")
            for m in ("magnitude", "wanda", "sparsegpt", "sparsellm")}
    for m in ("sparsegpt", "sparsellm"):
        runs[f"{m}_2:4"] = _prune(toy, f"{m}_24", "--method", m, "--pattern", "2:4")
    return runs


def active_weights(state):
    """Every prunable matrix's weights outside masked heads, flattened, by key; the masks are read from the
    state and expanded by hand (head h owns q/k/v rows and out columns h*d..(h+1)*d-1)."""
    active = {}
    for key, weight in state.items():
        if not key.endswith(PRUNABLE):
            continue
        module = key.rsplit(".", 2)[0]
        mask = state.get(f"{module}.np_head_mask")
        if mask is None:
            active[key] = weight
            continue
        keep = mask.bool().repeat_interleave(weight.shape[0 if not key.endswith(".out_proj.weight") else 1] // len(mask))
        active[key] = weight[keep] if not key.endswith(".out_proj.weight") else weight[:, keep]
    return active


def test_sparsegpt_at_sparsity_zero_zeroes_only_the_weights_of_dead_inputs(toy):
    """Nothing pruned, nothing compensated: the model state comes back bit for bit (masks included) but for
    the weights of inputs that are zero on every calibration token (dead ReLU units before fc2, many in this
    toy model), zeroed as SparseGPT's authors do; they are found here from the dense model's own input
    moments (zeroing them changes no calibration output, so every layer saw the dense model's inputs)."""
    from fairseq import checkpoint_utils

    from neuroprune_fairseq.calibration import InputStats, calibration_batches, capture_linear_inputs
    from neuroprune_fairseq.post_pruning import prunable_linears, transformer_layers

    out, _ = _prune(toy, "zero", "--method", "sparsegpt", "--sparsity", "0")
    before, after = _state(toy / "masked.pt"), _state(out)
    models, _, task = checkpoint_utils.load_model_ensemble_and_task([str(toy / "masked.pt")], arg_overrides={"data": str(toy / "bin")})
    linears = {k: v for name, layer in transformer_layers(models[0]) for k, v in prunable_linears(name, layer).items()}
    stats = InputStats()
    capture_linear_inputs(models[0], calibration_batches(task, models[0], "train", 256), linears, stats)
    expected = dict(before)
    for name in linears:
        expected[f"{name}.weight"] = before[f"{name}.weight"].masked_fill(stats.xtx[name].diagonal()[None, :] == 0, 0)
    changed = [k for k in before if not torch.equal(before[k], expected[k])]
    assert changed and all(k.endswith("fc2.weight") for k in changed)
    assert all(torch.equal(after[k], v) for k, v in expected.items())
    assert set(before) <= set(after)


@pytest.mark.parametrize("method", ["magnitude", "wanda", "sparsegpt", "sparsellm"])
def test_every_active_matrix_has_exactly_the_asked_sparsity_and_masked_heads_stay(toy, pruned, method):
    before, after = _state(toy / "masked.pt"), _state(pruned[method][0])
    active = active_weights(after)
    assert len(active) == 12 * 6 + 6 * 4  # q/k/v/out of 18 attention modules, fc1/fc2 of 12 layers
    for key, weights in active.items():
        assert int((weights == 0).sum()) == round(0.6 * weights.numel()), key
    for module, mask in MASKS.items():
        assert after[f"{module}.np_head_mask"].tolist() == mask
        dead = ~torch.tensor(mask, dtype=torch.bool).repeat_interleave(8)  # head_dim 48 / 6
        for proj in ("q_proj", "k_proj", "v_proj"):
            assert after[f"{module}.{proj}.weight"][dead].abs().sum() == 0
        assert after[f"{module}.out_proj.weight"][:, dead].abs().sum() == 0
    unchanged = [k for k in before if not k.endswith(PRUNABLE)]
    assert unchanged and all(torch.equal(before[k], after[k]) for k in unchanged)  # biases, norms, embeddings


@pytest.mark.parametrize("method", ["sparsegpt_2:4", "sparsellm_2:4"])
def test_n_m_pattern_holds_in_every_active_row(pruned, method):
    """2 zeros in every group of 4 inputs of every row, more only where more of the group's inputs are dead
    (their columns zeroed in every row): the count is max(2, the group's all-zero columns)."""
    for key, weights in active_weights(_state(pruned[method][0])).items():
        groups = (weights == 0).reshape(weights.shape[0], -1, 4)  # (rows, groups, 4)
        dead = groups.all(0).sum(-1)  # (groups,)
        assert bool((groups.sum(-1) == dead.clamp_min(2)[None, :]).all()), key


def test_record_holds_settings_sparsity_cost_and_sparsellm_history(pruned, toy):
    _, record = pruned["sparsellm"]
    on_disk = json.loads((toy / "sparsellm.json").read_text())
    assert on_disk["method"] == "sparsellm" and on_disk["sparsity"] == 0.6 and on_disk["args"]["subset"] == "train"
    assert on_disk["calibration"]["sentences"] == 240 and on_disk["calibration"]["tokens"]["source"] > 240
    assert on_disk["wall_seconds"] > 0 and on_disk["peak_rss_mb"] > 0
    assert set(on_disk["sparsity_achieved"]["by_type"]) == {"q", "k", "v", "out", "fc1", "fc2"}
    assert abs(on_disk["sparsity_achieved"]["overall"] - 0.6) < 1e-3
    layers = on_disk["layers"]
    assert [layer["name"] for layer in layers] == [f"{s}.layers.{i}" for s in ("encoder", "decoder") for i in range(6)]
    assert on_disk["settings"] == {"method": "sparsellm", "sparsity": 0.6, "pattern": None, "iterations": 4,
                                   "acceptance_test": False, "block_size": 128, "damp": 0.01}
    for layer in layers:  # F may end above iteration 0's: every re-pruned matrix is taken, as in the paper
        assert len(layer["sparsellm"]["objective"]) == len(layer["sparsellm"]["output_error"]) == len(layer["sparsellm"]["heldout_error"]) == 4
    assert record == on_disk


def test_sparsellm_heldout_error_by_iteration_starts_at_sparsegpt_and_ends_at_the_layer(pruned):
    """Iteration 0 of encoder layer 0 (inputs that no pruning precedes; its attention pruned by SparseGPT in both
    runs) is the SparseGPT run's held-out FFN error there; the last iteration is the layer's own measurement."""
    sparsellm, sparsegpt = (pruned[m][1]["layers"] for m in ("sparsellm", "sparsegpt"))
    assert sparsellm[0]["sparsellm"]["heldout_error"][0] == pytest.approx(sparsegpt[0]["ffn_heldout_error"], rel=1e-4)
    for layer in sparsellm:
        assert layer["sparsellm"]["heldout_error"][-1] == pytest.approx(layer["ffn_heldout_error"], rel=1e-4), layer["name"]


def test_heldout_ffn_error_matches_a_recomputation_from_the_checkpoints(toy, pruned):
    """Encoder layer 1's FFN output error on 10 held-out sentences, recomputed here: its inputs come from the
    model with layer 0 pruned and layer 1 not yet (as when the tool pruned it); magnitude pruning reads no
    data, so the pruned checkpoint's weights are the ones the tool used."""
    from fairseq import checkpoint_utils

    from neuroprune_fairseq.calibration import calibration_batches, capture_linear_inputs

    path, record = pruned["magnitude"]
    models, _, task = checkpoint_utils.load_model_ensemble_and_task([str(toy / "masked.pt")], arg_overrides={"data": str(toy / "bin")})
    model, after = models[0], _state(path)
    model.encoder.layers[0].load_state_dict({k[len("encoder.layers.0."):]: v for k, v in after.items() if k.startswith("encoder.layers.0.")})
    rows = []
    capture_linear_inputs(model, calibration_batches(task, model, "valid", 10), {"encoder.layers.1.fc1": model.encoder.layers[1].fc1},
                          lambda _, r: rows.append(r))
    x, layer = torch.cat(rows), model.encoder.layers[1]  # (n, 48)
    with torch.no_grad():
        dense = layer.fc2(torch.relu(layer.fc1(x)))
        hidden = torch.relu(torch.nn.functional.linear(x, after["encoder.layers.1.fc1.weight"], after["encoder.layers.1.fc1.bias"]))
        sparse = torch.nn.functional.linear(hidden, after["encoder.layers.1.fc2.weight"], after["encoder.layers.1.fc2.bias"])
    expected = float((sparse - dense).pow(2).sum() / dense.pow(2).sum())
    assert record["heldout"] == {"subset": "valid", "sentences": 10}
    assert record["layers"][1]["ffn_heldout_error"] == pytest.approx(expected, rel=1e-4)
    assert 0 < expected < 1


def test_progress_is_printed_per_layer(toy, capsys):
    _prune(toy, "progress", "--method", "magnitude", "--sparsity", "0.5")
    err = capsys.readouterr().err
    assert len(re.findall(r"^post_prune \| (encoder|decoder)\.layers\.\d \| magnitude \| sparsity 0\.5", err, flags=re.M)) == 12


def test_pruned_checkpoint_generates(toy, pruned):
    gen = run(
        "fairseq-generate", str(toy / "bin"), "--user-dir", PLUGIN_DIR, "--task", "neuroprune_translation",
        "--path", str(pruned["sparsellm"][0]), "--gen-subset", "test", "--beam", "2", "--batch-size", "8",
        "--required-batch-size-multiple", "1", "--cpu",
    )
    assert sorted(int(h) for h in re.findall(r"^H-(\d+)\t", gen.stdout, flags=re.M)) == list(range(NUM_TEST))


def test_exported_checkpoint_keeps_its_shapes(toy):
    """An exported checkpoint has no masks and fewer heads: pruned, its shapes stay and every matrix
    (all of it active now) has the asked sparsity, as in its masked original."""
    export.main(["--checkpoint", str(toy / "masked.pt"), "--out", str(toy / "exported.pt")])
    out = toy / "exported_sparse.pt"
    post_prune.main(["--checkpoint", str(toy / "exported.pt"), "--data-bin", str(toy / "bin"), "--out", str(out),
                     "--method", "sparsegpt", "--sparsity", "0.5", "--cpu"])
    before, after = _state(toy / "exported.pt"), _state(out)
    assert {k: v.shape for k, v in before.items()} == {k: after[k].shape for k in before}
    assert after["encoder.layers.0.self_attn.q_proj.weight"].shape[0] == 24  # 3 of 6 heads of 8 rows
    for key in (k for k in after if k.endswith(PRUNABLE)):
        assert int((after[key] == 0).sum()) == round(0.5 * after[key].numel()), key


def _gelu_checkpoint(toy):
    ckpt = torch.load(toy / "masked.pt", map_location="cpu", weights_only=False)
    ckpt["cfg"]["model"].activation_fn = "gelu"
    torch.save(ckpt, toy / "gelu.pt")
    return "gelu.pt"


@pytest.mark.parametrize("flags,message", [
    (["--sparsity", "1.0"], r"--sparsity 1.0: must be in \[0, 1\)"),
    (["--sparsity", "-0.1"], r"--sparsity -0.1: must be in \[0, 1\)"),
    ([], "--sparsity or --pattern is required"),
    (["--pattern", "4:2"], "--pattern: an N:M pattern is two integers 0 < N < M"),
    (["--pattern", "2:4", "--sparsity", "0.7"], "--sparsity 0.7 contradicts --pattern 2:4"),
    (["--pattern", "2:5"], r"--pattern 2:5: N:M pattern 2:5 needs an input size that is a multiple of 5, but encoder.layers.0.self_attn.[kqv]_proj has 48 inputs"),
    (["--sparsity", "0.5", "--calib-sentences", "0"], "--calib-sentences 0: at least 1 calibration sentence"),
    (["--sparsity", "0.5", "--method", "sparsellm", "--calib-sentences", "3"],
     r"--calib-sentences 3 --subset train: SparseLLM needs more calibration tokens than the FFN width: 3 sentences give \d+ source tokens for encoder.layers.0's width 64; about \d+ sentences are needed"),
    (["--sparsity", "0.5", "--method", "magnitude", "--iterations", "2"], "--iterations is only used by sparsellm, not by --method magnitude"),
    (["--sparsity", "0.5", "--method", "wanda", "--damp", "0.1"], "--damp is only used by sparsegpt and sparsellm"),
    (["--sparsity", "0.5", "--acceptance-test"], "--acceptance-test is only used by sparsellm, not by --method sparsegpt"),
    (["--sparsity", "0.5", "--pattern", "2:4", "--block-size", "6"], "--block-size 6 must be a multiple of the pattern's M = 4"),
    (["--sparsity", "0.5", "--method", "sparsellm", "--checkpoint", "GELU"],
     r"--method sparsellm: encoder.layers.0: SparseLLM's closed-form z step needs fc2\(relu\(fc1\(x\)\)\), but this FFN uses gelu"),
    (["--sparsity", "0.5", "--checkpoint", "GARBAGE"], "--checkpoint: .*garbage.pt is not a readable torch checkpoint"),
    (["--sparsity", "0.5", "--checkpoint", "MISSING"], "--checkpoint: .*missing.pt does not exist"),
    (["--sparsity", "0.5", "--out", "EXISTS"], "--out: .*exists.pt exists; pass --overwrite"),
])
def test_each_bad_input_gets_its_error(toy, flags, message):
    (toy / "garbage.pt").write_bytes(b"not a checkpoint")
    (toy / "exists.pt").write_text("")
    paths = {"GELU": _gelu_checkpoint(toy) if "GELU" in flags else None, "GARBAGE": "garbage.pt", "MISSING": "missing.pt",
             "EXISTS": "exists.pt"}
    flags = [str(toy / paths[f]) if f in paths else f for f in flags]
    if "--method" not in flags:
        flags += ["--method", "sparsegpt"]
    argv = ["--checkpoint", str(toy / "masked.pt"), "--data-bin", str(toy / "bin"), "--out", str(toy / "bad.pt"), "--cpu"]
    with pytest.raises(SystemExit, match=message):
        post_prune.main(argv + flags)  # argparse keeps the last --checkpoint / --out given
    assert not (toy / "bad.pt").exists()


def _script(toy, *, bases, results):
    env = dict(os.environ, BASES=bases, METHODS="wanda", SPARSITIES="0.5", DATA_BIN=str(toy / "bin"),
               CALIB_SENTENCES="50", BEAM="1", MAX_PIECES="0", OUT_DIR=str(toy / "script_runs"), RESULTS_DIR=str(results),
               FRONTIER_EXTRA="", PYTHON=sys.executable, OMP_NUM_THREADS="1")
    return subprocess.run(["bash", "examples/iwslt14_de_en/post_prune.sh"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=900)


def test_study_script_prunes_evaluates_plots_and_skips_what_exists(toy):
    """One base x one method x one sparsity; the relaunch finds every record and only redraws the plots."""
    results = toy / "script_results"
    first = _script(toy, bases=f"dense:dense:{toy / 'masked.pt'}", results=results)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    for name, method in (("dense", "dense"), ("dense_wanda_s0.5", "wanda")):
        assert json.loads((results / "records" / f"{name}.json").read_text())["method"] == method
    prune = json.loads((results / "prune" / "dense_wanda_s0.5.json").read_text())
    assert prune["method"] == "wanda" and prune["calibration"]["sentences"] == 50
    assert {p.name for p in results.glob("*.png")} == {"bleu-vs-sparsity-dense.png", "frontier.png"}
    # hypotheses kept beside the records, the references once
    assert sorted(p.name for p in (results / "text").iterdir()) == ["dense.hyp", "dense_wanda_s0.5.hyp", "test.ref"]
    assert len((results / "text" / "dense_wanda_s0.5.hyp").read_text().splitlines()) == NUM_TEST
    again = _script(toy, bases=f"dense:dense:{toy / 'masked.pt'}", results=results)
    assert again.returncode == 0 and not re.search(r"=== .*(prune|evaluate) ", again.stdout)
    bad = _script(toy, bases=f"dense:{toy / 'masked.pt'}", results=results)
    assert bad.returncode != 0 and "is not name:method:checkpoint" in bad.stderr
