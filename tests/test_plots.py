"""The plot tool: every kind writes a PNG from records alone; bad records, no dense run and bad outputs fail clearly."""
import json

import pytest

from neuroprune.tools import plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
LABELS = ["enc0.self", "dec0.self", "dec0.cross"]


def _record(tmp_path, name, method, bleu, masks, sparsity, counts):
    """A small evaluation record with a topology section (3 modules of 2 heads, 8 degree bins)."""
    record = {
        "name": name, "method": method, "bleu": bleu, "heads_kept": sum(map(sum, masks)), "heads_total": 6,
        "weight_sparsity": sparsity,
        "topology": {
            "head_masks": [{"module": f"m{i}", "label": label, "mask": mask} for i, (label, mask) in enumerate(zip(LABELS, masks))],
            "ffn": {"degree_std": 1.5, "histogram": {"edges": [float(e) for e in range(9)], "counts": counts}},
        },
    }
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(record))
    return str(path)


@pytest.fixture
def records(tmp_path):
    full, half = [[1, 1]] * 3, [[1, 1], [0, 1], [1, 0]]
    return [
        _record(tmp_path, "dense", "dense", 20.0, full, 0.01, [0, 0, 0, 0, 0, 0, 0, 6]),
        _record(tmp_path, "np_a", "neuroprune", 19.5, half, 0.30, [1, 0, 0, 1, 0, 0, 0, 4]),
        _record(tmp_path, "np_b", "neuroprune", 19.2, [[1, 1], [1, 1], [1, 0]], 0.20, [2, 0, 1, 0, 0, 0, 0, 3]),
        _record(tmp_path, "dsp_a", "dsp", 17.0, half, 0.10, [0, 0, 0, 0, 0, 0, 0, 6]),
    ]


@pytest.mark.parametrize("kind", ["bleu-vs-heads", "bleu-vs-sparsity", "frontier", "sparsity-front", "head-map", "ffn-degrees"])
def test_each_kind_writes_a_png(tmp_path, records, kind):
    out = tmp_path / "plots" / f"{kind}.png"
    plots.main([kind, *records, "--out", str(out), "--title", "tiny fixture"])
    assert out.read_bytes()[:8] == PNG_MAGIC


def test_a_method_has_the_same_colour_in_every_plot(records):
    """The frontier drops methods (here DSP, below the tolerance): colours must not shift with them."""
    loaded = plots.load_records(records)
    plt = plots.pyplot()
    args = plots.parse_args(["frontier", *records, "--out", "unused.png"])
    colours = []
    for draw, subset in ((plots.draw_bleu_vs_heads, loaded), (plots.draw_frontier, loaded),
                         (plots.draw_bleu_vs_heads, [r for r in loaded if r["method"] != "neuroprune"])):
        fig = draw(plt, subset, args)
        colours.append({line.get_label().split(" ")[0]: line.get_color() for line in fig.axes[0].get_lines()
                        if line.get_linestyle() != "--"})  # not the dense reference line
        plt.close(fig)
    assert colours[0]["neuroprune"] == colours[1]["neuroprune"] == "C0" and colours[0]["dsp"] == colours[2]["dsp"] == "C2"
    assert colours[0]["dense"] == colours[1]["dense"] == "black" and "dsp" not in colours[1]
    assert plots.colour("movement") in {f"C{i}" for i in range(4, 10)}  # clear of the five fixed colours


def test_bleu_vs_sparsity_draws_each_method_through_its_records_in_sparsity_order(records):
    """np_b (0.20) comes before np_a (0.30) by sparsity, the opposite of their order by heads kept."""
    plt = plots.pyplot()
    fig = plots.draw_bleu_vs_sparsity(plt, plots.load_records(records), None)
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    plt.close(fig)
    assert list(lines["neuroprune"].get_xdata()) == [0.20, 0.30] and list(lines["neuroprune"].get_ydata()) == [19.2, 19.5]
    assert list(lines["dsp"].get_xdata()) == [0.10] and lines["dense (20.00)"].get_linestyle() == "--"


def test_pareto_keeps_runs_no_other_run_beats_on_both_heads_and_sparsity():
    """b (more heads, less sparsity than a) is dominated; c (fewer heads, less sparsity) is not; ties keep the sparser."""
    runs = [{"name": n, "heads_kept": h, "weight_sparsity": s}
            for n, h, s in (("a", 4, 0.3), ("b", 5, 0.2), ("c", 3, 0.25), ("d", 4, 0.1), ("e", 6, 0.5))]
    assert [r["name"] for r in plots.pareto(runs)] == ["c", "a", "e"]


def test_frontier_prints_how_many_runs_are_within_tolerance(tmp_path, records, capsys):
    plots.main(["frontier", *records, "--out", str(tmp_path / "f.png"), "--bleu-tolerance", "1.0"])
    assert "frontier: 3 of 4 records within 1 BLEU of dense (20.00)" in capsys.readouterr().out


def test_frontier_without_dense_record_fails_clearly(tmp_path, records):
    with pytest.raises(SystemExit, match=r"no dense record \(method 'dense'\)"):
        plots.main(["frontier", *records[1:], "--out", str(tmp_path / "f.png")])


def test_record_without_topology_fails_naming_file_and_field(tmp_path, records):
    record = json.load(open(records[1]))
    del record["topology"]
    (tmp_path / "np_a.json").write_text(json.dumps(record))
    with pytest.raises(SystemExit, match=r"np_a.json: field 'topology.head_masks' missing"):
        plots.main(["head-map", *records, "--out", str(tmp_path / "m.png")])
    with pytest.raises(SystemExit, match=r"np_a.json: field 'topology.ffn.histogram.edges' missing"):
        plots.main(["ffn-degrees", *records, "--out", str(tmp_path / "d.png")])
    plots.main(["bleu-vs-heads", *records, "--out", str(tmp_path / "b.png")])  # needs no topology


def test_bad_json_and_bad_histogram_fail_naming_the_file(tmp_path, records):
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(SystemExit, match=r"broken.json: not a readable JSON record"):
        plots.main(["bleu-vs-heads", records[0], str(tmp_path / "broken.json"), "--out", str(tmp_path / "b.png")])
    record = json.load(open(records[0]))
    record["topology"]["ffn"]["histogram"]["counts"].append(1)
    (tmp_path / "dense.json").write_text(json.dumps(record))
    with pytest.raises(SystemExit, match=r"dense.json: field 'topology.ffn.histogram' needs one more edge than counts"):
        plots.main(["ffn-degrees", *records, "--out", str(tmp_path / "d.png")])


def test_unwritable_output_directory_is_named(tmp_path, records):
    """A folder that cannot be created (a file stands in its way) is named; tests may run as root."""
    (tmp_path / "some_file").write_text("")
    with pytest.raises(SystemExit, match=r"--out: cannot write to .*some_file/sub"):
        plots.main(["bleu-vs-heads", *records, "--out", str(tmp_path / "some_file" / "sub" / "plot.png")])
