"""tools.topk_changes reads DSP's per-epoch top-K changes from fairseq's epoch summary lines and fails
when the fixed-mask part of a run changed its heads. The log lines are fairseq's own format (copied from
a tiny DSP run), with the counts written in by hand."""
import pytest

from neuroprune.tools import topk_changes

LINE = ("2026-12-01 14:36:26 | INFO | train | epoch {epoch:03d} | np_dsp_tau 1e-08 | np_dsp_fractional 0 | "
        "np_dsp_topk_changes {changes} | loss 7.022 | nll_loss 7.049 | ppl 132.39 | num_updates 2 | lr 0.00025\n")
INNER = ("2026-12-01 14:36:20 | INFO | train_inner | epoch 002:      1 / 1 np_dsp_tau=1e-08, np_dsp_fractional=0, "
         "np_dsp_topk_changes=7, loss=7.0, num_updates=2\n")  # a per-interval line: not an epoch total
VALID = "2026-12-01 14:36:27 | INFO | valid | epoch 002 | valid on 'valid' subset | loss 7.0 | num_updates 2\n"


def _log(tmp_path, name, *counts, extra=""):
    path = tmp_path / f"{name}.txt"
    path.write_text(extra + "".join(LINE.format(epoch=e, changes=c) + VALID for e, c in counts))
    return path


def test_rows_per_run_and_epoch_and_a_settled_run_passes(tmp_path, capsys):
    a = _log(tmp_path, "dsp_joint_k54_s1", (1, 31), (2, 0), (3, 0), extra=INNER)
    b = _log(tmp_path, "dsp_pipelined_k54_s1", (1, 4), (2, 0), (3, 0))
    out = tmp_path / "changes.tsv"
    topk_changes.main([str(a), str(b), "--select-epochs", "1", "--out", str(out)])
    assert out.read_text().splitlines() == [
        "run\tepoch\tphase\ttopk_changes",
        "dsp_joint_k54_s1\t1\tgates learning\t31", "dsp_joint_k54_s1\t2\tfixed\t0", "dsp_joint_k54_s1\t3\tfixed\t0",
        "dsp_pipelined_k54_s1\t1\tgates learning\t4", "dsp_pipelined_k54_s1\t2\tfixed\t0", "dsp_pipelined_k54_s1\t3\tfixed\t0"]
    assert capsys.readouterr().out == out.read_text()


def test_a_change_after_the_selection_epochs_fails_naming_run_and_epoch(tmp_path):
    a = _log(tmp_path, "dsp_joint_k27_s2", (1, 12), (2, 0), (3, 2))
    b = _log(tmp_path, "dsp_joint_k81_s2", (1, 12), (2, 0), (3, 0))
    with pytest.raises(SystemExit, match=r"changed after epoch 1 in dsp_joint_k27_s2 \(epochs \[3\]\)$"):
        topk_changes.main([str(a), str(b), "--select-epochs", "1"])
    topk_changes.main([str(a), "--select-epochs", "3"])  # all three epochs learning gates: nothing to fail


def test_a_repeated_epoch_keeps_its_last_line(tmp_path):
    """A run resumed from the end of epoch 1 logs epoch 2 again; the first, interrupted count is not added."""
    log = _log(tmp_path, "r", (1, 9), (2, 5), (2, 0)).read_text()
    assert topk_changes.changes_per_epoch(log) == {1: 9.0, 2: 0.0}
    assert topk_changes.unsettled({1: 9.0, 2: 0.0, 3: 1.0}, 1) == [3]


def test_a_log_without_dsp_epoch_lines_and_a_missing_file_are_errors(tmp_path):
    plain = tmp_path / "michel_k54_s1.txt"
    plain.write_text(INNER + VALID + "2026 | INFO | train | epoch 001 | loss 7.0 | num_updates 2\n")
    with pytest.raises(SystemExit, match=r"no '\| train \| epoch' line with np_dsp_topk_changes in michel_k54_s1.txt"):
        topk_changes.main([str(plain), "--select-epochs", "1"])
    with pytest.raises(SystemExit, match=r"^LOG: .*nothing.txt does not exist$"):
        topk_changes.main([str(tmp_path / "nothing.txt"), "--select-epochs", "1"])
    existing = tmp_path / "out.tsv"
    existing.write_text("keep")
    with pytest.raises(SystemExit):
        topk_changes.main([str(_log(tmp_path, "d", (1, 1))), "--select-epochs", "1", "--out", str(existing)])
    assert existing.read_text() == "keep"
