"""The study's summary over seeds (tools.seed_table), its choice on valid (tools.pick_best), the record
series and the seed-aggregated plot points: expected values worked out by hand or with sacrebleu directly."""
import json
import math

import pytest
import sacrebleu

from neuroprune.tools import pick_best, plots, seed_table
from neuroprune.tools.records import series

REFS = [f"the cat number {i} sat on the mat near door {i % 7}" for i in range(60)]


def _record(name, method, bleu, seed=None, budget=None, subset="test", heads=54, updates=486):
    return {"name": name, "method": method, "bleu": bleu, "heads_kept": heads, "heads_total": 108,
            "weight_sparsity": 0.5 * (108 - heads) / 108, "seed": seed, "budget": budget, "subset": subset,
            "num_updates": updates}


def _write(tmp_path, records, hyps=None):
    paths = []
    for r in records:
        path = tmp_path / f"{r['name']}.json"
        path.write_text(json.dumps(r))
        paths.append(str(path))
    for name, lines in (hyps or {}).items():
        (tmp_path / f"{name}.hyp").write_text("".join(line + "\n" for line in lines))
    (tmp_path / "test.ref").write_text("".join(line + "\n" for line in REFS))
    return paths


@pytest.mark.parametrize("record,expected", [
    (_record("np_strong_k54_s2", "neuroprune", 1, seed=2, budget=54), "np_strong"),
    (_record("dense_s3", "dense", 1, seed=3), "dense"),
    (_record("np_k54_strong", "neuroprune", 1, budget=54), "neuroprune"),  # an old record: no seed field
    (_record("michel_k27_s1", "michel", 1, seed=2, budget=27), "michel"),  # the seed in the name is not the record's
])
def test_series_strips_the_seed_then_the_budget(record, expected):
    assert series(record) == expected


def _damaged(lines, every):
    """Every ``every``-th sentence replaced by unrelated words."""
    return [("completely different words here" if i % every == 0 else line) for i, line in enumerate(lines)]


def test_rows_hold_mean_and_sample_sd_and_the_loss_against_the_control(tmp_path):
    records = [_record(f"np_k54_s{s}", "neuroprune", b, seed=s, budget=54) for s, b in ((1, 20.0), (2, 22.0), (3, 24.0))]
    records += [_record(f"dense_s{s}", "dense", b, seed=s, heads=108) for s, b in ((1, 25.0), (2, 26.0))]
    rows, tests = seed_table.main([*_write(tmp_path, records), "--text-dir", str(tmp_path), "--control", "dense"])
    assert tests == []
    by = {(r["config"], r["budget"]): r for r in rows}
    np_row = by[("np", 54)]
    assert np_row["n"] == 3 and np_row["bleu_mean"] == 22.0
    assert np_row["bleu_std"] == 2.0  # sqrt(((-2)^2 + 0 + 2^2) / 2)
    assert np_row["vs_control"] == -3.5  # 22 - (25 + 26) / 2
    assert by[("dense", None)]["bleu_std"] == pytest.approx(math.sqrt(0.5), abs=0.01)
    assert [r["config"] for r in rows] == ["dense", "np"]  # dense first, then budgets from the largest


def test_one_seed_has_no_spread_rather_than_zero(tmp_path):
    records = [_record("np_k54_s1", "neuroprune", 20.0, seed=1, budget=54), _record("np_k54_s2", "neuroprune", 20.0, seed=2, budget=54),
               _record("michel_k54_s1", "michel", 21.0, seed=1, budget=54)]
    rows, _ = seed_table.main([*_write(tmp_path, records), "--text-dir", str(tmp_path), "--out-tsv", str(tmp_path / "t.tsv"),
                               "--out-md", str(tmp_path / "t.md")])
    by = {r["config"]: r for r in rows}
    assert by["michel"]["bleu_std"] is None and by["np"]["bleu_std"] == 0.0  # two equal seeds: a measured 0
    assert "| michel | 54 | 1 | 21.00 (1 seed) |" in (tmp_path / "t.md").read_text()
    assert "| np | 54 | 2 | 20.00 +- 0.00 |" in (tmp_path / "t.md").read_text()
    tsv = {line.split("\t")[0]: line.split("\t") for line in (tmp_path / "t.tsv").read_text().splitlines()}
    assert tsv["michel"][4] == "" and tsv["np"][4] == "0.0"
    assert tsv["config"][4] == "bleu_std" and tsv["np"][1] == "54"


