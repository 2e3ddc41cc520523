"""examples/iwslt14_de_en/frontier.sh end to end on a tiny corpus with the real fairseq CLI: every kind of run (the
references, the three penalty sweeps, GMP on both head sets, post-training pruning as trained and with fixed-zero
fine-tuning), their records committed, and the summary. The zeros of the GMP and post-training runs are checked
against a count worked out from the heads each record keeps. Slow (16 tiny trainings and their evaluations)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .fairseq_run import preprocess, run, train_args, write_toy_corpus

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
TINY = ["--encoder-embed-dim", "48", "--decoder-embed-dim", "48", "--encoder-ffn-embed-dim", "64",
        "--decoder-ffn-embed-dim", "64", "--max-tokens", "600", "--num-workers", "0"]
EMBED, FFN, HEAD_DIM, LAYERS = 48, 64, 8, 6


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("frontier")
    write_toy_corpus(root / "text")
    for path in (root / "text").iterdir():  # sentencepiece-style pieces, as tools.evaluate expects
        path.write_text("".join(" ".join("\u2581" + w for w in line.split()) + "\n" for line in path.read_text().splitlines()))
    preprocess(root / "text", root / "bin")
    run("fairseq-train", *train_args(root / "bin", root / "dense", "--encoder-normalize-before", "--decoder-normalize-before",
                                     "--max-epoch", "2"))
    subprocess.run(["git", "init", "-q", str(root / "results")], check=True)
    subprocess.run(["git", "-C", str(root / "results"), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q",
                    "--allow-empty", "-m", "start"], check=True)
    env = dict(os.environ, STUDY_DIR=str(root / "runs"), RESULTS_DIR=str(root / "results"), DATA_BIN=str(root / "bin"),
               PRETRAINED=str(root / "dense" / "checkpoint_last.pt"), BUDGETS="27", STRENGTHS="w:1e-5:1e-4 s:1e-2:1e-1",
               GMP_TARGETS="0.5", GMP_STEPS="2", SPLIT_STRENGTH="", PHASES="train evaluate posttrain summary",
               POST_BASES="michel dense", POST_METHODS="magnitude", POST_SPARSITIES="0.5", POST_FT_BASES="michel",
               POST_FT_METHODS="magnitude", MATCHED="np_plus_w:gmp_michel_g0.5 l1_s:no_such_series", CALIB_SENTENCES="16", BEAM="2", COMMIT="1", PYTHON=sys.executable,
               FAIRSEQ_TRAIN=str(Path(sys.executable).parent / "fairseq-train"))
    proc = subprocess.run(["bash", "examples/iwslt14_de_en/frontier.sh", *TINY], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    records = {p.stem: json.loads(p.read_text()) for p in (root / "results" / "records").glob("*.json")}
    return root, proc, records


RUNS = {"dense_s1", "michel_k27_s1", "dsp_joint_k27_s1", "np_plus_w_k27_s1", "np_plus_s_k27_s1", "l1_w_k27_s1", "l1_s_k27_s1",
        "np_w_k27_s1", "np_s_k27_s1", "gmp_michel_g0.5_k27_s1", "gmp_dsp_g0.5_k27_s1", "magnitude-0.5_michel_k27_s1",
        "magnitude-0.5_dense_s1", "magnitude-0.5-ft_michel_k27_s1"}


def _half_of_active(record) -> float:
    """Zeros, by hand, of a model whose every q/k/v/out and fc1/fc2 matrix has half its active entries zero (removed
    heads all zero), as a share of those matrices: a head owns HEAD_DIM rows of q/k/v and HEAD_DIM columns of out."""
    zero = total = 0
    for kept in record["heads_per_module"].values():
        active = kept * HEAD_DIM * EMBED
        zero += 4 * (EMBED * EMBED - active + round(0.5 * active))
        total += 4 * EMBED * EMBED
    zero += 2 * LAYERS * 2 * round(0.5 * EMBED * FFN)
    total += 2 * LAYERS * 2 * EMBED * FFN
    return zero / total


def test_every_run_has_its_records_and_commit(sweep):
    root, proc, records = sweep
    assert "frontier.sh: 14 runs, 0 with records already" in proc.stdout
    assert set(records) == RUNS
    assert {p.stem for p in (root / "results" / "valid").glob("*.json")} == RUNS
    log = subprocess.run(["git", "-C", str(root / "results"), "log", "--format=%s"], capture_output=True, text=True).stdout.split("\n")
    assert {f"frontier: {name}" for name in RUNS} <= set(log)
    for name, record in records.items():
        assert record["sparsity_definition"] == "exact_zero" and record["zero_below"] == 1e-4, name
        assert "unthresholded" in record and not (root / "results" / "valid" / f"{name}.json").read_text().count("unthresholded")
    updates = {r["num_updates"] for n, r in records.items() if "magnitude" not in n}
    ft = records["magnitude-0.5-ft_michel_k27_s1"]
    assert len(updates) == 1 and ft["num_updates"] == updates.pop() // 2  # pruned after epoch 1, then one epoch


def test_gmp_and_post_training_zeros_are_half_of_the_active_weights(sweep):
    """Before zeroing |w| < 1e-4, GMP at 0.5 and magnitude pruning at 0.5 leave exactly half of each matrix's active
    entries zero; the fine-tuned model kept the zeros it was pruned to (and may hold more)."""
    _, _, records = sweep
    for name in ("gmp_michel_g0.5_k27_s1", "gmp_dsp_g0.5_k27_s1", "magnitude-0.5_michel_k27_s1", "magnitude-0.5_dense_s1"):
        assert records[name]["unthresholded"]["weight_sparsity"] == pytest.approx(_half_of_active(records[name]), abs=1e-12), name
    ft = records["magnitude-0.5-ft_michel_k27_s1"]
    assert ft["unthresholded"]["weight_sparsity"] >= _half_of_active(ft) - 1e-12
    assert ft["heads_per_module"] == records["michel_k27_s1"]["heads_per_module"]
    assert records["gmp_michel_g0.5_k27_s1"]["method"] == "gmp_michel" and ft["method"] == "magnitude+ft@michel"


def test_summary_tabulates_every_run_and_draws_the_fronts(sweep):
    root, _, records = sweep
    table = (root / "results" / "results.md").read_text().splitlines()
    assert len(table) == 2 + len(records) and {line.split(" | ")[0][2:] for line in table[2:]} == RUNS
    for kind in ("sparsity-front", "params-front"):
        assert (root / "results" / f"{kind}-k27.png").stat().st_size > 1000
    # every run of the budget and the dense control against Michel's run; the table's last column is its Holm p
    systems = json.loads((root / "results" / "significance-k27.json").read_text())["systems"]
    assert systems[0]["name"] == "michel_k27_s1" and systems[0]["p_value"] is None
    assert {s["name"] for s in systems} == {n for n, r in records.items() if r.get("budget") == 27} | {"dense_s1"}
    p_column = {line.split(" | ")[0][2:]: line.rsplit("|", 2)[1].strip() for line in table[2:]}
    for s in systems[1:]:
        assert p_column[s["name"]] == f"{s['p_holm']:.3f}" and s["p_holm"] >= s["p_value"]


def test_the_matched_pair_is_tested_and_a_pair_without_records_is_left_out(sweep):
    """The one MATCHED pair whose series both have records, on its one seed: pooled BLEUs recomputed with sacrebleu
    from the hypothesis files; the pair naming a series without records is not tested (no error)."""
    import sacrebleu

    root, _, _ = sweep
    text = root / "results" / "text"
    refs = (text / "test.ref").read_text().splitlines()
    tests = json.loads((root / "results" / "matched.json").read_text())["tests"]
    assert [(t["budget"], t["config"], t["against"], t["seeds"]) for t in tests] == [(27, "np_plus_w", "gmp_michel_g0.5", [1])]
    for name, key in (("np_plus_w_k27_s1", "bleu"), ("gmp_michel_g0.5_k27_s1", "against_bleu")):
        hyps = (text / f"{name}.hyp").read_text().splitlines()
        assert tests[0][key] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score, abs=0.01)
