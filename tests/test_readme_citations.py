"""Every evaluation record that a README cites with a BLEU or a p-value has its hypotheses committed, or is listed
as not kept and then carries no p-value: checked on the real READMEs, and shown to fail on small fake trees."""
import json
from pathlib import Path

import pytest

from tests.readme_citations import problems

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("readme", ["README.md", "examples/iwslt14_de_en/README.md"])
def test_the_readmes_cite_only_records_with_committed_hypotheses(readme):
    assert problems(REPO / readme) == []


def test_the_readmes_cite_records_at_all():
    """The parser finds the seed study's records behind a cited folder (so the test above is not empty)."""
    from tests.readme_citations import PATH, records_at
    text = (REPO / "examples/iwslt14_de_en/README.md").read_text()
    assert "results/one_shot/test/" in PATH.findall(text)
    assert len(records_at(REPO / "examples/iwslt14_de_en/results/one_shot/test")) == 13


def _tree(tmp_path, readme, hyps=("a",), refs=True, not_kept=()):
    """results/run/records/{a,b}.json (evaluation records), the given hypotheses in results/run/text/."""
    run = tmp_path / "results" / "run"
    (run / "records").mkdir(parents=True)
    (run / "text").mkdir()
    for name in ("a", "b"):
        (run / "records" / f"{name}.json").write_text(json.dumps({"name": name, "bleu": 20.0, "bleu_signature": "s"}))
    for name in hyps:
        (run / "text" / f"{name}.hyp").write_text("a hypothesis\n")
    if refs:
        (run / "text" / "test.ref").write_text("a reference\n")
    if not_kept:
        (run / "hypotheses_not_kept.txt").write_text("# why\n" + "".join(n + "\n" for n in not_kept))
    (tmp_path / "README.md").write_text(readme)
    return tmp_path / "README.md"


def test_a_cited_record_without_hypotheses_fails(tmp_path):
    readme = _tree(tmp_path, "Model b scores 21.3 BLEU ([record](results/run/records/b.json)).\n")
    assert [p for p in problems(readme) if "b.json is cited but its hypotheses are not committed" in p]
    folder = _tree(tmp_path / "f", "Both score 20 BLEU ([records](results/run/)).\n")  # a folder: each record inside
    assert len(problems(folder)) == 1 and "b.json" in problems(folder)[0]
    assert problems(_tree(tmp_path / "k", "Model a: 20 BLEU ([record](results/run/records/a.json)).\n")) == []


def test_hypotheses_without_references_do_not_count(tmp_path):
    readme = _tree(tmp_path, "Model a: 20 BLEU (`results/run/records/a.json`).\n", refs=False)
    assert len(problems(readme)) == 1


def test_a_record_listed_as_not_kept_may_be_cited_but_not_with_a_p_value(tmp_path):
    text = "Model b: 20 BLEU ([record](results/run/records/b.json)).\n\nAnother paragraph: p = 0.001.\n"
    assert problems(_tree(tmp_path, text, not_kept=("b",))) == []
    text = "Model b: 20 BLEU, ahead of a (p = 0.001; [record](results/run/records/b.json)).\n"
    assert "gives a p-value, but its hypotheses were not kept" in problems(_tree(tmp_path / "p", text, not_kept=("b",)))[0]


def test_a_cited_path_that_does_not_exist_fails(tmp_path):
    readme = _tree(tmp_path, "It scores 20 BLEU (`results/run/records/c.json`); not a citation: runs/x/results/y.json.\n")
    assert problems(readme) == ["README.md: results/run/records/c.json does not exist"]