def test_pooled_bootstrap_uses_the_seeds_both_have_and_finds_a_real_difference(tmp_path):
    good = {s: _damaged(REFS, 10 + s) for s in (1, 2, 3)}
    bad = {s: _damaged(REFS, 2) for s in (1, 2)}
    records = [_record(f"np_k54_s{s}", "neuroprune", 0.0, seed=s, budget=54) for s in good]
    records += [_record(f"dsp_joint_k54_s{s}", "dsp", 0.0, seed=s, budget=54) for s in bad]
    records += [_record("michel_k27_s1", "michel", 0.0, seed=1, budget=27)]  # another budget: not compared
    hyps = {f"np_k54_s{s}": good[s] for s in good} | {f"dsp_joint_k54_s{s}": bad[s] for s in bad}
    _, tests = seed_table.main([*_write(tmp_path, records, hyps), "--text-dir", str(tmp_path), "--compare", "np",
                                "--samples", "200", "--out-json", str(tmp_path / "out.json")])
    assert len(tests) == 1
    test = tests[0]
    assert (test["config"], test["against"], test["seeds"]) == ("np", "dsp_joint", [1, 2])
    pooled_np = sacrebleu.corpus_bleu(good[1] + good[2], [REFS * 2]).score
    pooled_dsp = sacrebleu.corpus_bleu(bad[1] + bad[2], [REFS * 2]).score
    assert test["bleu"] == pytest.approx(pooled_np, abs=0.01) and test["against_bleu"] == pytest.approx(pooled_dsp, abs=0.01)
    assert test["significant"] and test["p_value"] < 0.05
    assert json.loads((tmp_path / "out.json").read_text())["tests"][0]["against"] == "dsp_joint"


def test_bad_input_is_named(tmp_path):
    paths = _write(tmp_path, [_record("np_k54_s1", "neuroprune", 20.0, seed=1, budget=54)])
    with pytest.raises(SystemExit, match="no records of configuration 'dsp'"):
        seed_table.main([*paths, "--text-dir", str(tmp_path), "--compare", "dsp"])
    twice = _write(tmp_path, [_record("np_k54_s1", "neuroprune", 20.0, seed=1, budget=54)])
    (tmp_path / "copy.json").write_text((tmp_path / "np_k54_s1.json").read_text())
    with pytest.raises(SystemExit, match="repeats seed 1 of np at K 54"):
        seed_table.main([*twice, str(tmp_path / "copy.json"), "--text-dir", str(tmp_path)])
    (tmp_path / "noseed.json").write_text(json.dumps({k: v for k, v in _record("x", "dense", 1.0).items() if k != "seed"}))
    with pytest.raises(SystemExit, match="field 'seed' missing"):
        seed_table.main([str(tmp_path / "noseed.json"), "--text-dir", str(tmp_path)])


def test_pick_best_takes_the_highest_valid_bleu_and_the_first_of_equals(tmp_path, capsys):
    records = [_record(n, "neuroprune", b, subset="valid") for n, b in (("weak", 20.0), ("strong", 21.5), ("mid", 21.5))]
    assert pick_best.main([*_write(tmp_path, records), "--out", str(tmp_path / "c.json")]) == "strong"
    assert capsys.readouterr().out.strip() == "strong"
    assert json.loads((tmp_path / "c.json").read_text())["candidates"] == {"weak": 20.0, "strong": 21.5, "mid": 21.5}


def test_pick_best_refuses_test_records_and_mixed_splits(tmp_path):
    (tmp_path / "t").mkdir(), (tmp_path / "m").mkdir()
    test = _write(tmp_path / "t", [_record("a", "dsp", 1.0), _record("b", "dsp", 2.0)])
    with pytest.raises(SystemExit, match="test-split records"):
        pick_best.main(test)
    assert pick_best.main([*test, "--allow-test"]) == "b"
    mixed = _write(tmp_path / "m", [_record("a", "dsp", 1.0, subset="valid"), _record("b", "dsp", 2.0)])
    with pytest.raises(SystemExit, match="different splits"):
        pick_best.main(mixed)


