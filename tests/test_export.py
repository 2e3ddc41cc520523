"""Exporting a pruned checkpoint to a smaller fairseq model: shapes, exactness, fairseq-generate, errors.

One tiny model (2+2 layers, 6 heads of 8, FFN 64) is trained with the real CLI; its checkpoint is then
edited by hand into a "masked" one: NeuroPrune-style modules (mask 0, weights zero), a DSP-style module
(mask 0, weights left non-zero) and FFN units with zero fc1 rows and non-zero fc1 biases. Slow (a
15-epoch training and several fairseq-generate runs).
"""
import json
import re

import pytest
import torch
from fairseq import checkpoint_utils

from neuroprune_fairseq.exported_model import EXPORTED_ARCH, SHAPES_FIELD
from neuroprune_fairseq.tools import bench_generate, export

from .fairseq_run import PLUGIN_DIR, preprocess, run, train_args, write_toy_corpus

pytestmark = pytest.mark.slow
NUM_TEST = 16
HEAD_DIM = 8
MASKS = {  # module -> (mask, zero the masked heads' weights in the file)
    "encoder.layers.0.self_attn": ([1, 0, 1, 0, 0, 1], True),
    "decoder.layers.0.self_attn": ([0, 0, 0, 0, 0, 1], True),
    "decoder.layers.1.encoder_attn": ([0, 1, 1, 1, 1, 0], False),  # DSP: weights stay in the file
}
EXPECTED_HEADS = {
    "encoder.layers.0.self_attn": 3, "encoder.layers.1.self_attn": 6,
    "decoder.layers.0.self_attn": 1, "decoder.layers.0.encoder_attn": 6,
    "decoder.layers.1.self_attn": 6, "decoder.layers.1.encoder_attn": 4,
}
EXPECTED_FFN = {"encoder.layers.0": 64, "encoder.layers.1": 24, "decoder.layers.0": 24, "decoder.layers.1": 1}
# Parameters the export removes, by hand: a head owns d rows of q/k/v weights (d x 48) and biases (d) and d
# out-projection columns (48 x d); an FFN unit one fc1 row (48), its fc1 bias and one fc2 column (48).
REMOVED_PARAMS = (sum(6 - h for h in EXPECTED_HEADS.values()) * (3 * (HEAD_DIM * 48 + HEAD_DIM) + 48 * HEAD_DIM)
                  + sum(64 - u for u in EXPECTED_FFN.values()) * (48 + 1 + 48))


def _mask_checkpoint(src, dst):
    """Write ``src`` with the heads of :data:`MASKS` masked and dead FFN units (see the module docstring)."""
    ckpt = torch.load(src, map_location="cpu", weights_only=False)
    state = ckpt["model"]
    for module, (mask, zero) in MASKS.items():
        state[f"{module}.np_head_mask"] = torch.tensor(mask, dtype=torch.float)
        rows = torch.tensor(mask, dtype=torch.float).repeat_interleave(HEAD_DIM)
        if zero:
            for proj in ("q_proj", "k_proj", "v_proj"):
                state[f"{module}.{proj}.weight"] *= rows[:, None]
                state[f"{module}.{proj}.bias"] *= rows
            state[f"{module}.out_proj.weight"] *= rows[None, :]
    state["np_dsp_logits"] = torch.randn(36)  # a DSP checkpoint's gate logits: training state, not exported
    small = torch.empty(48, 40).uniform_(-9e-5, 9e-5, generator=torch.Generator().manual_seed(0))  # below --eps
    dead = {"encoder.layers.1": (slice(0, 40), 0.0), "decoder.layers.0": (slice(10, 50), small), "decoder.layers.1": (slice(None), 0.0)}
    for layer, (units, fc2_columns) in dead.items():
        state[f"{layer}.fc1.weight"][units] = 0
        state[f"{layer}.fc1.bias"][units] = 0.5  # relu(0.5) * fc2 column: folded into fc2's bias
        state[f"{layer}.fc2.weight"][:, units] = fc2_columns  # random signs: the LayerNorm cannot absorb them
    torch.save(ckpt, dst)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    write_toy_corpus(root / "text", sizes=(("train", 240), ("valid", 24), ("test", NUM_TEST)))
    preprocess(root / "text", root / "bin")
    run("fairseq-train", *train_args(
        root / "bin", root / "ckpt", "--encoder-layers", "2", "--decoder-layers", "2", "--lr", "0.003",
        "--max-tokens", "300", "--max-epoch", "15", "--no-epoch-checkpoints", "--disable-validation"))
    dense, masked, exported = root / "ckpt" / "checkpoint_last.pt", root / "masked.pt", root / "exported.pt"
    _mask_checkpoint(dense, masked)
    result = export.main(["--checkpoint", str(masked), "--out", str(exported)])
    return dict(root=root, bin=root / "bin", dense=dense, masked=masked, exported=exported, result=result)


