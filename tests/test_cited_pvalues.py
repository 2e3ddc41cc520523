"""tools.cited_pvalues: every p-value the READMEs cite is listed in the committed manifest, and one real citation
of the seed study is recomputed from the committed hypotheses to the number the README states; a wrong cited
value, an uncovered p-value and a missing excerpt each fail the command."""
import csv
import random
from pathlib import Path

import pytest

from neuroprune.tools import cited_pvalues

REPO = Path(__file__).resolve().parents[1]
MANIFEST = REPO / cited_pvalues.DEFAULT_MANIFEST
EXCERPT = "the paper pass scores 26.81 against 26.80 (p = 0.38)"  # the seed study, K 81, paper pass against DSP joint


def _write_manifest(path, rows):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, cited_pvalues.COLUMNS, delimiter="\t", lineterminator="\n")
        writer.writeheader()
        writer.writerows([{c: row.get(c, "") for c in cited_pvalues.COLUMNS} for row in rows])
    return str(path)


def _real_row(excerpt):
    """The committed manifest's row for ``excerpt``, its paths made absolute."""
    rows = [r for r in cited_pvalues.read_manifest(str(MANIFEST)) if r["cited"] == excerpt]
    assert len(rows) == 1
    row = dict(rows[0])
    for column in ("refs", "baseline", "system"):
        row[column] = ",".join(str(MANIFEST.parent / f) for f in row[column].split(","))
    return row


def test_the_manifest_covers_every_p_value_the_readmes_cite():
    rows = cited_pvalues.read_manifest(str(MANIFEST))
    assert cited_pvalues.citation_problems(rows, MANIFEST.parent) == []
    assert {r["readme"] for r in rows if r["readme"]} == {"../README.md", "../../../README.md"}


def test_a_seed_study_citation_is_recomputed_to_the_readmes_number(tmp_path):
    assert EXCERPT in cited_pvalues.collapse((REPO / "examples/iwslt14_de_en/README.md").read_text())
    (tmp_path / "README.md").write_text(f"At K 81 {EXCERPT}.\n")
    row = _real_row(EXCERPT)
    assert len(row["system"].split(",")) == 3  # pooled over three seeds
    rows = cited_pvalues.main(["--manifest", _write_manifest(tmp_path / "m.tsv", [dict(row, readme="README.md")])])
    assert round(rows[0]["p_value"], 2) == 0.38  # the value written in the README


def test_a_wrong_cited_value_fails(tmp_path, capsys):
    (tmp_path / "README.md").write_text("At K 81 the paper pass scores 26.81 against 26.80 (p = 0.05).\n")
    row = dict(_real_row(EXCERPT), readme="README.md", cited="(p = 0.05)", p="0.05")
    with pytest.raises(SystemExit) as exit_:
        cited_pvalues.main(["--manifest", _write_manifest(tmp_path / "m.tsv", [row])])
    assert exit_.value.code == 1 and "MISMATCH (cited 0.05)" in capsys.readouterr().err


@pytest.fixture()
def toy(tmp_path):
    """References and three systems: one far better than the baseline, one as noisy as it."""
    rng = random.Random(0)
    words = "the a house cat dog runs sleeps on under table red green".split()
    refs = [" ".join(rng.choice(words) for _ in range(8)) for _ in range(60)]
    noisy = lambda p: [" ".join(w if rng.random() > p else rng.choice(words) for w in r.split()) for r in refs]  # noqa: E731
    for name, lines in (("refs.txt", refs), ("bad.hyp", noisy(0.6)), ("good.hyp", noisy(0.1)), ("alike.hyp", noisy(0.6))):
        (tmp_path / name).write_text("".join(line + "\n" for line in lines))
    return tmp_path


def _toy_row(readme, cited, system, **values):
    return dict(readme=readme, cited=cited, refs="refs.txt", baseline="bad.hyp", system=system, **values)


def test_a_family_counts_each_comparison_once(toy, capsys):
    # good against bad: no resample reverses a 20-BLEU gap, so p = 1/101; Holm over 2 comparisons: 2/101 = 0.020
    # (counting the second citation of the same comparison as a third test would give 3/101 = 0.030)
    (toy / "README.md").write_text("Good wins (p = 0.0099, Holm 0.020). Again: good wins (Holm 0.020).\n")
    rows = [_toy_row("README.md", "(p = 0.0099, Holm 0.020)", "good.hyp", p="0.0099", family="f", p_holm="0.020"),
            _toy_row("README.md", "Again: good wins (Holm 0.020)", "good.hyp", family="f", p_holm="0.020"),
            _toy_row("", "", "alike.hyp", family="f")]
    out = cited_pvalues.main(["--manifest", _write_manifest(toy / "m.tsv", rows), "--samples", "100"])
    assert out[0]["p_holm_value"] == pytest.approx(2 / 101)
    assert "all 3 rows (2 comparisons)" in capsys.readouterr().out


@pytest.mark.parametrize("readme,cited,message", [
    ("Good wins (p = 0.0099). Also p = 0.5 somewhere.\n", "(p = 0.0099)", "'p = 0.5' is cited but no manifest row covers it"),
    ("Good wins.\n", "(p = 0.0099)", "excerpt not found: '(p = 0.0099)'"),
])
def test_readme_and_manifest_out_of_step_fail(toy, capsys, readme, cited, message):
    (toy / "README.md").write_text(readme)
    rows = [_toy_row("README.md", cited, "good.hyp", p="0.0099")]
    with pytest.raises(SystemExit):
        cited_pvalues.main(["--manifest", _write_manifest(toy / "m.tsv", rows), "--samples", "100"])
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("row,message", [
    ({"p": "about 0.3"}, "'p' is 'about 0.3', not a number or <=number"),
    ({"system": ""}, "line 2: empty 'system'"),
    ({"readme": ""}, "'readme' and 'cited' go together"),
    ({"p_holm": "0.02"}, "'p_holm' its 'family'"),
])
def test_a_malformed_manifest_is_refused_naming_file_and_line(toy, row, message):
    good = _toy_row("README.md", "(p = 0.0099)", "good.hyp", p="0.0099")
    with pytest.raises(SystemExit, match=message):
        cited_pvalues.main(["--manifest", _write_manifest(toy / "m.tsv", [dict(good, **row)])])
    (toy / "bad.tsv").write_text("readme\tcited\n")
    with pytest.raises(SystemExit, match="bad.tsv has no column p, family"):
        cited_pvalues.main(["--manifest", str(toy / "bad.tsv")])
