"""rank_check on two real gloo ranks (forked processes): identical states pass, a mask that differs on one
rank is a hard error on every rank, naming each rank's fingerprint."""
import multiprocessing
import socket

import torch
import torch.distributed as dist
from fairseq.modules.multihead_attention import MultiheadAttention

from neuroprune_fairseq import head_masks
from neuroprune_fairseq.rank_check import check_identical_across_ranks


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(rank: int, port: int, masked_on_rank_1: bool, results) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        attn = MultiheadAttention(4, 2, self_attention=True)
        head_masks.attach(attn)
        with torch.no_grad():
            for p in attn.parameters():
                p.fill_(0.5)  # 4*4*4 weights + 4*4 biases = 80 entries of 0.5: sum 40, sum of squares 20
            if masked_on_rank_1 and rank == 1:
                head_masks.head_mask(attn)[0] = 0
                # head 0's 2 rows of q/k/v weights (24) and biases (6) and its 2 out_proj columns (8) become 0:
                head_masks.enforce_module(attn)  # 42 entries of 0.5 left, sum 21, sum of squares 10.5
        try:
            results.put((rank, check_identical_across_ranks(attn)))
        except RuntimeError as err:
            results.put((rank, str(err)))
    finally:
        dist.destroy_process_group()


def _run_two_ranks(masked_on_rank_1: bool) -> dict:
    context = multiprocessing.get_context("fork")
    results, port = context.Queue(), _free_port()
    ranks = [context.Process(target=_rank, args=(r, port, masked_on_rank_1, results)) for r in (0, 1)]
    for process in ranks:
        process.start()
    outcome = dict(results.get(timeout=60) for _ in ranks)
    for process in ranks:
        process.join(timeout=60)
        assert process.exitcode == 0
    return outcome


def test_identical_ranks_pass_and_report_their_count():
    assert _run_two_ranks(masked_on_rank_1=False) == {0: 2, 1: 2}


def test_a_rank_with_another_mask_fails_on_every_rank_with_both_fingerprints():
    outcome = _run_two_ranks(masked_on_rank_1=True)
    expected = "ranks disagree after head elimination: [[2.0, 40.0, 20.0], [1.0, 21.0, 10.5]]"
    assert all(expected in message for message in outcome.values()), outcome
