"""The frontier sweep's table: one row per run with the figures of its record, controls first, and refusals."""
import json

import pytest

from neuroprune.tools import frontier_table


def _record(tmp_path, name, method, budget, bleu, sparsity, definition="exact_zero", **extra):
    record = {"name": name, "method": method, "budget": budget, "bleu": bleu, "heads_kept": budget or 108, "heads_total": 108,
              "weight_sparsity": sparsity, "sparsity_definition": definition, "param_sparsity": sparsity / 2,
              "weight_sparsity_by_type": {"q": 0.1, "k": 0.2, "v": 0.6, "out": 0.5, "fc1": 0.7, "fc2": 0.8},
              "params": {"exported": 1234567}, **extra}
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(record))
    return str(path)


def test_rows_hold_each_records_figures_in_budget_method_sparsity_order(tmp_path):
    paths = [_record(tmp_path, "np_b_k54_s1", "neuroprune_plus", 54, 24.5, 0.6, unthresholded={"bleu": 24.61}),
             _record(tmp_path, "np_a_k54_s1", "neuroprune_plus", 54, 25.0, 0.3),
             _record(tmp_path, "dense_s1", "dense", None, 27.0, 0.0),
             _record(tmp_path, "gmp_k54_s1", "gmp_michel", 54, 25.5, 0.5)]
    out = tmp_path / "t.md"
    frontier_table.main([*paths, "--out-md", str(out)])
    lines = out.read_text().splitlines()
    assert lines[0].count("|") == lines[1].count("|") == 12
    assert [line.split(" | ")[0][2:] for line in lines[2:]] == ["dense_s1", "gmp_k54_s1", "np_a_k54_s1", "np_b_k54_s1"]
    # q/k/v is the mean of 0.1, 0.2, 0.6; fc1/fc2 of 0.7 and 0.8; all parameters 0.6 / 2
    assert lines[5] == "| np_b_k54_s1 | neuroprune_plus | 54 | 24.50 | 24.61 | 0.600 | 0.300 | 0.500 | 0.750 | 0.300 | 1,234,567 |"
    assert lines[4].split(" | ")[4] == ""  # no score of the stored model in that record


def test_records_without_exact_zeros_are_refused(tmp_path):
    paths = [_record(tmp_path, "a", "dense", None, 27.0, 0.0, definition="near_zero")]
    with pytest.raises(SystemExit, match="record a: its sparsity is 'near_zero', not exact zeros"):
        frontier_table.main([*paths, "--out-md", str(tmp_path / "t.md")])


def test_a_significance_file_adds_its_holm_p_column_by_run_name(tmp_path):
    paths = [_record(tmp_path, "michel_k54_s1", "michel", 54, 26.0, 0.27),
             _record(tmp_path, "gmp_k54_s1", "gmp_michel", 54, 25.5, 0.5),
             _record(tmp_path, "dense_s1", "dense", None, 27.0, 0.0)]
    sig = tmp_path / "sig.json"  # as tools.significance --out writes it; the dense control is not in it
    sig.write_text(json.dumps({"samples": 10, "systems": [
        {"name": "michel_k54_s1", "bleu": 26.0, "p_value": None, "p_holm": None},
        {"name": "gmp_k54_s1", "bleu": 25.5, "p_value": 0.0123, "p_holm": 0.0246}]}))
    out = tmp_path / "t.md"
    frontier_table.main([*paths, "--out-md", str(out), "--significance", str(sig)])
    lines = out.read_text().splitlines()
    assert lines[0].endswith("| exported parameters | p vs michel_k54_s1 (Holm) |")
    assert lines[0].count("|") == lines[1].count("|") == 13
    cells = {line.split(" | ")[0][2:]: line.rsplit("|", 2)[1].strip() for line in lines[2:]}
    assert cells == {"dense_s1": "", "gmp_k54_s1": "0.025", "michel_k54_s1": "baseline"}


def test_a_file_that_is_not_a_significance_output_is_refused_by_flag(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"rows": []}))
    with pytest.raises(SystemExit, match="--significance .*bad.json: not a tools.significance --out file"):
        frontier_table.main([_record(tmp_path, "a", "dense", None, 27.0, 0.0), "--out-md", str(tmp_path / "t.md"),
                             "--significance", str(bad)])
