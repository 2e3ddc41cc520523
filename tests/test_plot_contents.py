"""What each plot draws, read back from the matplotlib figure, against values worked out by hand from the
records of test_plots (dense 6/6 heads, np_a 4 and np_b 5 heads, dsp 4 heads; sparsity 0.01/0.30/0.20/0.10)."""
import pytest

from neuroprune.tools import plots

from .test_plots import records  # noqa: F401  (the fixture)


@pytest.fixture
def draw(records):  # noqa: F811
    """``draw(kind, *flags)``: the figure of ``kind`` for the fixture records; closed after the test."""
    plt, figures = plots.pyplot(), []

    def make(kind, *flags):
        args = plots.parse_args([kind, *records, "--out", "unused.png", *flags])
        figures.append(plots.DRAW[kind](plt, plots.load_records(records), args))
        return figures[-1]

    yield make
    for fig in figures:
        plt.close(fig)


def test_bleu_vs_heads_draws_each_run_at_its_heads_and_bleu(draw):
    lines = {line.get_label(): line for line in draw("bleu-vs-heads").axes[0].get_lines()}
    assert list(lines["neuroprune"].get_xdata()) == [4, 5] and list(lines["neuroprune"].get_ydata()) == [19.5, 19.2]
    assert list(lines["dsp"].get_xdata()) == [4] and list(lines["dense"].get_xdata()) == [6]
    assert list(lines["dense (20.00)"].get_ydata()) == [20.0, 20.0]


def test_frontier_keeps_the_runs_within_tolerance_and_their_pareto_points(draw):
    """At 1 BLEU below dense, dsp (17.0) drops out; np_b (5 heads, 0.20) is beaten by np_a (4 heads, 0.30)."""
    lines = {line.get_label(): line for line in draw("frontier", "--bleu-tolerance", "1").axes[0].get_lines()}
    assert set(lines) == {"neuroprune (1 Pareto-optimal of 2)", "dense (1 Pareto-optimal of 1)"}
    front = lines["neuroprune (1 Pareto-optimal of 2)"]
    assert list(front.get_xdata()) == [4] and list(front.get_ydata()) == [0.30]
    assert len(draw("frontier", "--bleu-tolerance", "3").axes[0].get_lines()) == 3  # dsp back in


def test_head_map_shows_each_records_masks(draw):
    fig = draw("head-map")
    grids = [ax.get_images()[0].get_array().tolist() for ax in fig.axes]
    assert grids == [[[1, 1]] * 3, [[1, 1], [0, 1], [1, 0]], [[1, 1], [1, 1], [1, 0]], [[1, 1], [0, 1], [1, 0]]]
    assert [ax.get_title() for ax in fig.axes][:2] == ["dense\n6/6 heads kept", "np_a (neuroprune)\n4/6 heads kept"]


def test_ffn_degrees_draws_each_histogram_zoomed_to_the_occupied_bins(draw):
    """Occupied bins span degrees 0 to 8 over all records, so the view is that plus 5 % + 1 on each side."""
    ax = draw("ffn-degrees").axes[0]
    steps = [(list(p.get_data().values), list(p.get_data().edges)) for p in ax.patches]
    assert [values for values, _ in steps] == [[0, 0, 0, 0, 0, 0, 0, 6], [1, 0, 0, 1, 0, 0, 0, 4],
                                               [2, 0, 1, 0, 0, 0, 0, 3], [0, 0, 0, 0, 0, 0, 0, 6]]
    assert all(edges == list(range(9)) for _, edges in steps)
    assert ax.get_xlim() == pytest.approx((-1.4, 9.4))


def _front_record(tmp_path, name, method, bleu, sparsity, exported, seed=None):
    import json

    record = {"name": name, "method": method, "bleu": bleu, "heads_kept": 54, "heads_total": 108, "weight_sparsity": sparsity,
              "params": {"exported": exported}, "seed": seed}
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(record))
    return str(path)


