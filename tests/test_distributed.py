"""Two CPU ranks (gloo) against one rank with the same global batch."""
import os
import socket
import subprocess

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
    port = _free_port()
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", OMP_NUM_THREADS="1")
    ranks = [
        subprocess.Popen(
            [str(BIN / "fairseq-train"), *train_args(root / "bin", root / "two", *FLAGS),
             "--distributed-world-size", "2", "--distributed-rank", str(rank), "--distributed-backend", "gloo",
             "--distributed-init-method", f"tcp://127.0.0.1:{port}", "--distributed-no-spawn", "--ddp-backend", "legacy_ddp"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        for rank in (0, 1)
    ]
    logs = [p.communicate(timeout=300)[0] for p in ranks]
    assert [p.returncode for p in ranks] == [0, 0], logs[0][-3000:] + logs[1][-3000:]
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
