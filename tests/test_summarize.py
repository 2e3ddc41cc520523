"""The summary tool: results JSON, PNG and table from records; clear failure on a malformed record."""
import json

import pytest

from neuroprune.tools import summarize


def _record(tmp_path, name, **overrides):
    record = {"name": name, "method": "dense", "bleu": 27.5, "tokenized_bleu": 28.1, "heads_kept": 108,
              "heads_total": 108, "weight_sparsity": 0.01, "generate_seconds": 12.0, "sentences": 1500,
              **overrides}
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(record))
    return str(path)


def test_summary_writes_json_png_and_table(tmp_path, capsys):
    paths = [_record(tmp_path, "dense"), _record(tmp_path, "neuroprune", method="neuroprune", bleu=25.0, heads_kept=61)]
    summarize.main(paths + ["--out-json", str(tmp_path / "r.json"), "--out-png", str(tmp_path / "r.png")])
    assert [r["heads_kept"] for r in json.loads((tmp_path / "r.json").read_text())] == [108, 61]
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = capsys.readouterr().out
    assert "neuroprune" in out and "61/108" in out and "25.00" in out


def test_table_and_plot_show_the_length_subset_when_every_record_has_it(tmp_path, capsys):
    subset = {"max_pieces": 40, "sentences": 1301, "bleu": 26.5, "tokenized_bleu": 26.4}
    paths = [_record(tmp_path, "dense", within_max_pieces=subset),
             _record(tmp_path, "neuroprune", within_max_pieces={**subset, "bleu": 24.25})]
    summarize.main(paths + ["--out-json", str(tmp_path / "r.json"), "--out-png", str(tmp_path / "r.png")])
    out = capsys.readouterr().out
    assert "BLEU<=40" in out and "26.50" in out and "24.25" in out and "the 1301 whose source and reference" in out
    assert (tmp_path / "r.png").stat().st_size > 0
    summarize.main([paths[0], _record(tmp_path, "plain"), "--out-json", str(tmp_path / "r2.json"),
                    "--out-png", str(tmp_path / "r2.png")])
    assert "BLEU<=" not in capsys.readouterr().out  # one record without the subset: no column


def test_malformed_record_fails_naming_file_and_field(tmp_path):
    bad = _record(tmp_path, "bad", bleu="high")
    with pytest.raises(SystemExit, match=r"bad.json: field 'bleu'"):
        summarize.main([bad, "--out-json", str(tmp_path / "r.json"), "--out-png", str(tmp_path / "r.png")])


def test_unwritable_output_directory_is_named(tmp_path):
    """An output folder that cannot be created (a file stands in its way) is named, before any work."""
    (tmp_path / "afile").write_text("")
    with pytest.raises(SystemExit, match=r"cannot write to .*afile/plots"):
        summarize.main([_record(tmp_path, "dense"), "--out-json", str(tmp_path / "afile" / "plots" / "r.json"),
                        "--out-png", str(tmp_path / "r.png")])


def test_records_of_two_sparsity_definitions_are_refused(tmp_path):
    """A record of exact zeros and one of the earlier near-zero count cannot share a table: the error names both."""
    from neuroprune.tools.records import load_records

    old, new = tmp_path / "old.json", tmp_path / "new.json"
    base = {"name": "a", "method": "dense", "bleu": 20.0, "heads_kept": 108, "heads_total": 108, "weight_sparsity": 0.1}
    old.write_text(json.dumps(base))
    new.write_text(json.dumps({**base, "name": "b", "sparsity_definition": "exact_zero"}))
    assert len(load_records([old, old])) == 2 and len(load_records([new])) == 1
    with pytest.raises(ValueError, match=r"'near_zero' \(e.g. .*old.json\), 'exact_zero' \(e.g. .*new.json\)"):
        load_records([old, new])


def _three(tmp_path):
    """The main command's three records: the starting dense model, the dense control and the pruned model."""
    return [_record(tmp_path, "dense", bleu=18.28, params={"exported": 2000000}),
            _record(tmp_path, "control", bleu=22.4, params={"exported": 2000000}),
            _record(tmp_path, "neuroprune", method="neuroprune_plus", bleu=21.15, heads_kept=54, weight_sparsity=0.2975,
                    params={"exported": 1500000})]


def _rows(out):
    """The table's data rows (between the rule and the footnotes), as split fields."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if set(line) == {"-"}) + 1
    return [line.split() for line in lines[start:] if not line.startswith("vs control")]


def test_control_rows_keep_their_order_and_show_the_gap_to_the_control(tmp_path, capsys):
    significance = tmp_path / "significance.json"
    significance.write_text(json.dumps({"samples": 1000, "systems": [
        {"name": "control", "bleu": 22.4, "p_value": None}, {"name": "dense", "bleu": 18.28, "p_value": 0.001},
        {"name": "neuroprune", "bleu": 21.15, "p_value": 0.0123}]}))
    summarize.main(_three(tmp_path) + ["--out-json", str(tmp_path / "r.json"), "--out-png", str(tmp_path / "r.png"),
                                       "--control", "control", "--significance", str(significance)])
    rows = _rows(capsys.readouterr().out)
    assert [r[0] for r in rows] == ["dense", "control", "neuroprune"]
    # 18.28 - 22.40 = -4.12 and 21.15 - 22.40 = -1.25, by hand
    assert rows[0][-3:] == ["-4.12", "(p", "0.0010)"] and rows[1][-1] == "(control)"
    assert rows[2][-3:] == ["-1.25", "(p", "0.0123)"] and "1500000" in rows[2] and "54/108" in rows[2]
    assert [r["name"] for r in json.loads((tmp_path / "r.json").read_text())] == ["dense", "control", "neuroprune"]


def test_a_missing_control_is_refused_naming_it_before_anything_is_written(tmp_path):
    dense, _, pruned = _three(tmp_path)
    with pytest.raises(SystemExit, match=r"--control control: no record named 'control' among the records given \(dense, neuroprune\)"):
        summarize.main([dense, pruned, "--out-json", str(tmp_path / "r.json"), "--out-png", str(tmp_path / "r.png"),
                        "--control", "control"])
    assert not (tmp_path / "r.json").exists() and not (tmp_path / "r.png").exists()


def test_significance_against_another_baseline_is_refused(tmp_path):
    significance = tmp_path / "sig.json"
    significance.write_text(json.dumps({"systems": [{"name": "dense", "p_value": None}, {"name": "control", "p_value": 0.5}]}))
    out = ["--out-json", str(tmp_path / "r.json"), "--out-png", str(tmp_path / "r.png")]
    with pytest.raises(SystemExit, match=r"sig.json: its baseline is 'dense', not the control 'control'"):
        summarize.main(_three(tmp_path) + out + ["--control", "control", "--significance", str(significance)])
    with pytest.raises(SystemExit, match=r"--significance needs --control"):
        summarize.main(_three(tmp_path) + out + ["--significance", str(significance)])
