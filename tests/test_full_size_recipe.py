"""examples/iwslt14_de_en/full_size.sh end to end on a tiny fake IWSLT14 archive: preparation, dense
pretraining, the study's runs at one budget and one seed, evaluation, export, table and plots (the inference
benchmark phase is left out for time: study.sh runs it the same way for every setup); then a relaunch without
the summary phase, which must skip everything. The model is shrunk by extra fairseq-train arguments, as a GPU user would."""
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from neuroprune_fairseq.exported_model import SHAPES_FIELD

from .fairseq_run import BIN
from .test_iwslt14_prepare import make_archive

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
TINY_DIMS = ["--encoder-embed-dim", "48", "--decoder-embed-dim", "48",
             "--encoder-ffn-embed-dim", "64", "--decoder-ffn-embed-dim", "64", "--num-workers", "0",
             "--required-batch-size-multiple", "1"]  # else fairseq makes no batch of the 2 valid sentences
RUNS = {"np_a1e-4b1e-2_k27_s1": "neuroprune", "np_plus_a1e-4b1e-2_k27_s1": "neuroprune_plus",
        "np_nofold_a1e-4b1e-2_k27_s1": "neuroprune", "dsp_joint_k27_s1": "dsp", "dsp_pipelined_k27_s1": "dsp",
        "michel_k27_s1": "michel", "dense_s1": "dense"}


def _launch(root: Path, phases: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, IWSLT14_ARCHIVE=str(root / "de-en.tgz"), WORK_DIR=str(root / "work"),
               DATA_BIN=str(root / "bin"), RUN_DIR=str(root / "runs"), VOCAB_SIZE="80", EPOCHS="1",
               FINETUNE_EPOCHS="2", SELECT_EPOCHS="1", SEEDS="1", ALPHAS="1e-4", BETAS="1e-2", BUDGETS="27",
               SELECT_BUDGET="27", BEAM="2", THREADS="1",
               DEVICE_FLAGS="--cpu", PHASES=phases, PYTHON=sys.executable, FAIRSEQ_TRAIN=str(BIN / "fairseq-train"),
               PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", OMP_NUM_THREADS="1")
    env.pop("IWSLT14_URL", None)
    return subprocess.run(["bash", "examples/iwslt14_de_en/full_size.sh", *TINY_DIMS], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    root = tmp_path_factory.mktemp("full_size")
    make_archive(root / "de-en.tgz")
    first = _launch(root, "train evaluate export summary")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    return root, first, _launch(root, "train evaluate export")


def _cfg(path: Path):
    return torch.load(path, map_location="cpu", weights_only=False)["cfg"]


def test_every_method_is_trained_evaluated_exported_and_tabled(recipe):
    root, first, _ = recipe
    results = root / "runs" / "results"
    with open(results / "results.tsv") as f:
        table = {(row["config"], row["budget"]): row for row in csv.DictReader(f, delimiter="\t")}
    configs = {name.rsplit("_s", 1)[0].rsplit("_k", 1)[0]: ("" if "_k" not in name else "27") for name in RUNS}
    assert set(table) == set(configs.items())
    records = {p.stem: json.loads(p.read_text()) for p in (results / "records").glob("*.json")}
    assert {name: r["method"] for name, r in records.items()} == RUNS
    kept = {name: r["heads_kept"] for name, r in records.items()}
    assert kept["dense_s1"] == 108
    assert kept["dsp_joint_k27_s1"] == kept["michel_k27_s1"] == 27 and 27 <= kept["np_a1e-4b1e-2_k27_s1"] < 108
    for name in RUNS:  # each export holds the heads its record reports (the masked heads cut out)
        shapes = getattr(_cfg(root / "runs" / name / "exported.pt")["model"], SHAPES_FIELD)
        assert sum(shapes["heads"].values()) == kept[name], name
    for kind in ("bleu-vs-heads", "frontier"):  # the seven runs
        assert f"{kind} plot of 7 records written to {results / kind}.png" in first.stdout
    for png in ("bleu-vs-heads", "frontier"):
        assert (results / f"{png}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "no time estimate" in first.stdout


def test_pretraining_and_fine_tuning_get_the_recipe_and_the_extra_arguments(recipe):
    root = recipe[0]
    dense = _cfg(root / "runs" / "dense" / "checkpoint_last.pt")
    assert dense["model"].arch == "neuroprune_iwslt_de_en" and dense["model"].encoder_embed_dim == 48
    assert dense["optimization"]["lr"] == [5e-4] and dense["lr_scheduler"]["warmup_updates"] == 4000
    assert dense["model"].dropout == 0.3
    tuned = _cfg(root / "runs" / "np_a1e-4b1e-2_k27_s1" / "checkpoint_last.pt")
    assert tuned["model"].encoder_ffn_embed_dim == 64 and tuned["optimization"]["lr"] == [2.5e-4]
    assert tuned["task"]["np_theta"] is None and tuned["task"]["np_head_budget"] == 27
    assert tuned["criterion"]["np_alpha"] == 1e-4 and tuned["criterion"]["np_beta"] == 1e-2


def test_a_relaunch_skips_every_finished_step(recipe):
    second = recipe[2]
    assert second.returncode == 0, second.stderr[-3000:]
    assert "dense pretraining" not in second.stdout and "=== [" not in second.stdout  # no step ran
    assert "study: finished the phases 'train evaluate export'" in second.stdout
