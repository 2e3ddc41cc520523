"""The one-shot harness on a tiny trained model, and the task's data-aware pass inside fairseq-train."""
import json
import re

import pytest
import sacrebleu
import torch

from neuroprune.checkpoint_stats import masks_from_state_dict
from neuroprune_fairseq import head_masks
from neuroprune_fairseq.head_masks import PassVariant
from neuroprune_fairseq.tools import one_shot

from .fairseq_run import run, train_args, preprocess, write_toy_corpus

VARIANTS = ["linf:paper:paper", "output:importance:data", "michel"]


def _state(path):
    return torch.load(path, map_location="cpu", weights_only=False)["model"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny model trained 30 updates, then the harness at two budgets (valid split, greedy search)."""
    root = tmp_path_factory.mktemp("one_shot")
    write_toy_corpus(root / "text")
    preprocess(root / "text", root / "bin")
    run("fairseq-train", *train_args(root / "bin", root / "dense", "--max-update", "30", "--no-epoch-checkpoints"))
    out = root / "harness"
    argv = ["--checkpoint", str(root / "dense" / "checkpoint_last.pt"), "--data-bin", str(root / "bin"), "--out-dir", str(out),
            "--budgets", "54", "30", "--variants", *VARIANTS, "--calib-sentences", "40", "--beam", "1", "--cpu"]
    one_shot.main(argv)
    return root, out, argv


@pytest.mark.slow
def test_every_variant_and_budget_gets_a_checkpoint_and_a_record(trained):
    root, out, _ = trained
    table = (out / "one_shot.tsv").read_text().splitlines()
    assert table[0].split("\t") == list(one_shot.TABLE_COLUMNS) and len(table) == 1 + 1 + 3 * 2  # header, dense, 6 runs
    for spec in VARIANTS:
        for budget in (54, 30):
            name = f"{spec.replace(':', '-')}_k{budget}"
            record = json.loads((out / "records" / f"{name}.json").read_text())
            masks = masks_from_state_dict(_state(out / "checkpoints" / f"{name}.pt"))
            kept = sum(sum(m) for m in masks.values())
            assert record["heads_kept"] == kept and record["subset"] == "valid" and record["variant"] == spec
            assert kept == budget if spec == "michel" else budget <= kept < 108  # a pass removes whole groups
            assert all(sum(m) >= 1 for m in masks.values())
            assert f"{spec}\t{budget}\t{kept}\t{record['bleu']}\t" in "\n".join(table)
            hyps = (out / "records" / f"{name}.hyp").read_text().splitlines()
            refs = (out / "records" / f"{name}.ref").read_text().splitlines()
            assert len(hyps) == len(refs) == record["sentences"] == 24
            assert sacrebleu.corpus_bleu(hyps, [refs]).score == pytest.approx(record["bleu"], abs=0.01)


@pytest.mark.slow
def test_the_harness_pass_is_the_task_pass_on_the_same_calibration(trained):
    """The paper variant's checkpoint equals head_masks' budget pass run here on the dense model."""
    root, out, _ = trained
    from neuroprune_fairseq.tools.michel import load

    model, _, _ = load(type("A", (), {"checkpoint": str(root / "dense" / "checkpoint_last.pt"), "data_bin": str(root / "bin"), "cpu": True}))
    head_masks.eliminate_to_budget(model, 30, 30, PassVariant())
    saved = _state(out / "checkpoints" / "linf-paper-paper_k30.pt")
    assert all(torch.equal(v, saved[k]) for k, v in model.state_dict().items())


@pytest.mark.slow
def test_a_second_run_reuses_the_records(trained, capsys):
    _, out, argv = trained
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "records").glob("*.json")}
    one_shot.main(argv)
    assert {p.name: p.stat().st_mtime_ns for p in (out / "records").glob("*.json")} == stamps
    assert "one_shot | linf:paper:paper at" not in capsys.readouterr().out


@pytest.mark.parametrize("flag,value,message", [
    ("--variants", "linf:paper", "is not SIMILARITY:KEEP:FOLD"),
    ("--variants", "linf:paper:sum", "unknown fold 'sum'"),
    ("--budgets", "3", "outside 18"),
])
@pytest.mark.slow
def test_bad_arguments_name_the_flag(trained, flag, value, message):
    _, _, argv = trained
    argv = list(argv)
    argv[argv.index(flag) + 1] = value
    with pytest.raises(SystemExit, match=re.escape(flag) + ".*" + re.escape(message)):
        one_shot.main(argv)


@pytest.mark.slow
def test_fairseq_train_runs_the_data_aware_budget_pass(trained):
    """--np-fold data --np-keep importance --np-similarity output in a real training: the pass calibrates,
    meets the budget and leaves masked heads' out-projection columns at zero."""
    root, _, _ = trained
    flags = ["--np-head-budget", "40", "--np-fold", "data", "--np-keep", "importance", "--np-similarity", "output",
             "--np-calib-sentences", "32", "--max-epoch", "1", "--no-epoch-checkpoints"]
    log = run("fairseq-train", *train_args(root / "bin", root / "data_pass", *flags))
    text = log.stdout + log.stderr
    assert re.search(r"neuroprune \| calibration: 32 sentences of 'train'", text)
    state = _state(root / "data_pass" / "checkpoint_last.pt")
    masks = masks_from_state_dict(state)
    assert 40 <= sum(sum(m) for m in masks.values()) < 108
    for name, mask in masks.items():
        out = state[f"{name}.out_proj.weight"].reshape(state[f"{name}.out_proj.weight"].shape[0], len(mask), -1)
        for head, active in enumerate(mask):
            assert (out[:, head].abs().sum() == 0) == (active == 0)
