"""examples/iwslt14_de_en/finetune.sh with stub FAIRSEQ_TRAIN and PYTHON that record their arguments: which
plugin flags each METHOD's variables become (no training; the recipe test runs every method for real)."""
import os
import subprocess
from pathlib import Path

import pytest

from .stubs import make_stub, stub_calls

REPO = Path(__file__).resolve().parents[1]
COMMON = {  # flags every method gets, from the script's fixed recipe and its variables' defaults
    "--user-dir": "neuroprune_fairseq", "--arch": "neuroprune_iwslt_de_en_narrow",
    "--criterion": "neuroprune_label_smoothed_cross_entropy", "--max-epoch": "2", "--lr": "5e-4",
}


def _finetune(tmp_path, *extra_args, **variables):
    """Run finetune.sh on dummy inputs; returns (process, fairseq-train calls, python calls)."""
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "dict.de.txt").write_text("w 1\n")
    (tmp_path / "dense.pt").write_text("not read by the stubs")
    train = make_stub(tmp_path / "stub" / "fairseq-train")
    writes_out = 'out = args[args.index("--out") + 1]; os.makedirs(os.path.dirname(out), exist_ok=True); open(out, "w").close()'
    python = make_stub(tmp_path / "stub" / "python", then=writes_out)  # as michel.py, which creates --out's folder
    env = dict(os.environ, DATA_BIN=str(tmp_path / "bin"), PRETRAINED=str(tmp_path / "dense.pt"),
               SAVE_DIR=str(tmp_path / "run"), FAIRSEQ_TRAIN=str(train), PYTHON=str(python))
    env.update(variables)
    proc = subprocess.run(["bash", "examples/iwslt14_de_en/finetune.sh", *extra_args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)
    return proc, [c["args"] for c in stub_calls(train)], [c["args"] for c in stub_calls(python)]


def _options(args, prefix="--"):
    """``{flag: value}`` of the options starting with ``prefix`` (True for a flag without a value)."""
    options = {}
    for i, arg in enumerate(args):
        if arg.startswith(prefix):
            value = args[i + 1] if i + 1 < len(args) and not args[i + 1].startswith("--") else True
            assert arg not in options, f"{arg} given twice"
            options[arg] = value
    return options


PAPER_PASS = {"--np-similarity": "linf", "--np-keep": "paper", "--np-fold": "paper"}


@pytest.mark.parametrize("variables,expected", [
    ({"METHOD": "neuroprune"},
     {"--np-alpha": "1e-4", "--np-beta": "1e-2", "--np-prune-start-epoch": "1", "--np-theta": "0.3", "--np-eps": "1e-4", **PAPER_PASS}),
    ({"METHOD": "neuroprune", "THETA": "", "ALPHA": "3e-4", "FOLD": "none"},  # penalties only
     {"--np-alpha": "3e-4", "--np-beta": "1e-2", "--np-prune-start-epoch": "1", "--np-eps": "1e-4", **PAPER_PASS,
      "--np-fold": "none"}),
    ({"METHOD": "neuroprune", "BUDGET": "54", "BUDGET_PASSES": "3", "PRUNE_START_EPOCH": "2", "EPS": "1e-3"},
     {"--np-alpha": "1e-4", "--np-beta": "1e-2", "--np-prune-start-epoch": "2", "--np-head-budget": "54",
      "--np-budget-passes": "3", "--np-exact-budget": True, "--np-eps": "1e-3", **PAPER_PASS}),
    ({"METHOD": "neuroprune", "BUDGET": "27", "EXACT_BUDGET": "0"},  # a pass may keep more than its target
     {"--np-alpha": "1e-4", "--np-beta": "1e-2", "--np-prune-start-epoch": "1", "--np-head-budget": "27",
      "--np-budget-passes": "1", "--np-eps": "1e-4", **PAPER_PASS}),
    ({"METHOD": "neuroprune_plus", "BUDGET": "54", "KEEP": "paper"},  # its pass overrides SIMILARITY/KEEP/FOLD
     {"--np-alpha": "1e-4", "--np-beta": "1e-2", "--np-prune-start-epoch": "1", "--np-head-budget": "54",
      "--np-budget-passes": "1", "--np-exact-budget": True, "--np-eps": "1e-4", "--np-similarity": "linf",
      "--np-keep": "importance", "--np-fold": "data"}),
    ({"METHOD": "l1", "ALPHA": "2e-4", "BETA": "5e-3"},
     {"--np-penalty": "l1", "--np-alpha": "2e-4", "--np-beta": "5e-3", "--np-eps": "1e-4"}),
    ({"METHOD": "dsp", "BUDGET": "27", "DSP_LR": "0.05", "DSP_ANNEAL_UPDATES": "400", "SEED": "7", "DSP_MODE": "pipelined"},
     {"--np-dsp-heads": "27", "--np-dsp-mode": "pipelined", "--np-dsp-anneal-updates": "400", "--np-dsp-lr": "0.05",
      "--np-dsp-weight-decay": "1e-4", "--np-dsp-temp-init": "0.1", "--np-dsp-temp-final": "1e-8", "--np-dsp-init": "xavier",
      "--np-dsp-seed": "7", "--np-eps": "1e-4"}),
    ({"METHOD": "dsp", "BUDGET": "27", "DSP_PER_MODULE": "1", "DSP_STRAIGHT_THROUGH": "1", "DSP_INIT": "zeros"},
     {"--np-dsp-heads": "27", "--np-dsp-mode": "joint", "--np-dsp-anneal-updates": "250", "--np-dsp-lr": "0.2",
      "--np-dsp-weight-decay": "1e-4", "--np-dsp-temp-init": "0.1", "--np-dsp-temp-final": "1e-8", "--np-dsp-init": "zeros",
      "--np-dsp-seed": "1", "--np-dsp-per-module": True, "--np-dsp-straight-through": True, "--np-eps": "1e-4"}),
    ({"METHOD": "l1", "ALPHA": "2e-4", "BETA": "5e-3", "BUDGET": "54", "FOLD": "paper"},  # heads by NeuroPrune+'s pass
     {"--np-penalty": "l1", "--np-alpha": "2e-4", "--np-beta": "5e-3", "--np-eps": "1e-4", "--np-prune-start-epoch": "1",
      "--np-head-budget": "54", "--np-budget-passes": "1", "--np-exact-budget": True, "--np-similarity": "linf",
      "--np-keep": "importance", "--np-fold": "data"}),
    ({"METHOD": "michel", "BUDGET": "54"}, {"--np-eps": "1e-4"}),  # the masks come from the pruned checkpoint
    ({"METHOD": "michel", "BUDGET": "54", "GMP_SPARSITY": "0.5", "GMP_END": "324", "GMP_INTERVAL": "27"},  # + gradual pruning
     {"--np-eps": "1e-4", "--np-gmp-sparsity": "0.5", "--np-gmp-start-update": "0", "--np-gmp-end-update": "324",
      "--np-gmp-interval": "27"}),
    ({"METHOD": "dense", "KEEP_ZEROS": "1", "PROX": "0.1"}, {"--np-eps": "1e-4", "--np-keep-zeros": True, "--np-prox-strength": "0.1"}),
    ({"METHOD": "dense", "BUDGET": "54", "ALPHA": "1e-3"}, {"--np-eps": "1e-4"}),  # the control: no penalty, no pass
])
def test_each_method_becomes_its_plugin_flags(tmp_path, variables, expected):
    proc, train, _ = _finetune(tmp_path, **variables)
    assert proc.returncode == 0, proc.stderr
    assert len(train) == 1
    assert _options(train[0], "--np-") == expected
    options = _options(train[0])
    assert {k: options[k] for k in COMMON} == COMMON
    assert options["--task"] == ("dsp_translation" if variables["METHOD"] == "dsp" else "neuroprune_translation")
    start = tmp_path / "run" / "michel_pruned.pt" if variables["METHOD"] == "michel" else tmp_path / "dense.pt"
    assert options["--finetune-from-model"] == str(start) and options["--save-dir"] == str(tmp_path / "run")


def test_epoch_checkpoints_are_kept_only_when_asked(tmp_path):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    _, default, _ = _finetune(tmp_path / "a")
    _, kept, _ = _finetune(tmp_path / "b", EPOCH_CHECKPOINTS="1")
    assert "--no-epoch-checkpoints" in default[0] and "--no-epoch-checkpoints" not in kept[0]


def test_michel_prunes_the_pretrained_checkpoint_first_and_only_once(tmp_path):
    proc, train, python = _finetune(tmp_path, METHOD="michel", BUDGET="54", MICHEL_STEPS="3")
    assert proc.returncode == 0, proc.stderr
    pruned = str(tmp_path / "run" / "michel_pruned.pt")
    assert python == [["-m", "neuroprune_fairseq.tools.michel", "--checkpoint", str(tmp_path / "dense.pt"),
                       "--data-bin", str(tmp_path / "bin"), "--heads", "54", "--steps", "3", "--out", pruned, "--cpu"]]
    again = subprocess.run(["bash", "examples/iwslt14_de_en/finetune.sh"], cwd=REPO, capture_output=True, text=True,
                           env=dict(os.environ, METHOD="michel", BUDGET="54", DATA_BIN=str(tmp_path / "bin"),
                                    PRETRAINED=str(tmp_path / "dense.pt"), SAVE_DIR=str(tmp_path / "run"),
                                    FAIRSEQ_TRAIN=str(tmp_path / "stub" / "fairseq-train"),
                                    PYTHON=str(tmp_path / "stub" / "python")), timeout=60)
    assert again.returncode == 0 and len(stub_calls(tmp_path / "stub" / "python")) == 1  # the relaunch reuses it
    assert len(stub_calls(tmp_path / "stub" / "fairseq-train")) == 2


def test_extra_arguments_come_last_so_they_override_the_recipe(tmp_path):
    """fairseq keeps the last value of a repeated flag, so a user's --lr after the recipe's wins."""
    proc, train, _ = _finetune(tmp_path, "--lr", "1e-3", "--max-tokens", "600", METHOD="l1", DEVICE_FLAGS="--fp16 --amp")
    assert proc.returncode == 0, proc.stderr
    assert train[0][-6:] == ["--fp16", "--amp", "--lr", "1e-3", "--max-tokens", "600"] and "--cpu" not in train[0]
    assert train[0].index("--lr") < len(train[0]) - 4  # the recipe's own --lr comes earlier


@pytest.mark.parametrize("variables,message", [
    ({"METHOD": "prune"}, "METHOD=prune is not one of dense, neuroprune, neuroprune_plus, l1, dsp, michel"),
    ({"METHOD": "dsp"}, "METHOD=dsp needs BUDGET"),
    ({"METHOD": "michel"}, "METHOD=michel needs BUDGET"),
    ({"METHOD": "michel", "BUDGET": "54", "GMP_SPARSITY": "0.5"}, "GMP_SPARSITY needs GMP_END"),
])
def test_bad_variables_are_refused_by_name_before_any_run(tmp_path, variables, message):
    proc, train, python = _finetune(tmp_path, **variables)
    assert proc.returncode == 1 and message in proc.stderr
    assert train == [] and python == []


def test_missing_inputs_are_named(tmp_path):
    proc, train, _ = _finetune(tmp_path, METHOD="l1", PRETRAINED=str(tmp_path / "none.pt"))
    assert proc.returncode == 1 and f"PRETRAINED={tmp_path / 'none.pt'} does not exist" in proc.stderr and train == []