def test_fronts_join_each_methods_pareto_points(tmp_path):
    """Two methods x 4 configurations (one with two seeds, averaged) and a dense reference. By hand, BLEU vs
    sparsity (both higher is better): np keeps (0.9, 10) (0.6, 24) (0.4, 25) and drops (0.5, 23); gmp's two seeds of
    g2 average to (0.5, 24), which beats g1 (0.3, 23); g3 (0.7, 20) stays. Parameters (fewer is better) rank the same."""
    recs = [_front_record(tmp_path, "dense", "dense", 27.0, 0.0, 100),
            _front_record(tmp_path, "n1", "np", 25.0, 0.4, 60), _front_record(tmp_path, "n2", "np", 23.0, 0.5, 50),
            _front_record(tmp_path, "n3", "np", 24.0, 0.6, 40), _front_record(tmp_path, "n4", "np", 10.0, 0.9, 10),
            _front_record(tmp_path, "g1", "gmp", 23.0, 0.3, 70), _front_record(tmp_path, "g2_s1", "gmp", 23.0, 0.45, 55, seed=1),
            _front_record(tmp_path, "g2_s2", "gmp", 25.0, 0.55, 45, seed=2), _front_record(tmp_path, "g3", "gmp", 20.0, 0.7, 30)]
    plt = plots.pyplot()
    for kind, xs in (("sparsity-front", {"np": [0.9, 0.6, 0.4], "gmp": [0.7, 0.5]}),
                     ("params-front", {"np": [10, 40, 60], "gmp": [30, 50]})):
        fig = plots.DRAW[kind](plt, plots.load_records(recs), plots.parse_args([kind, *recs, "--out", "x.png"]))
        lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
        assert list(lines["np (3 Pareto of 4)"].get_xdata()) == pytest.approx(xs["np"])
        assert list(lines["np (3 Pareto of 4)"].get_ydata()) == [10.0, 24.0, 25.0]
        assert list(lines["gmp (2 Pareto of 3)"].get_xdata()) == pytest.approx(xs["gmp"])
        assert list(lines["gmp (2 Pareto of 3)"].get_ydata()) == [20.0, 24.0]
        assert list(lines["dense (27.00)"].get_ydata()) == [27.0, 27.0]
        plt.close(fig)


def test_budget_keeps_that_budgets_records_and_the_budgetless_references():
    """By hand: at 54, n81 (another budget) and theta (no budget, not a reference method) go; dense stays."""
    records = [{"name": "dense", "method": "dense"}, {"name": "n54", "method": "np", "budget": 54},
               {"name": "n81", "method": "np", "budget": 81}, {"name": "theta", "method": "np_theta"}]
    assert plots.at_budget(records, 54, ["dense", "michel"]) == [0, 1]
    assert plots.at_budget(records, 81, ["michel"]) == [2]
    with pytest.raises(ValueError, match="--budget 27: no record has that budget"):
        plots.at_budget(records, 27, ["dense"])


def test_no_two_plot_colours_look_alike():
    """Distinct names are not enough: darkorange beside l1's C1 or slategray beside C7 read as one line. Every
    pair of the fixed and spare colours (and the dense line's black) is at least 0.2 apart in RGB."""
    import itertools

    from matplotlib.colors import to_rgb

    colours = {*plots.METHOD_COLOURS.values(), *plots.EXTRA_COLOURS, "black"}
    distance = lambda a, b: sum((x - y) ** 2 for x, y in zip(to_rgb(a), to_rgb(b))) ** 0.5  # noqa: E731
    close = [(a, b) for a, b in itertools.combinations(sorted(colours), 2) if distance(a, b) < 0.2]
    assert not close


def test_every_method_of_a_front_has_its_own_colour(tmp_path):
    """Ten methods that the fixed colours do not name (the sweep's gmp_michel, magnitude+ft@michel, ...): more than
    the six colours the name hash picks from, so two would share one; each line must have its own, and a method with
    a fixed colour keeps it."""
    names = [f"method_{i}" for i in range(10)] + ["l1"]
    recs = [_front_record(tmp_path, n, n, 20.0 + i, 0.5, 100) for i, n in enumerate(names)]
    plt = plots.pyplot()
    fig = plots.DRAW["sparsity-front"](plt, plots.load_records(recs), plots.parse_args(["sparsity-front", *recs, "--out", "x.png"]))
    colours = {line.get_label().split(" ")[0]: line.get_color() for line in fig.axes[0].get_lines() if not line.get_label().startswith("_")}
    plt.close(fig)
    assert set(colours) == set(names)
    assert len(set(colours.values())) == len(names) and colours["l1"] == "C1"
