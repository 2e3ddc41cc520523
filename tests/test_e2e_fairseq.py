"""fairseq end to end on a tiny corpus: preprocess, train with NeuroPrune, resume, generate."""
import re

import pytest
import torch

from neuroprune_fairseq.head_masks import PRUNED_EPOCH_BUFFER, masks_from_state_dict

from .fairseq_run import PLUGIN_DIR, preprocess, run, train_args, write_toy_corpus

NUM_TEST = 16


def _model_state(path):
    return torch.load(path, map_location="cpu", weights_only=False)["model"]


def _heads(state):
    return sum(sum(m) for m in masks_from_state_dict(state).values())


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    write_toy_corpus(root / "text", sizes=(("train", 240), ("valid", 24), ("test", NUM_TEST)))
    preprocess(root / "text", root / "bin")
    save = root / "ckpt"
    np_flags = ["--np-alpha", "0.01", "--np-beta", "0.01", "--np-theta", "100", "--np-prune-start-epoch", "2"]
    first = run("fairseq-train", *train_args(root / "bin", save, *np_flags, "--max-epoch", "2"))
    epoch2 = _model_state(save / "checkpoint2.pt")
    resumed = run("fairseq-train", *train_args(root / "bin", save, *np_flags, "--max-epoch", "3", "--disable-validation"))
    gen = run(
        "fairseq-generate", str(root / "bin"), "--user-dir", PLUGIN_DIR, "--task", "neuroprune_translation",
        "--path", str(save / "checkpoint_last.pt"), "--gen-subset", "test", "--beam", "2", "--batch-size", "8",
        "--required-batch-size-multiple", "1", "--cpu",
    )
    return dict(save=save, first=first.stdout + first.stderr, resumed=resumed.stdout + resumed.stderr,
                gen=gen.stdout, epoch2=epoch2)


def test_penalty_terms_are_logged_as_metrics(pipeline):
    values = [float(v) for v in re.findall(r"np_attn (\d+\.\d+)", pipeline["first"])]
    assert values and all(v > 0 for v in values)
    assert re.search(r"np_mlp \d+\.\d+", pipeline["first"])


def test_elimination_starts_at_the_requested_epoch(pipeline):
    """Epoch 1 only trains; epoch 2's pass (theta huge) keeps one head in each of the 18 modules."""
    assert _heads(_model_state(pipeline["save"] / "checkpoint1.pt")) == 108
    assert "epoch 001 | no elimination | heads kept 108/108" in pipeline["first"]
    assert re.search(r"epoch 002 \| theta 100, pruned 90 heads \| heads kept 18/108", pipeline["first"])
    assert _heads(pipeline["epoch2"]) == 18
    assert re.search(r"\| train \| epoch 002 \|.* np_heads 18 \|", pipeline["first"])
    assert "np_heads=None" not in pipeline["first"]
    assert int(pipeline["epoch2"][PRUNED_EPOCH_BUFFER]) == 2


def test_each_pass_runs_once_per_epoch(pipeline):
    for epoch in ("001", "002"):
        assert pipeline["first"].count(f"neuroprune | epoch {epoch} |") == 1
    assert pipeline["resumed"].count("neuroprune | epoch 003 |") == 1
    assert "neuroprune | epoch 002 |" not in pipeline["resumed"]


def test_the_dominator_is_the_last_head_and_pruned_parameters_are_zero(pipeline):
    state = pipeline["epoch2"]
    masks = masks_from_state_dict(state)
    assert all(mask == [0, 0, 0, 0, 0, 1] for mask in masks.values())
    for module in masks:
        for proj in ("q_proj", "k_proj", "v_proj"):
            assert state[f"{module}.{proj}.weight"][:40].abs().sum() == 0
            assert state[f"{module}.{proj}.bias"][:40].abs().sum() == 0
        assert state[f"{module}.out_proj.weight"][:, :40].abs().sum() == 0


def test_resume_keeps_masks_and_zeros(pipeline):
    """After one more epoch (with --disable-validation) masks and zeroed parameters are unchanged."""
    last = _model_state(pipeline["save"] / "checkpoint3.pt")
    assert masks_from_state_dict(last) == masks_from_state_dict(pipeline["epoch2"])
    assert int(last[PRUNED_EPOCH_BUFFER]) == 3
    for module in masks_from_state_dict(last):
        assert last[f"{module}.q_proj.weight"][:40].abs().sum() == 0
        assert last[f"{module}.out_proj.weight"][:, :40].abs().sum() == 0
    changed = (last["encoder.layers.0.fc1.weight"] - pipeline["epoch2"]["encoder.layers.0.fc1.weight"]).abs().sum()
    assert changed > 0  # the resumed epoch really trained


