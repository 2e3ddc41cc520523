"""scripts/run_offline_demo.sh from its fine-tuning step (FROM_STEP=5) with a stub FAIRSEQ_TRAIN and a stub PYTHON
whose evaluation writes a made-up record and hypotheses (no training, no translation); the summary and the paired
bootstrap run for real on them. Checks the comparison at equal updates: which fine-tunings run, side by side and
one thread each, which checkpoints are evaluated, and what lands in RUN_DIR."""
import json
import os
import subprocess
from pathlib import Path

import pytest

from .stubs import make_stub, stub_calls

REPO = Path(__file__).resolve().parents[1]
BLEU = {"dense": 18.0, "control": 22.0, "neuroprune": 21.5, "sparse": 20.75}  # the made-up records' sacreBLEU
TRAIN = """
save = args[args.index("--save-dir") + 1]
time.sleep(1.0)  # long enough for a job started alongside to begin before this one ends
if os.environ.get("STUB_FAIL_CONTROL") and "--np-alpha" not in args:
    sys.exit(3)
os.makedirs(save, exist_ok=True)
open(os.path.join(save, "checkpoint_last.pt"), "w").close()
open(os.path.join(save, "ended"), "w").write(str(time.time()))
"""
PYTHON = """
if args[1] != "neuroprune_fairseq.tools.evaluate":  # the tools that read records run for real
    os.execv(sys.executable, [sys.executable] + args)
value = lambda flag: args[args.index(flag) + 1]
name, text_out = value("--name"), value("--text-out")
bleu = {bleu!r}[name]
os.makedirs(os.path.dirname(value("--out")), exist_ok=True)
open(value("--out"), "w").write(json.dumps({{"name": name, "method": value("--method"), "bleu": bleu, "heads_kept": 108,
    "heads_total": 108, "weight_sparsity": 0.0, "sentences": 20, "params": {{"exported": 1000}}}}))
refs = [f"sentence {{i}} of the test split with some words" for i in range(20)]
open(text_out + ".ref", "w").write("".join(r + "\\n" for r in refs))
open(text_out + ".hyp", "w").write("".join((r if i < bleu else "something else") + "\\n" for i, r in enumerate(refs)))
""".format(bleu=BLEU)


