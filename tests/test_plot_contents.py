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
