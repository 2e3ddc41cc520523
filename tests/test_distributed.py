"""Two CPU ranks (gloo), started by scripts/launch_ranks.sh or by torchrun, against one rank with the same global batch."""
import socket
import subprocess
from pathlib import Path

import pytest
import torch

from neuroprune.checkpoint_stats import masks_from_state_dict
from neuroprune.core.dsp import xavier_logits

from .fairseq_run import BIN, preprocess, run, tool_env, train_args, write_toy_corpus

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

FLAGS = ["--np-alpha", "0.01", "--np-beta", "0.01", "--np-theta", "0.33", "--max-epoch", "3", "--max-tokens", "300"]
DSP_FLAGS = ["--task", "dsp_translation", "--np-dsp-heads", "27", "--np-dsp-anneal-updates", "10", "--max-epoch", "2", "--max-tokens", "300"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _final_state(save_dir):
    return torch.load(save_dir / "checkpoint_last.pt", map_location="cpu", weights_only=False)["model"]


def _corpus_and_one_rank(root, flags):
    """A toy corpus in ``root/bin`` and the final state of 1 rank trained on it with ``--update-freq 2``."""
    write_toy_corpus(root / "text")
    preprocess(root / "text", root / "bin")
    run("fairseq-train", *train_args(root / "bin", root / "one", *flags, "--update-freq", "2"))
    return dict(root=root, one=_final_state(root / "one"))


def _launch_ranks(baseline, flags):
    """2 gloo ranks by scripts/launch_ranks.sh on ``baseline``'s corpus: the rank-0 log and both final states."""
    root = baseline["root"]
    env = dict(tool_env(), NPROC="2", BACKEND="gloo", MASTER_PORT=str(_free_port()), LOG_DIR=str(root / "logs"))
    launch = subprocess.run(["bash", str(REPO / "scripts" / "launch_ranks.sh"), *train_args(root / "bin", root / "two", *flags)],
                            capture_output=True, text=True, env=env, timeout=300)
    assert launch.returncode == 0, launch.stderr[-4000:]
    return dict(log=(root / "logs" / "rank0.log").read_text(), two=_final_state(root / "two"), one=baseline["one"])


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    return _corpus_and_one_rank(tmp_path_factory.mktemp("ddp"), FLAGS)


@pytest.fixture(scope="module")
def runs(baseline):
    return _launch_ranks(baseline, FLAGS)


@pytest.fixture(scope="module")
def dsp_runs(tmp_path_factory):
    return _launch_ranks(_corpus_and_one_rank(tmp_path_factory.mktemp("ddp_dsp"), DSP_FLAGS), DSP_FLAGS)


@pytest.fixture(scope="module")
def torchrun_runs(baseline):
    """2 CPU processes started by torchrun (c10d rendezvous on 127.0.0.1) through tools.torchrun_train: its output
    (rank 0 logs at INFO, rank 1 at WARNING) and both final states."""
    root = baseline["root"]
    launch = subprocess.run(
        [str(BIN / "torchrun"), "--nnodes", "1", "--nproc-per-node", "2", "--rdzv-backend", "c10d",
         "--rdzv-endpoint", f"127.0.0.1:{_free_port()}", "-m", "neuroprune_fairseq.tools.torchrun_train",
         *train_args(root / "bin", root / "torchrun", *FLAGS)],
        capture_output=True, text=True, env=tool_env(), cwd=REPO, timeout=300)
    assert launch.returncode == 0, launch.stdout[-3000:] + launch.stderr[-4000:]
    return dict(log=launch.stdout, two=_final_state(root / "torchrun"), one=baseline["one"])


@pytest.mark.parametrize("launcher", ["runs", "torchrun_runs"])
def test_ranks_agree_after_every_pass(launcher, request):
    assert request.getfixturevalue(launcher)["log"].count("masks and parameters identical on all 2 ranks") == 3


@pytest.mark.parametrize("launcher", ["runs", "torchrun_runs"])
def test_two_ranks_equal_one_rank_with_the_same_global_batch(launcher, request):
    runs = request.getfixturevalue(launcher)
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

