"""tools.significance: sacrebleu's paired bootstrap between systems, seed-pooled by concatenation."""
import random

import pytest
import sacrebleu

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
    with pytest.raises(SystemExit, match="has 5 lines"):
        significance.main(["--refs", files["refs"], "--system", f"a={files['good1']}", "--system", f"b={short}"])
