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


STUDY_ARGS = ["--encoder-embed-dim", "48", "--decoder-embed-dim", "48", "--encoder-ffn-embed-dim", "64",
              "--decoder-ffn-embed-dim", "64", "--max-tokens", "600", "--num-workers", "0"]


def _study(pretrained, root, phases):
    env = dict(os.environ, STUDY_DIR=str(root / "study"), RESULTS_DIR=str(root / "results"), DATA_BIN=str(pretrained / "bin"),
               PRETRAINED=str(pretrained / "dense" / "checkpoint_last.pt"), SEEDS="1 2", BUDGETS="27", SELECT_BUDGET="27",
               EPOCHS="2", PHASES=phases, BEAM="2", COMMIT="1", PYTHON=sys.executable,
               FAIRSEQ_TRAIN=str(Path(sys.executable).parent / "fairseq-train"))
    return subprocess.run(["bash", "examples/iwslt14_de_en/study.sh", *STUDY_ARGS], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=1200)


@pytest.fixture(scope="module")
def study(pretrained, tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    (root / "results").mkdir()
    subprocess.run(["git", "init", "-q", str(root / "results")], check=True)
    subprocess.run(["git", "-C", str(root / "results"), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q",
                    "--allow-empty", "-m", "start"], check=True)
    first = _study(pretrained, root, "train evaluate summary")
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-4000:]
    return root, first


def _json(path):
    return json.loads(Path(path).read_text())


def test_study_runs_every_method_with_one_protocol_and_seeds(study):
    root, first = study
    results = root / "results"
    valid = {p.stem: _json(p) for p in (results / "valid").glob("*.json")}
    choice = {kind: _json(results / "choices" / f"{kind}.json")["chosen"] for kind in ("np", "np_plus", "dsp")}
    for kind, candidates in (("np", ["np_weak_k27_s1", "np_strong_k27_s1"]), ("np_plus", ["np_plus_weak_k27_s1", "np_plus_strong_k27_s1"]),
                             ("dsp", ["dsp_joint_k27_s1", "dsp_pipelined_k27_s1"])):
        bleus = [valid[c]["bleu"] for c in candidates]
        assert choice[kind] == candidates[bleus.index(max(bleus))]  # the best on valid, the first of equals
    np_s, plus_s, mode = choice["np"].split("_")[1], choice["np_plus"].split("_")[2], choice["dsp"].split("_")[1]
    other = "pipelined" if mode == "joint" else "joint"
    expected = {f"{g}_s{seed}" for seed in (1, 2) for g in
                ("dense", f"np_{np_s}_k27", f"np_plus_{plus_s}_k27", f"dsp_{mode}_k27", "michel_k27", f"np_nofold_{np_s}_k27", f"dsp_{other}_k27")}
    expected |= {"np_weak_k27_s1", "np_strong_k27_s1", "np_plus_weak_k27_s1", "np_plus_strong_k27_s1"}
    records = {p.stem: _json(p) for p in (results / "records").glob("*.json")}
    assert set(records) == set(valid) == expected
    assert all(r["seed"] == int(name.rsplit("_s", 1)[1]) and r["subset"] == "test" for name, r in records.items())
    dense = torch.load(root / "study" / "dense_s1" / "checkpoint_last.pt", map_location="cpu", weights_only=False)
    per_epoch = dense["optimizer_history"][-1]["num_updates"] // 2
    assert {r["num_updates"] for r in records.values()} == {2 * per_epoch}  # the same updates for every run
    dsp = torch.load(root / "study" / f"dsp_{mode}_k27_s2" / "checkpoint_last.pt", map_location="cpu", weights_only=False)
    assert dsp["cfg"]["task"]["np_dsp_anneal_updates"] == per_epoch and dsp["cfg"]["common"]["seed"] == 2
    for name in ("np_weak_k27_s1", f"np_plus_{plus_s}_k27_s2", "michel_k27_s1", f"dsp_{mode}_k27_s1"):
        assert records[name]["heads_kept"] == 27, name
    log = (results / "logs" / f"np_{np_s}_k27_s2.txt").read_text()  # the only pass ends epoch 1; epoch 2 prunes nothing
    assert "epoch 001 | theta" in log and "epoch 002 | theta" not in log
    assert records["dense_s1"]["heads_kept"] == 108
    rows = [line.split("\t") for line in (results / "dsp_topk_changes.tsv").read_text().splitlines()[1:]]
    assert {r[0] for r in rows} == {n for n in expected if n.startswith("dsp_")}
    assert sorted({(r[1], r[2]) for r in rows}) == [("1", "gates learning"), ("2", "fixed")]
    assert all(r[3] == "0" for r in rows if r[1] == "2")  # the top-K never moved after the anneal
    log = subprocess.run(["git", "-C", str(results), "log", "--format=@%s", "--name-only"], capture_output=True, text=True).stdout
    commits = {}  # subject -> files, one commit per run
    for block in log.split("@")[1:]:
        subject, *files = [line for line in block.splitlines() if line]
        assert subject not in commits, subject
        commits[subject] = set(files)
    for name in expected:  # holding its records and hypotheses
        assert {f"records/{name}.json", f"valid/{name}.json", f"text/{name}.hyp"} <= commits[f"study: {name}"], name