def test_plot_points_average_the_seeds_of_a_budget_and_keep_seedless_runs_apart():
    records = [_record("np_k54_s1", "neuroprune", 20.0, seed=1, budget=54, heads=54),
               _record("np_k54_s2", "neuroprune", 22.0, seed=2, budget=54, heads=56),
               _record("np_k27_s1", "neuroprune", 15.0, seed=1, budget=27, heads=27)]
    points = plots.seed_points(records, "heads_kept")
    assert points[0] == (27, 15.0, 0.0)
    assert points[1][:2] == (55, 21.0) and points[1][2] == pytest.approx(math.sqrt(2))
    seedless = [_record("a", "magnitude", 10.0, budget=54), _record("b", "magnitude", 12.0, budget=54)]
    assert len(plots.seed_points(seedless, "weight_sparsity")) == 2


def test_equal_pooled_scores_are_not_called_a_difference(tmp_path):
    same = _damaged(REFS, 3)
    records = [_record("np_k54_s1", "neuroprune", 0.0, seed=1, budget=54), _record("michel_k54_s1", "michel", 0.0, seed=1, budget=54)]
    _, tests = seed_table.main([*_write(tmp_path, records, {"np_k54_s1": same, "michel_k54_s1": same}), "--text-dir",
                                str(tmp_path), "--compare", "np", "--samples", "100"])
    assert tests[0]["bleu"] == tests[0]["against_bleu"] and not tests[0]["significant"]


def test_grid_puts_each_configuration_at_its_budget_with_its_own_spread(tmp_path):
    bleus = {("np", 81): (26.0, 28.0), ("np", 27): (20.0,), ("michel", 81): (27.0, 27.0, 30.0)}
    records = [_record(f"{c}_k{k}_s{s}", c, b, seed=s, budget=k) for (c, k), bs in bleus.items() for s, b in enumerate(bs, 1)]
    records += [_record("dense_s1", "dense", 29.0, seed=1, heads=108)]
    seed_table.main([*_write(tmp_path, records), "--text-dir", str(tmp_path), "--control", "dense", "--grid", "np,michel",
                     "--out-md", str(tmp_path / "t.md")])
    lines = (tmp_path / "t.md").read_text().splitlines()
    assert lines[0] == "| K | np | michel | dense |"
    cells = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]] for line in lines[2:5]}
    assert cells["108"] == ["", "", "29.00 (1 seed)"]  # the control on its own row, at its heads kept
    assert cells["81"] == ["27.00 +- 1.41 (2)", "28.00 +- 1.73 (3)", ""]  # sd sqrt(2), sqrt(3): worked by hand
    assert cells["27"] == ["20.00 (1 seed)", "", ""]  # michel has no K 27 run: an empty cell, not a zero
    assert lines[5] == ""  # then the per-configuration table
    with pytest.raises(SystemExit, match="--grid.*'dsp'"):
        seed_table.main([*_write(tmp_path, records), "--text-dir", str(tmp_path), "--grid", "np,dsp"])


