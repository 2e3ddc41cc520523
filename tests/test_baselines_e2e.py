"""The baselines end to end with the real fairseq CLI on a tiny corpus, from one pretrained checkpoint:
DSP fine-tuning and Michel importance pruning keep exactly K heads, and both generate. Slow: every test
trains or generates (how finetune.sh maps METHOD to flags is tested with a stub in test_finetune_script)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from neuroprune.checkpoint_stats import masks_from_state_dict
from neuroprune_fairseq.tools import bench_train, evaluate, michel

from .fairseq_run import PLUGIN_DIR, TINY_MODEL, preprocess, run, train_args, write_toy_corpus

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
PRENORM = ("--encoder-normalize-before", "--decoder-normalize-before")  # as the example scripts train


def _heads(path):
    masks = masks_from_state_dict(torch.load(path, map_location="cpu", weights_only=False)["model"])
    return sum(map(sum, masks.values())), masks


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    root = tmp_path_factory.mktemp("baselines")
    write_toy_corpus(root / "text")
    preprocess(root / "text", root / "bin")
    run("fairseq-train", *train_args(root / "bin", root / "dense", *PRENORM, "--max-epoch", "2"))
    return root


def test_dsp_fine_tuning_keeps_exactly_k_heads_and_generates(pretrained, tmp_path):
    save = tmp_path / "dsp"
    log = run("fairseq-train", *train_args(
        pretrained / "bin", save, *PRENORM, "--max-epoch", "2", "--np-dsp-heads", "27", "--np-dsp-anneal-updates", "6",
        "--finetune-from-model", str(pretrained / "dense" / "checkpoint_last.pt"), task="dsp_translation"))
    out = log.stdout + log.stderr
    assert "np_dsp_tau" in out and "DSP hard top-27" in out
    kept, masks = _heads(save / "checkpoint_last.pt")
    assert kept == 27 and all(sum(m) >= 1 for m in masks.values())
    record = evaluate.main(["--checkpoint", str(save / "checkpoint_last.pt"), "--data-bin", str(pretrained / "bin"),
                            "--out", str(tmp_path / "dsp.json"), "--method", "dsp", "--beam", "2", "--cpu"])
    assert record["heads_kept"] == 27 and record["sentences"] == 16 and record["method"] == "dsp"


def test_michel_pruning_keeps_k_heads_and_survives_fine_tuning(pretrained, tmp_path):
    pruned = tmp_path / "michel.pt"
    michel.main(["--checkpoint", str(pretrained / "dense" / "checkpoint_last.pt"), "--data-bin", str(pretrained / "bin"),
                 "--heads", "54", "--steps", "2", "--normalize-per-module", "--out", str(pruned), "--cpu"])
    assert _heads(pruned)[0] == 54
    save = tmp_path / "finetuned"
    run("fairseq-train", *train_args(pretrained / "bin", save, *PRENORM, "--max-epoch", "1", "--finetune-from-model", str(pruned)))
    kept, masks = _heads(save / "checkpoint_last.pt")
    assert kept == 54 and masks == _heads(pruned)[1]
    gen = run("fairseq-generate", str(pretrained / "bin"), "--user-dir", PLUGIN_DIR, "--task", "neuroprune_translation",
              "--path", str(save / "checkpoint_last.pt"), "--gen-subset", "test", "--beam", "2", "--cpu")
    assert gen.stdout.count("\nH-") == 16


def test_michel_ranks_a_head_whose_output_is_zeroed_lowest(pretrained, tmp_path):
    checkpoint = torch.load(pretrained / "dense" / "checkpoint_last.pt", map_location="cpu", weights_only=False)
    out_weight = checkpoint["model"]["decoder.layers.2.encoder_attn.out_proj.weight"]  # (48, 6 * 8)
    out_weight[:, 3 * 8:4 * 8] = 0  # head 3 of dec2.cross no longer reaches the output
    silenced = tmp_path / "silenced.pt"
    torch.save(checkpoint, silenced)
    michel.main(["--checkpoint", str(silenced), "--data-bin", str(pretrained / "bin"), "--heads", "107",
                 "--out", str(tmp_path / "pruned.pt"), "--scores-json", str(tmp_path / "scores.json"), "--cpu"])
    scores = json.loads((tmp_path / "scores.json").read_text())["rounds"][0]
    flat = [s for module in scores.values() for s in module]
    assert scores["dec2.cross"][3] == 0.0 and min(flat) == 0.0 and sorted(flat)[1] > 0
    assert _heads(tmp_path / "pruned.pt")[1]["decoder.layers.2.encoder_attn"] == [1, 1, 1, 0, 1, 1]


def test_michel_refuses_bad_input_by_flag(pretrained, tmp_path):
    dense = str(pretrained / "dense" / "checkpoint_last.pt")
    with pytest.raises(SystemExit, match="--heads 10: must be between 18"):
        michel.main(["--checkpoint", dense, "--data-bin", str(pretrained / "bin"), "--heads", "10", "--out", str(tmp_path / "x.pt"), "--cpu"])
    with pytest.raises(SystemExit, match="--checkpoint: .* does not exist"):
        michel.main(["--checkpoint", str(tmp_path / "missing.pt"), "--data-bin", str(pretrained / "bin"), "--heads", "54", "--out", str(tmp_path / "x.pt")])


def test_study_redoes_a_record_older_than_its_checkpoint_and_skips_a_fresh_one(pretrained, tmp_path):
    """study.sh's resumption: a committed (older) record is evaluated again, an up-to-date one is kept."""
    import shutil

    run_dir, results = tmp_path / "study" / "michel_k27", tmp_path / "results"
    (results / "records").mkdir(parents=True), run_dir.mkdir(parents=True)
    old = results / "records" / "michel_k27.json"
    old.write_text('{"stale": true}')
    os.utime(old, (1, 1))  # older than any checkpoint
    shutil.copy(pretrained / "dense" / "checkpoint_last.pt", run_dir / "checkpoint_last.pt")
    (run_dir / "done").touch()
    env = dict(os.environ, STUDY_DIR=str(tmp_path / "study"), RESULTS_DIR=str(results), DATA_BIN=str(pretrained / "bin"),
               PRETRAINED=str(pretrained / "dense" / "checkpoint_last.pt"), STRENGTHS="", DSP_BUDGETS="",
               MICHEL_BUDGETS="27", PHASES="evaluate", BEAM="2", PYTHON=sys.executable, OMP_NUM_THREADS="1")
    first = subprocess.run(["bash", "examples/iwslt14_de_en/study.sh"], cwd=REPO, env=env, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "evaluate michel_k27" in first.stdout and "evaluate the pretrained dense model" in first.stdout
    assert json.loads(old.read_text())["sentences"] == 16
    second = subprocess.run(["bash", "examples/iwslt14_de_en/study.sh"], cwd=REPO, env=env, capture_output=True, text=True)
    assert second.returncode == 0 and "=== [" not in second.stdout  # no step ran


def test_training_overhead_benchmark_reports_ratios_and_pass_share(pretrained, tmp_path):
    report = bench_train.main([
        "--data-bin", str(pretrained / "bin"), "--pretrained", str(pretrained / "dense" / "checkpoint_last.pt"),
        "--out", str(tmp_path / "bench_train.json"), "--updates", "6", "--log-interval", "2", "--reps", "1", "--cpu",
        "--dsp-heads", "27", "--model-args", " ".join([*TINY_MODEL, *PRENORM, "--max-tokens", "600"]),
    ])
    results = report["results"]
    assert set(results) == {"plain", "neuroprune", "dsp"}
    for name in ("neuroprune", "dsp"):  # each against plain's speed, not its own
        assert results[name]["ratio_to_plain"] == pytest.approx(results[name]["median_wps"] / results["plain"]["median_wps"], abs=1e-3)
    assert all(r["median_wps"] > 0 and r["intervals"] == 2 for r in results.values())  # 6 updates / 2 a line, first dropped
    assert report["updates_per_epoch"] == 4  # 240 toy pairs at --max-tokens 600
    assert report["epoch_s"] == pytest.approx(4 / results["neuroprune"]["median_ups"], abs=0.1)
    assert 0 < report["elimination_pass_fraction_of_epoch"] < 1
    written = json.loads((tmp_path / "bench_train.json").read_text())
    assert "--np-dsp-heads 27" in written["configurations"]["dsp"] and "--np-" not in written["configurations"]["plain"]
