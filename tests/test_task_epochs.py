"""task.begin_epoch's two repairs, driven in-process: a pass whose epoch-end update was skipped runs late
(before the next epoch), and an epoch count that restarts below the last pruned epoch (a new run from a
pruned checkpoint) resets the counter so that the new run's passes happen."""
import logging

from neuroprune.state_keys import PRUNED_EPOCH_BUFFER
from neuroprune_fairseq import head_masks

from .fairseq_run import build_in_process

THETA_ALL = ["--np-theta", "100"]  # every pair similar: a pass keeps one head in each of the 18 modules


def _counter(model) -> int:
    return int(getattr(model, PRUNED_EPOCH_BUFFER))


def test_a_pass_skipped_at_the_end_of_an_epoch_runs_before_the_next_one_once(tmp_path, caplog):
    task, model, _ = build_in_process(tmp_path, *THETA_ALL)
    task.begin_epoch(1, model)
    assert sum(head_masks.heads_kept(model).values()) == 108 and _counter(model) == 0
    # Epoch 1's last update was skipped (e.g. an fp16 overflow), so optimizer_step never saw the end of the epoch.
    with caplog.at_level(logging.INFO, logger="neuroprune_fairseq.task"):
        task.begin_epoch(2, model)
        assert "running the elimination of epoch 1 late, before epoch 2" in caplog.text
        assert sum(head_masks.heads_kept(model).values()) == 18 and _counter(model) == 1
        caplog.clear()
        task.begin_epoch(2, model)  # fairseq calls begin_epoch again when it reloads the epoch's iterator
        task.begin_epoch(3, model)  # epoch 2 has not ended either: its own pass is late too, but has nothing to prune
    assert caplog.text.count("late") == 1 and "epoch 2 late" in caplog.text and _counter(model) == 2


def test_an_epoch_pass_that_ran_is_not_repeated_late(tmp_path, caplog):
    task, model, _ = build_in_process(tmp_path, *THETA_ALL)
    task.begin_epoch(1, model)
    task._end_of_epoch(1, model, optimizer=None)  # what optimizer_step does after the epoch's last update
    assert _counter(model) == 1
    with caplog.at_level(logging.INFO, logger="neuroprune_fairseq.task"):
        task.begin_epoch(2, model)
    assert "late" not in caplog.text and _counter(model) == 1


def test_a_restarted_epoch_count_resets_the_counter_and_prunes_again(tmp_path, caplog):
    """A checkpoint pruned up to epoch 4, fine-tuned with a fresh epoch count: epoch 1's pass must run."""
    task, model, _ = build_in_process(tmp_path, *THETA_ALL)
    getattr(model, PRUNED_EPOCH_BUFFER).fill_(4)
    with caplog.at_level(logging.INFO, logger="neuroprune_fairseq.task"):
        task.begin_epoch(1, model)
    assert "epoch count restarted at 1: earlier passes (up to epoch 4) belong to the previous run" in caplog.text
    assert _counter(model) == 0
    task._end_of_epoch(1, model, optimizer=None)
    assert sum(head_masks.heads_kept(model).values()) == 18 and _counter(model) == 1
