"""tools.significance: the paired bootstrap between systems, pooled over seeds by source sentence, and Holm's
adjustment: checked against sacrebleu's own paired bootstrap, against hand-worked values and against properties
that the naive concatenation breaks."""
import random

import pytest
import sacrebleu
from sacrebleu.metrics import BLEU
from sacrebleu.significance import PairedTest

from neuroprune.tools import significance

WORDS = "the a house cat dog runs sleeps on under table red green".split()


def _write(path, lines):
    path.write_text("".join(line + "\n" for line in lines))
    return str(path)


@pytest.fixture()
def texts(tmp_path):
    rng = random.Random(0)
    refs = [" ".join(rng.choice(WORDS) for _ in range(8)) for _ in range(60)]
    noisy = lambda p: [" ".join(w if rng.random() > p else rng.choice(WORDS) for w in r.split()) for r in refs]  # noqa: E731
    files = {"refs": _write(tmp_path / "t.ref", refs)}
    for name, p in (("good1", 0.1), ("good2", 0.1), ("bad1", 0.6), ("bad2", 0.6)):
        files[name] = _write(tmp_path / f"{name}.hyp", noisy(p))
    return files, refs


def test_a_much_better_system_is_significant_and_an_equally_noisy_one_is_not(texts, tmp_path):
    files, refs = texts
    rows = significance.main(["--refs", files["refs"], "--system", f"bad={files['bad1']}", "--system", f"good={files['good1']}",
                              "--system", f"alike={files['bad2']}", "--samples", "300", "--out", str(tmp_path / "s.json")])
    by = {r["name"]: r for r in rows}
    assert by["bad"]["p_value"] is None
    assert by["bad"]["bleu"] == pytest.approx(sacrebleu.corpus_bleu(open(files["bad1"]).read().splitlines(), [refs]).score, abs=0.01)
    assert by["good"]["p_value"] < 0.01 and by["good"]["bleu"] > by["bad"]["bleu"] + 20
    assert by["alike"]["p_value"] > 0.05  # the same noise level, another draw
    assert (tmp_path / "s.json").exists()


def test_pooled_systems_are_scored_on_the_concatenation_of_their_seeds(texts):
    files, refs = texts
    rows = significance.main(["--refs", files["refs"], "--system", f"bad={files['bad1']},{files['bad2']}",
                              "--system", f"good={files['good1']},{files['good2']}", "--samples", "50"])
    lines = lambda *names: [l for n in names for l in open(files[n]).read().splitlines()]  # noqa: E731
    expected = sacrebleu.corpus_bleu(lines("good1", "good2"), [refs + refs]).score
    assert rows[1]["bleu"] == pytest.approx(expected, abs=0.01)


@pytest.mark.parametrize("systems,message", [
    (["good={good1}"], "at least one system to compare"),
    (["good={good1}", "bad={bad1},{bad2}"], "same number of hypothesis files"),
    (["good={good1}", "bad"], "is not NAME=FILE"),
    (["good={good1}", "good={bad1}"], "given twice"),
    (["good={good1}", "bad={refs}x"], "does not exist"),
])
def test_bad_arguments_are_refused(texts, systems, message):
    files, _ = texts
    argv = ["--refs", files["refs"]]
    for s in systems:
        argv += ["--system", s.format(**files)]
    with pytest.raises(SystemExit, match=message):
        significance.main(argv)


def test_a_hypothesis_file_of_the_wrong_length_is_refused(texts, tmp_path):
    files, _ = texts
    short = _write(tmp_path / "short.hyp", ["the cat"] * 5)
    with pytest.raises(SystemExit, match="has 5 lines, the references have 60"):
        significance.main(["--refs", files["refs"], "--system", f"a={files['good1']}", "--system", f"b={short}"])


def _sacrebleu(systems, refs, samples):
    """sacrebleu's PairedTest on (name, hypotheses) pairs: (score, mean, ci, p) per system."""
    _, results = PairedTest(systems, {"BLEU": BLEU()}, [refs], test_type="bs", n_samples=samples)()
    return [(r.score, r.mean, r.ci, r.p_value) for r in results["BLEU"]]


def _lines(files, *names):
    return [open(files[n]).read().splitlines() for n in names]


def test_with_one_seed_the_clustered_bootstrap_is_sacrebleus_number_for_number(texts):
    files, refs = texts
    bad, good, alike = _lines(files, "bad1", "good1", "bad2")
    rows = significance.paired_bootstrap({"bad": [bad], "good": [good], "alike": [alike]}, refs, 200)
    expected = _sacrebleu([("bad", bad), ("good", good), ("alike", alike)], refs, 200)
    assert [(r["bleu"], r["mean"], r["ci"], r["p_value"]) for r in rows] == expected
    assert 0.01 < rows[2]["p_value"] < 1  # a p-value that the resamples decide, not the floor 1/201


def test_identical_seed_copies_keep_the_one_seed_interval_where_concatenation_shrinks_it(texts):
    files, refs = texts
    bad, good = _lines(files, "bad1", "good1")
    one = significance.paired_bootstrap({"bad": [bad], "good": [good]}, refs, 300)
    copies = significance.paired_bootstrap({"bad": [bad] * 3, "good": [good] * 3}, refs, 300)
    for a, b in zip(one, copies):  # BLEU of three identical copies of each drawn sentence = BLEU of one
        assert b["bleu"] == pytest.approx(a["bleu"]) and b["ci"] == pytest.approx(a["ci"])
    naive = _sacrebleu([("bad", bad * 3), ("good", good * 3)], refs * 3, 300)  # 3N sentences drawn independently
    assert naive[1][2] < 0.75 * one[1]["ci"]  # about 1/sqrt(3) of it: copies taken for independent sentences


def test_holm_matches_a_hand_worked_family():
    # sorted: 0.005 x 4 = 0.02; 0.01 x 3 = 0.03; 0.03 x 2 = 0.06; 0.04 x 1 = 0.04, raised to the 0.06 before it
    assert significance.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert significance.holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert significance.holm([]) == []


def test_the_command_reports_holm_over_its_comparisons(texts, tmp_path):
    files, _ = texts
    rows = significance.main(["--refs", files["refs"], "--system", f"bad={files['bad1']}", "--system", f"good={files['good1']}",
                              "--system", f"alike={files['bad2']}", "--samples", "100"])
    assert rows[0]["p_holm"] is None
    assert [r["p_holm"] for r in rows[1:]] == pytest.approx(significance.holm([r["p_value"] for r in rows[1:]]))
    assert rows[1]["p_holm"] == pytest.approx(2 * rows[1]["p_value"])  # the smaller of two p-values, times 2