def _generate(models, checkpoint, beam, task="neuroprune_translation"):
    out = run("fairseq-generate", str(models["bin"]), "--user-dir", PLUGIN_DIR, "--task", task, "--path", str(checkpoint),
              "--gen-subset", "test", "--beam", str(beam), "--batch-size", "8", "--required-batch-size-multiple", "1", "--cpu").stdout
    hyps = dict(re.findall(r"^H-(\d+)\t[^\t]*\t(.*)$", out, flags=re.M))
    assert len(hyps) == NUM_TEST
    return hyps


def _load(models, checkpoint):
    (model,), _, task = checkpoint_utils.load_model_ensemble_and_task([str(checkpoint)], arg_overrides={"data": str(models["bin"])})
    return model.eval(), task


def test_exported_shapes_and_contents(models):
    """Heads and FFN units leave the tensors; shapes are stored with the model; masks and optimizer state go."""
    ckpt = torch.load(models["exported"], map_location="cpu", weights_only=False)
    state, model_args = ckpt["model"], ckpt["cfg"]["model"]
    assert model_args.arch == EXPORTED_ARCH
    assert getattr(model_args, SHAPES_FIELD) == {"heads": EXPECTED_HEADS, "ffn": EXPECTED_FFN}
    for module, heads in EXPECTED_HEADS.items():
        assert state[f"{module}.q_proj.weight"].shape == (heads * HEAD_DIM, 48)
        assert state[f"{module}.v_proj.bias"].shape == (heads * HEAD_DIM,)
        assert state[f"{module}.out_proj.weight"].shape == (48, heads * HEAD_DIM)
    for layer, units in EXPECTED_FFN.items():
        assert state[f"{layer}.fc1.weight"].shape == (units, 48) and state[f"{layer}.fc2.weight"].shape == (48, units)
    assert not [k for k in state if "np_" in k]
    assert "last_optimizer_state" not in ckpt
    assert models["result"]["params"][0] - models["result"]["params"][1] == REMOVED_PARAMS
    assert models["result"]["bytes"][1] < models["result"]["bytes"][0]


def test_exported_log_probs_equal_the_masked_models(models):
    """Teacher-forced log-probs of the exported model (neuroprune task: all-ones masks of the new sizes)
    match the masked model's, DSP module included (its weights are zeroed on load by the mask)."""
    masked, task = _load(models, models["masked"])
    exported, _ = _load(models, models["exported"])
    assert exported.decoder.layers[1].encoder_attn.np_head_mask.tolist() == [1.0] * 4
    task.load_dataset("test")
    dataset = task.dataset("test")
    sample = dataset.collater([dataset[i] for i in range(len(dataset))])
    with torch.no_grad():
        lp_masked = masked.get_normalized_probs(masked(**sample["net_input"]), log_probs=True)
        lp_exported = exported.get_normalized_probs(exported(**sample["net_input"]), log_probs=True)
    assert (lp_masked - lp_exported).abs().max() < 1e-5