def test_study_summary_tests_the_chosen_neuroprune_against_every_baseline(study):
    root, _ = study
    results = root / "results"
    summary = _json(results / "significance.json")
    np_config = "np_" + _json(results / "choices" / "np.json")["chosen"].split("_")[1]
    against = {t["against"] for t in summary["tests"] if t["config"] == np_config}
    assert {"dense", "michel"} <= against and any(a.startswith("dsp_") for a in against)
    seeds = {}  # configuration -> the seeds of its records, from the file names
    for path in (results / "records").glob("*.json"):
        config, seed = path.stem.rsplit("_s", 1)
        seeds.setdefault(config.rsplit("_k", 1)[0], set()).add(int(seed))
    for t in summary["tests"]:  # pooled over the seeds both configurations have
        assert t["seeds"] == sorted(seeds[t["config"]] & seeds[t["against"]])
    row = next(r for r in summary["rows"] if r["config"] == "michel" and r["budget"] == 27)
    bleus = [_json(results / "records" / f"michel_k27_s{s}.json")["bleu"] for s in (1, 2)]
    assert row["bleu_mean"] == pytest.approx(sum(bleus) / 2, abs=0.01)
    header = (results / "results.md").read_text().splitlines()[0]  # the compact table: the chosen variants, DSP's mode
    dsp = _json(results / "choices" / "dsp.json")["chosen"].rsplit("_k", 1)[0]
    assert header == f"| K | {np_config} | np_plus_{_json(results / 'choices' / 'np_plus.json')['chosen'].split('_')[2]} | {dsp} | michel | dense |"
    assert (results / "bleu-vs-heads.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_relaunched_study_neither_trains_nor_evaluates_again(study, pretrained):
    root, _ = study
    import shutil
    shutil.rmtree(root / "study")  # another machine: only the committed records are there
    second = _study(pretrained, root, "train evaluate")
    assert second.returncode == 0, second.stderr[-3000:]
    assert "=== [" not in second.stdout, second.stdout[-3000:]  # no step ran


def test_training_overhead_benchmark_reports_ratios_and_pass_share(pretrained, tmp_path):
    report = bench_train.main([
        "--data-bin", str(pretrained / "bin"), "--pretrained", str(pretrained / "dense" / "checkpoint_last.pt"),
        "--out", str(tmp_path / "bench_train.json"), "--updates", "6", "--log-interval", "2", "--reps", "1", "--cpu",
        "--dsp-heads", "27", "--model-args", " ".join([*TINY_MODEL, *PRENORM, "--max-tokens", "600"]),
    ])
    results = report["results"]
    assert set(results) == {"plain", "plain_bf16", "neuroprune", "dsp"}
    for name in ("neuroprune", "dsp", "plain_bf16"):  # each against plain's speed, not its own
        assert results[name]["ratio_to_plain"] == pytest.approx(results[name]["median_wps"] / results["plain"]["median_wps"], abs=1e-3)
    assert all(r["median_wps"] > 0 and r["intervals"] == 2 for r in results.values())  # 6 updates / 2 a line, first dropped
    assert report["updates_per_epoch"] == 4  # 240 toy pairs at --max-tokens 600
    assert report["epoch_s"] == pytest.approx(4 / results["neuroprune"]["median_ups"], abs=0.1)
    assert 0 < report["elimination_pass_fraction_of_epoch"] < 1
    written = json.loads((tmp_path / "bench_train.json").read_text())
    assert "--np-dsp-heads 27" in written["configurations"]["dsp"] and "--np-" not in written["configurations"]["plain"]
    assert written["configurations"]["plain_bf16"] == written["configurations"]["plain"] + " --np-cpu-bf16-autocast"


def test_elimination_timing_reads_the_dictionaries_from_data_bin_not_the_saved_path(pretrained, tmp_path):
    """A checkpoint trained elsewhere (its saved data path missing here) is timed from --data-bin's dictionaries."""
    ckpt = torch.load(pretrained / "dense" / "checkpoint_last.pt", map_location="cpu", weights_only=False)
    ckpt["cfg"]["task"]["data"] = str(tmp_path / "trained" / "elsewhere")
    torch.save(ckpt, tmp_path / "moved.pt")
    assert bench_train.time_elimination(str(tmp_path / "moved.pt"), str(pretrained / "bin"), 0.3, reps=1) > 0
