"""With its default flags the plugin is plain fairseq: the same losses, update for update."""
import re

import pytest

from .fairseq_run import preprocess, run, train_args, write_toy_corpus

pytestmark = pytest.mark.slow


def _losses(log: str):
    return re.findall(r"train_inner \| epoch \d+:\s+\d+ / \d+ loss=([\d.]+), nll_loss=([\d.]+)", log)


def test_default_task_and_criterion_reproduce_stock_translation(tmp_path):
    write_toy_corpus(tmp_path / "text")
    preprocess(tmp_path / "text", tmp_path / "bin")
    ours = run("fairseq-train", *train_args(tmp_path / "bin", tmp_path / "ours", "--max-epoch", "2")).stdout
    stock = run("fairseq-train", *train_args(tmp_path / "bin", tmp_path / "stock", "--max-epoch", "2",
                                             task="translation", criterion="label_smoothed_cross_entropy")).stdout
    assert len(_losses(ours)) == 8
    assert _losses(ours) == _losses(stock)
