"""Two CPU ranks (gloo) against one rank with the same global batch."""
import os
import socket
import subprocess
from pathlib import Path

import pytest
import torch

from neuroprune.checkpoint_stats import masks_from_state_dict
from neuroprune.core.dsp import xavier_logits

from .fairseq_run import BIN, preprocess, run, train_args, write_toy_corpus

pytestmark = pytest.mark.slow

FLAGS = ["--np-alpha", "0.01", "--np-beta", "0.01", "--np-theta", "0.33", "--max-epoch", "3", "--max-tokens", "300"]
DSP_FLAGS = ["--task", "dsp_translation", "--np-dsp-heads", "27", "--np-dsp-anneal-updates", "10", "--max-epoch", "2", "--max-tokens", "300"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _two_ranks_and_one(root, flags):
    """Train with 2 gloo ranks and with 1 rank and --update-freq 2; the rank-0 log and both final states."""
    write_toy_corpus(root / "text")
    preprocess(root / "text", root / "bin")
    repo = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", OMP_NUM_THREADS="1",
               NPROC="2", BACKEND="gloo", MASTER_PORT=str(_free_port()), LOG_DIR=str(root / "logs"))
    launch = subprocess.run(["bash", str(repo / "scripts" / "launch_ranks.sh"), *train_args(root / "bin", root / "two", *flags)],
                            capture_output=True, text=True, env=env, timeout=300)
    assert launch.returncode == 0, launch.stderr[-4000:]
    logs = [(root / "logs" / f"rank{r}.log").read_text() for r in (0, 1)]
    one = run("fairseq-train", *train_args(root / "bin", root / "one", *flags, "--update-freq", "2")).stdout
    load = lambda d: torch.load(d / "checkpoint_last.pt", map_location="cpu", weights_only=False)["model"]  # noqa: E731
    return dict(log=logs[0], one_log=one, two=load(root / "two"), one=load(root / "one"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return _two_ranks_and_one(tmp_path_factory.mktemp("ddp"), FLAGS)


@pytest.fixture(scope="module")
def dsp_runs(tmp_path_factory):
    return _two_ranks_and_one(tmp_path_factory.mktemp("ddp_dsp"), DSP_FLAGS)


def test_ranks_agree_after_every_pass(runs):
    assert runs["log"].count("masks and parameters identical on all 2 ranks") == 3


def test_two_ranks_equal_one_rank_with_the_same_global_batch(runs):
    assert masks_from_state_dict(runs["two"]) == masks_from_state_dict(runs["one"])
    assert 18 < sum(map(sum, masks_from_state_dict(runs["two"]).values())) < 108  # the passes pruned some heads, not all
    for key, value in runs["one"].items():
        assert torch.allclose(runs["two"][key].float(), value.float(), atol=1e-4), key


def test_dsp_gates_on_two_ranks_equal_one_rank_with_the_same_global_batch(dsp_runs):
    """Gate gradients are summed over ranks and normalised by the global sample size; the Gumbel noise
    depends on (seed, update) only, so 2 ranks learn the same logits, masks and weights as 1 rank."""
    assert sum(map(sum, masks_from_state_dict(dsp_runs["two"]).values())) == 27
    assert masks_from_state_dict(dsp_runs["two"]) == masks_from_state_dict(dsp_runs["one"])
    assert not torch.equal(dsp_runs["two"]["np_dsp_logits"], xavier_logits([6] * 18, torch.Generator().manual_seed(1)))  # they learned
    for key, value in dsp_runs["one"].items():
        assert torch.allclose(dsp_runs["two"][key].float(), value.float(), atol=1e-4), key