def test_generate_translates_every_test_sentence(pipeline):
    hyps = re.findall(r"^H-(\d+)\t", pipeline["gen"], flags=re.M)
    assert sorted(int(h) for h in hyps) == list(range(NUM_TEST))


def test_evaluation_record_describes_the_pruned_model(pipeline, tmp_path):
    import json

    from neuroprune_fairseq.tools import evaluate

    out = tmp_path / "record.json"
    args = ["--checkpoint", str(pipeline["save"] / "checkpoint_last.pt"), "--data-bin", str(pipeline["save"].parent / "bin"),
            "--out", str(out), "--method", "neuroprune", "--beam", "2", "--cpu"]
    evaluate.main(args)
    record = json.loads(out.read_text())
    assert record["sentences"] == NUM_TEST and record["method"] == "neuroprune"
    assert record["heads_kept"] == 18 and record["heads_total"] == 108 and len(record["heads_per_module"]) == 18
    assert 0 <= record["bleu"] <= 100 and record["bleu_signature"].startswith("nrefs:1")
    assert record["params"]["nonzero"] < record["params"]["total"]
    with pytest.raises(SystemExit, match="exists; pass --overwrite"):
        evaluate.main(args)


def test_evaluation_scores_the_sentences_within_the_length_limit(pipeline, tmp_path):
    """--max-pieces 5: the subset is the test pairs whose both sides have <= 5 tokens, counted from the text."""
    from neuroprune_fairseq.tools import evaluate

    text = pipeline["save"].parent / "text"
    sides = [(text / f"test.{lang}").read_text().splitlines() for lang in ("de", "en")]
    short = sum(len(src.split()) <= 5 and len(tgt.split()) <= 5 for src, tgt in zip(*sides))
    assert 0 < short < NUM_TEST
    args = ["--checkpoint", str(pipeline["save"] / "checkpoint_last.pt"), "--data-bin", str(pipeline["save"].parent / "bin"),
            "--beam", "2", "--cpu"]
    record = evaluate.main(args + ["--out", str(tmp_path / "r.json"), "--max-pieces", "5"])
    assert record["within_max_pieces"]["sentences"] == short and record["sentences"] == NUM_TEST
    assert 0 <= record["within_max_pieces"]["bleu"] <= 100
    with pytest.raises(SystemExit, match="--max-pieces 2: no sentence of the split is that short"):
        evaluate.main(args + ["--out", str(tmp_path / "r2.json"), "--max-pieces", "2"])
    with pytest.raises(SystemExit, match="--max-pieces -1: expected 0"):
        evaluate.main(args + ["--out", str(tmp_path / "r3.json"), "--max-pieces", "-1"])


def test_head_budget_schedule_in_fairseq_train(pipeline, tmp_path):
    """--np-head-budget 54 over 2 passes: the first pass aims at 81 heads, the second at 54; never fewer."""
    bin_dir = pipeline["save"].parent / "bin"
    log = run("fairseq-train", *train_args(bin_dir, tmp_path / "ckpt", "--np-alpha", "0.01", "--np-head-budget", "54",
                                           "--np-budget-passes", "2", "--max-epoch", "2")).stdout
    assert "head budget 54: this pass aims at 81 heads, theta" in log
    assert "head budget 54: this pass aims at 54 heads" in log
    kept = [int(k) for k in re.findall(r"heads kept (\d+)/108", log)]
    assert len(kept) == 2 and kept[0] >= 81 and 54 <= kept[1] < 108
    assert kept[1] == 54 or "not reachable this pass" in log  # measured here: 81 then 54
    assert _heads(_model_state(tmp_path / "ckpt" / "checkpoint_last.pt")) == kept[1]


def test_nan_during_training_is_reported_by_fairseq(pipeline, tmp_path):
    """An absurd learning rate overflows the weights; with the penalties on, fairseq's own check still
    stops the run with its message (nothing in the plugin swallows inf/NaN)."""
    bin_dir = pipeline["save"].parent / "bin"
    proc = run("fairseq-train", *train_args(bin_dir, tmp_path / "ckpt", "--np-alpha", "0.01", "--np-beta", "0.01",
                                            "--lr", "1e30", "--max-epoch", "1"), check=False)
    assert proc.returncode != 0
    assert "gradients are Nan/Inf" in proc.stdout + proc.stderr
