"""The ``--plot`` picture keeps every policy's curve readable: the legend covers no data, and
curves drawn on each other have different styles and are named."""

from __future__ import annotations

import dataclasses

from phorque.replay.metrics import ReplayResult
from phorque.replay.plot import coinciding, line_styles
from phorque.replay.trace import DAY


def result(policy: str, queued: list[float], live: list[float]) -> ReplayResult:
    """A result with only what the plot reads: its policy, start and curves (one point a day)."""
    values = {f.name: 0 for f in dataclasses.fields(ReplayResult)
              if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    values.update(policy=policy, trace="t", start=0.0, end=len(queued) * DAY, truncated=False)
    times = [k * DAY for k in range(len(queued))]
    return ReplayResult(**values, series=(times, queued, live))


QUEUE_A = [0, 5, 40, 300, 80, 10, 0, 0]
QUEUE_B = [0, 0, 1, 2, 1, 0, 0, 0]
LIVE_B = [0, 4, 9, 12, 8, 3, 1, 0]


def test_every_style_differs_and_lines_are_drawn_widest_first():
    styles = line_styles(6)
    assert len({(s.color, str(s.linestyle), s.marker, s.markevery[0]) for s in styles}) == 6
    for field in ("color", "linestyle", "marker"):
        assert len({str(getattr(s, field)) for s in styles}) == 6, field
    widths = [s.linewidth for s in styles]
    assert widths == sorted(widths, reverse=True) and widths[0] > widths[-1]


def test_curves_on_each_other_are_found_and_others_are_not():
    days = [0.0, 1.0, 2.0, 3.0, 4.0]
    curves = {"A": (days, [0, 10, 20, 30, 0]), "B": (days, [0, 10, 20, 30, 0]),
              "C": (days, [0, 10, 20, 30.2, 0]), "D": (days, [30, 0, 30, 0, 30])}
    found = {(a, b) for a, b, _ in coinciding(curves)}
    assert found == {("A", "B"), ("A", "C"), ("B", "C")}
    # Different sampling times: compared as the step curves they are.
    steps = {"E": ([0.0, 2.0], [5, 7]), "F": ([0.0, 1.0, 2.0], [5, 5, 7])}
    assert [(a, b) for a, b, _ in coinciding(steps)] == [("E", "F")]
    # On the symlog queue panel 1,000 and 1,010 are on each other; 0 and 8 are not.
    queue = {"G": (days, [1000] * 5), "H": (days, [1010] * 5), "I": (days, [0] * 5), "J": (days, [8] * 5)}
    assert [(a, b) for a, b, _ in coinciding(queue, log=True)] == [("G", "H")]


def test_legend_is_outside_the_axes_and_coinciding_curves_are_told_apart():
    from phorque.replay.plot import figure  # matplotlib is in the test extras

    results = [result("LocalOnly", QUEUE_A, [0] * 8), result("CostAware", QUEUE_B, LIVE_B),
               result("OnDemand", QUEUE_B, LIVE_B), result("LaunchMax", [0] * 8, [80] * 8)]
    fig = figure(results, title="t")
    try:
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        (legend,) = fig.legends
        box = legend.get_window_extent(renderer)
        axes = fig.get_axes()
        assert len(axes) == 2
        for ax in axes:
            assert not box.overlaps(ax.get_window_extent(renderer))
        # The curves drawn on each other are named in the legend...
        texts = [t.get_text() for t in legend.get_texts()]
        assert texts[:4] == ["LocalOnly", "CostAware", "OnDemand", "LaunchMax"]
        notes = " ".join(texts[4:]).replace("\n", " ")
        assert "instances: CostAware and OnDemand" in notes
        assert "queue: CostAware, OnDemand and LaunchMax" not in notes  # LaunchMax's 0 is apart
        # ...and drawn in different styles on both panels.
        for ax in axes:
            lines = {line.get_label(): line for line in ax.get_lines()}
            a, b = lines["CostAware"], lines["OnDemand"]
            assert list(a.get_xdata()) == list(b.get_xdata()) and list(a.get_ydata()) == list(b.get_ydata())
            assert a.get_color() != b.get_color() and a.get_marker() != b.get_marker()
            assert a.get_linestyle() != b.get_linestyle() and a.get_linewidth() > b.get_linewidth()
            assert a.get_markevery() != b.get_markevery()
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)