def test_greedy_hypotheses_are_identical(models):
    assert _generate(models, models["masked"], 1) == _generate(models, models["exported"], 1)


def test_beam_hypotheses_are_identical_under_the_stock_translation_task(models):
    """The exported checkpoint needs no plugin task (only --user-dir for the model class)."""
    assert _generate(models, models["masked"], 4) == _generate(models, models["exported"], 4, task="translation")


def test_eps_decides_which_ffn_units_are_dead(models, tmp_path):
    """At --eps 1e-9 the units whose fc2 columns hold values up to 9e-5 stay; exactly-zero ones still go.
    --overwrite replaces an existing output."""
    out = tmp_path / "out.pt"
    out.write_text("old")
    result = export.main(["--checkpoint", str(models["masked"]), "--out", str(out), "--eps", "1e-9", "--overwrite"])
    assert result["shapes_after"]["ffn"] == {**EXPECTED_FFN, "decoder.layers.0": 64}


def test_missing_input_is_refused(models, tmp_path):
    with pytest.raises(SystemExit, match="--checkpoint: .*missing.pt does not exist"):
        export.main(["--checkpoint", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "out.pt")])


def test_existing_output_needs_overwrite(models):
    with pytest.raises(SystemExit, match="--out: .* exists; pass --overwrite"):
        export.main(["--checkpoint", str(models["masked"]), "--out", str(models["exported"])])


def test_output_under_a_regular_file_is_refused(models, tmp_path):
    """A path whose parent is a file cannot be created, even by root."""
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    with pytest.raises(SystemExit, match="--out: cannot write to"):
        export.main(["--checkpoint", str(models["masked"]), "--out", str(blocker / "sub" / "out.pt")])


@pytest.mark.parametrize("content", ["text", "dict"])
def test_non_transformer_checkpoints_are_refused(models, tmp_path, content):
    path = tmp_path / "foreign.pt"
    if content == "text":
        path.write_text("not a checkpoint\n")
    else:
        torch.save({"model": {"w": torch.zeros(2)}, "optimizer_history": [], "extra_state": {}, "cfg": {"model": None}}, path)
    with pytest.raises(SystemExit, match="--checkpoint: .*foreign.pt is not a fairseq transformer checkpoint"):
        export.main(["--checkpoint", str(path), "--out", str(tmp_path / "out.pt")])


def test_benchmark_reports_all_models_and_identical_hypotheses(models, tmp_path):
    out = tmp_path / "bench.json"
    bench_generate.main(["--data-bin", str(models["bin"]), "--dense", str(models["dense"]), "--masked", str(models["masked"]),
                         "--exported", str(models["exported"]), "--out", str(out), "--reps", "1", "--beam", "2", "--cpu",
                         "--fixed-len", "5"])
    report = json.loads(out.read_text())
    assert report["masked_exported_hypotheses_identical"] is True and report["masked_exported_sentences_differing"] == 0
    assert set(report["models"]) == {"dense", "masked", "exported"}
    for record in report["models"].values():
        assert record["sentences"] == NUM_TEST and record["median_generate_s"] > 0 and len(record["runs"]) == 1
        assert record["tokens"] == NUM_TEST * (5 + 1)  # --fixed-len 5: five tokens and </s> per sentence
        assert {"params", "file_bytes", "median_wall_s", "median_tokens_per_s", "speedup_generate", "speedup_wall"} <= set(record)
    dense = report["models"]["dense"]
    for name in ("masked", "exported"):  # speed-ups are against the dense model's time
        record = report["models"][name]
        assert record["speedup_generate"] == pytest.approx(dense["median_generate_s"] / record["median_generate_s"], abs=1e-3)
        assert record["speedup_wall"] == pytest.approx(dense["median_wall_s"] / record["median_wall_s"], abs=1e-3)
    assert report["models"]["masked"]["params"] == dense["params"]
    assert dense["params"] - report["models"]["exported"]["params"] == REMOVED_PARAMS
