"""Two CPU ranks (gloo) against one rank with the same global batch."""
import os
import socket
import subprocess
from pathlib import Path

import pytest
import torch

from neuroprune_fairseq.head_masks import masks_from_state_dict

from .fairseq_run import BIN, preprocess, run, train_args, write_toy_corpus

FLAGS = ["--np-alpha", "0.01", "--np-beta", "0.01", "--np-theta", "0.33", "--max-epoch", "3", "--max-tokens", "300"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    write_toy_corpus(root / "text")
    preprocess(root / "text", root / "bin")
    repo = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", OMP_NUM_THREADS="1",
               NPROC="2", BACKEND="gloo", MASTER_PORT=str(_free_port()), LOG_DIR=str(root / "logs"))
    launch = subprocess.run(["bash", str(repo / "scripts" / "launch_ranks.sh"), *train_args(root / "bin", root / "two", *FLAGS)],
                            capture_output=True, text=True, env=env, timeout=300)
    assert launch.returncode == 0, launch.stderr[-4000:]
    logs = [(root / "logs" / f"rank{r}.log").read_text() for r in (0, 1)]
    one = run("fairseq-train", *train_args(root / "bin", root / "one", *FLAGS, "--update-freq", "2")).stdout
    load = lambda d: torch.load(d / "checkpoint_last.pt", map_location="cpu", weights_only=False)["model"]  # noqa: E731
    return dict(log=logs[0], one_log=one, two=load(root / "two"), one=load(root / "one"))


def test_ranks_agree_after_every_pass(runs):
    assert runs["log"].count("masks and parameters identical on all 2 ranks") == 3


def test_two_ranks_equal_one_rank_with_the_same_global_batch(runs):
    assert masks_from_state_dict(runs["two"]) == masks_from_state_dict(runs["one"])
    assert 18 < sum(map(sum, masks_from_state_dict(runs["two"]).values())) < 108  # the passes pruned some heads, not all
    for key, value in runs["one"].items():
        assert torch.allclose(runs["two"][key].float(), value.float(), atol=1e-4), key


def test_launcher_reports_a_failing_rank(tmp_path):
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", NPROC="2", LOG_DIR=str(tmp_path),
               MASTER_PORT=str(_free_port()))
    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.run(["bash", str(repo / "scripts" / "launch_ranks.sh"), str(tmp_path / "missing-data")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode != 0 and "rank 0 failed" in proc.stderr