def test_each_pair_is_tested_once_and_marked_only_after_holm_over_its_family(tmp_path, monkeypatch):
    """Fixed p-values per pair of runs (the bootstrap replaced; each run's hypotheses are its name), so that the
    adjusted values can be worked by hand."""
    p_of = {("dsp_k54_s1", "michel_k54_s1"): 0.01, ("dense_s1", "michel_k54_s1"): 0.001, ("np_k54_s1", "michel_k54_s1"): 0.02,
            ("dsp_k54_s1", "np_k54_s1"): 0.03, ("dense_s1", "np_k54_s1"): 0.04,
            ("dsp_k27_s1", "np_k27_s1"): 0.3, ("dense_s1", "np_k27_s1"): 0.04}
    monkeypatch.setattr(seed_table, "paired_bootstrap", lambda systems, refs, samples: [
        {"bleu": 10.0}, {"bleu": 20.0, "p_value": p_of[tuple(seeds[0][0] for seeds in systems.values())]}])
    records = [_record(f"{c}_k{k}_s1", c, 1.0, seed=1, budget=k) for c, k in (("np", 54), ("dsp", 54), ("michel", 54), ("np", 27), ("dsp", 27))]
    records += [_record("dense_s1", "dense", 1.0, seed=1, heads=108)]
    args = [*_write(tmp_path, records, {r["name"]: [r["name"]] * len(REFS) for r in records}), "--text-dir", str(tmp_path),
            "--compare", "np,michel", "--control", "dense", "--out-md", str(tmp_path / "t.md"), "--overwrite"]
    _, tests = seed_table.main(args)
    got = {(t["budget"], t["config"], t["against"]): (round(t["p_holm"], 9), t["family_size"], t["significant"]) for t in tests}
    # K 54, five pairs (np and michel once): sorted 0.001 x 5 = 0.005, 0.01 x 4 = 0.04, 0.02 x 3 = 0.06,
    # 0.03 x 2 = 0.06, 0.04 x 1 raised to 0.06; K 27: 0.04 x 2 = 0.08, 0.3 x 1 = 0.3
    assert got == {(54, "michel", "dense"): (0.005, 5, True), (54, "michel", "dsp"): (0.04, 5, True),
                    (54, "michel", "np"): (0.06, 5, False), (54, "np", "dsp"): (0.06, 5, False),
                    (54, "np", "dense"): (0.06, 5, False), (27, "np", "dsp"): (0.3, 2, False),
                    (27, "np", "dense"): (0.08, 2, False)}
    md = (tmp_path / "t.md").read_text()
    assert "| 54 | michel | np | 1 | 20.00 | 10.00 | 0.0200 | 0.0600 | no |" in md and "adjusted over all tests at one budget" in md
    _, tests = seed_table.main(args + ["--family", "all"])  # one family of 7: 0.001 x 7 = 0.007, then 0.01 x 6 = 0.06
    assert {t["family_size"] for t in tests} == {7} and [t["significant"] for t in tests].count(True) == 1


def test_pairs_test_only_the_pairs_given_on_their_shared_seeds_with_holm_over_the_pairs(tmp_path):
    """Two methods at matched sparsity: A against B and C against B, never A against C; pooled BLEUs recomputed
    with sacrebleu on the concatenated seeds, and Holm over two tests worked by hand."""
    hyps = {f"a_k54_s{s}": _damaged(REFS, 10 + s) for s in (1, 2)}
    hyps |= {f"b_k54_s{s}": _damaged(REFS, 2) for s in (1, 2, 3)}
    hyps |= {f"c_k54_s{s}": _damaged(REFS, 3 + s) for s in (1, 2, 3)}
    hyps |= {"a_k27_s1": _damaged(REFS, 5)}  # b has no K 27 run: no test there
    records = [_record(n, n[0], 0.0, seed=int(n[-1]), budget=int(n.split("_k")[1].split("_")[0])) for n in hyps]
    _, tests = seed_table.main([*_write(tmp_path, records, hyps), "--text-dir", str(tmp_path), "--pairs", "a:b,c:b", "--samples", "200"])
    assert [(t["budget"], t["config"], t["against"], t["seeds"]) for t in tests] == [(54, "a", "b", [1, 2]), (54, "c", "b", [1, 2, 3])]
    pooled_a = sacrebleu.corpus_bleu(hyps["a_k54_s1"] + hyps["a_k54_s2"], [REFS * 2]).score
    pooled_b = sacrebleu.corpus_bleu(hyps["b_k54_s1"] + hyps["b_k54_s2"], [REFS * 2]).score
    assert tests[0]["bleu"] == pytest.approx(pooled_a, abs=0.01) and tests[0]["against_bleu"] == pytest.approx(pooled_b, abs=0.01)
    low, high = sorted(t["p_value"] for t in tests)
    assert sorted(t["p_holm"] for t in tests) == pytest.approx([min(1.0, 2 * low), max(min(1.0, 2 * low), high)])
    assert {t["family_size"] for t in tests} == {2}
    with pytest.raises(SystemExit, match="--pairs: 'a' is not A:B"):
        seed_table.main([*_write(tmp_path, records, hyps), "--text-dir", str(tmp_path), "--pairs", "a"])
    with pytest.raises(SystemExit, match="--pairs.*no records of configuration 'z'"):
        seed_table.main([*_write(tmp_path, records, hyps), "--text-dir", str(tmp_path), "--pairs", "a:z"])