def _demo(tmp_path, **variables):
    """Run the script from step 5 on a dummy dense checkpoint; returns (process, fairseq-train calls, python calls)."""
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "dict.de.txt").write_text("w 1\n")
    (tmp_path / "run" / "dense").mkdir(parents=True)
    (tmp_path / "run" / "dense" / "checkpoint_last.pt").write_text("not read by the stubs")
    train = make_stub(tmp_path / "stub" / "fairseq-train", then=TRAIN, env=("OMP_NUM_THREADS", "MKL_NUM_THREADS"))
    python = make_stub(tmp_path / "stub" / "python", then=PYTHON)
    env = dict(os.environ, FROM_STEP="5", DATA_BIN=str(tmp_path / "bin"), RUN_DIR=str(tmp_path / "run"),
               FAIRSEQ_TRAIN=str(train), PYTHON=str(python))
    env.update(variables)
    proc = subprocess.run(["bash", "scripts/run_offline_demo.sh"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    return proc, stub_calls(train), [c["args"] for c in stub_calls(python)]


def _options(args):
    """``{flag: value}`` of the options (True for a flag without a value)."""
    return {a: (args[i + 1] if i + 1 < len(args) and not args[i + 1].startswith("--") else True)
            for i, a in enumerate(args) if a.startswith("--")}


def _by_save_dir(calls):
    return {Path(_options(c["args"])["--save-dir"]).name: c for c in calls}


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    """The script with its defaults, once for the tests that read what it did: (root, process, train calls, python calls)."""
    root = tmp_path_factory.mktemp("demo")
    proc, train, python = _demo(root)
    assert proc.returncode == 0, proc.stderr
    return root, proc, train, python


def test_pruned_model_and_dense_control_train_side_by_side_for_the_same_updates(default_run):
    tmp_path, _, train, _ = default_run
    runs = _by_save_dir(train)
    assert sorted(runs) == ["control", "neuroprune"]
    pruned, control = _options(runs["neuroprune"]["args"]), _options(runs["control"]["args"])
    # NeuroPrune+ at the strength chosen on valid, to 54 heads in one pass after epoch 1 (finetune.sh's flags for it)
    assert {k: v for k, v in pruned.items() if k.startswith("--np-")} == {
        "--np-alpha": "1e-5", "--np-beta": "1e-4", "--np-eps": "1e-4", "--np-prune-start-epoch": "1",
        "--np-head-budget": "54", "--np-budget-passes": "1", "--np-exact-budget": True,
        "--np-similarity": "linf", "--np-keep": "importance", "--np-fold": "data"}
    assert {k for k in control if k.startswith("--np-")} == {"--np-eps"}  # plain label-smoothed CE: no penalty, no pass
    for flag in ("--max-epoch", "--seed", "--finetune-from-model", "--lr", "--max-tokens"):
        assert pruned[flag] == control[flag], flag
    assert (pruned["--max-epoch"], pruned["--seed"]) == ("2", "1")
    assert pruned["--finetune-from-model"] == str(tmp_path / "run" / "dense" / "checkpoint_last.pt")
    for run in runs.values():
        assert run["env"] == {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    ended = {name: float((tmp_path / "run" / name / "ended").read_text()) for name in runs}
    assert max(r["time"] for r in runs.values()) < min(ended.values())  # both had started before either ended


def test_three_models_are_evaluated_and_compared_with_the_control(default_run):
    tmp_path, proc, _, python = default_run
    evaluations = [_options(a) for a in python if a[1] == "neuroprune_fairseq.tools.evaluate"]
    run, records = tmp_path / "run", tmp_path / "run" / "records"
    assert [e["--checkpoint"] for e in evaluations] == [str(run / n / "checkpoint_last.pt") for n in ("dense", "control", "neuroprune")]
    for e in evaluations:
        assert (e["--zero-below"], e["--score-unthresholded"], e["--max-pieces"]) == ("1e-4", True, "40")
        assert e["--text-out"] == str(records / e["--name"])
    assert [r["name"] for r in json.loads((run / "results.json").read_text())] == ["dense", "control", "neuroprune"]
    assert [s["name"] for s in json.loads((run / "significance.json").read_text())["systems"]] == ["control", "dense", "neuroprune"]
    assert (run / "results.png").read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in records.glob("*.ref")) == ["dense.ref"]  # the references once
    assert sorted(p.name for p in records.glob("*.hyp")) == ["control.hyp", "dense.hyp", "neuroprune.hyp"]
    row = next(line for line in proc.stdout.splitlines() if line.startswith("neuroprune "))
    assert "-0.50 (p " in row  # 21.50 - 22.00, by hand


def test_a_failed_fine_tuning_is_named_and_nothing_is_evaluated(tmp_path):
    proc, train, python = _demo(tmp_path, STUB_FAIL_CONTROL="1")
    assert proc.returncode == 1
    assert "fine-tuning failed: control" in proc.stderr and "logs in" in proc.stderr
    assert (tmp_path / "run" / "neuroprune" / "checkpoint_last.pt").exists()  # the other job was waited for
    assert len(train) == 2 and python == []


def test_a_sparse_strength_adds_a_third_fine_tuning_and_a_fourth_row(tmp_path):
    proc, train, python = _demo(tmp_path, SPARSE_ALPHA="1e-4", SPARSE_BETA="1e-2")
    assert proc.returncode == 0, proc.stderr
    runs = _by_save_dir(train)
    assert sorted(runs) == ["control", "neuroprune", "sparse"]
    sparse = _options(runs["sparse"]["args"])
    assert (sparse["--np-alpha"], sparse["--np-beta"], sparse["--np-head-budget"]) == ("1e-4", "1e-2", "54")
    assert runs["sparse"]["env"] == {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    assert [r["name"] for r in json.loads((tmp_path / "run" / "results.json").read_text())] == ["dense", "control", "neuroprune", "sparse"]
    row = next(line for line in proc.stdout.splitlines() if line.startswith("sparse "))
    assert "-1.25 (p " in row  # 20.75 - 22.00


@pytest.mark.parametrize("variables,message", [
    ({"SPARSE_ALPHA": "1e-4"}, "set both (a fourth row) or neither"),
    ({"FROM_STEP": "7"}, "FROM_STEP=7: expected 1 to 5"),
])
def test_bad_settings_are_refused_by_name_before_any_run(tmp_path, variables, message):
    proc, train, python = _demo(tmp_path, **variables)
    assert proc.returncode == 1 and message in proc.stderr
    assert train == [] and python == []


def test_a_missing_dense_model_is_named(tmp_path):
    (tmp_path / "other").mkdir()
    proc, train, _ = _demo(tmp_path / "other", RUN_DIR=str(tmp_path / "elsewhere"))
    assert proc.returncode == 1 and f"the dense model {tmp_path / 'elsewhere' / 'dense' / 'checkpoint_last.pt'} does not exist" in proc.stderr
    assert train == []
