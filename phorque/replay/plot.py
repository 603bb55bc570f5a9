"""Queue length and instances over time, one line per policy, in one PNG (needs matplotlib:
``pip install phorque[plot]``).

Every policy's curve stays readable. The legend sits outside the axes, to the right, so it
covers no data. Policies often draw the same line (every on-demand policy keeps no instance
while the queue is empty; two policies may launch alike for days): each policy has its own
colour, dash pattern and marker, the markers of each policy are placed at a different offset
along the line, and the lines are drawn widest first, so a line drawn over another leaves the
one under it showing on both sides. Curves that lie on each other most of the time are also
named in the legend (:func:`coinciding`).
"""

from __future__ import annotations

import math
import os
import textwrap
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from phorque.replay.metrics import ReplayResult
from phorque.replay.trace import DAY

#: Curves within this share of the panel's height of each other are drawn on each other.
TOUCH = 0.01
#: Two curves on each other at this share of their common points or more are said to coincide.
COINCIDE = 0.9
#: Characters per line of a legend note.
NOTE_WIDTH = 34
#: The queue panel's symlog threshold.
LINTHRESH = 10.0

_DASHES: tuple[object, ...] = ("-", "--", ":", "-.", (0, (3, 1, 1, 1, 1, 1)), (0, (8, 3)), (0, (2, 3)))
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*")
_MARK_STEP = 0.12  # markers every 12% of the axes' diagonal


class PlotUnavailable(RuntimeError):
    """matplotlib is not installed."""


def require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise PlotUnavailable("--plot needs matplotlib: pip install 'phorque[plot]'") from None


@dataclass(frozen=True)
class LineStyle:
    """How one policy's curves are drawn (matplotlib ``plot`` keywords)."""

    color: str
    linestyle: object
    linewidth: float
    marker: str
    markevery: tuple[float, float]

    def kwargs(self) -> dict[str, object]:
        return {"color": self.color, "linestyle": self.linestyle, "linewidth": self.linewidth,
                "marker": self.marker, "markevery": self.markevery, "markersize": 4.5,
                "markerfacecolor": "none", "markeredgewidth": 1.0}


def line_styles(count: int) -> list[LineStyle]:
    """One style for each of ``count`` curves drawn in that order: all different in colour, dash
    and marker (up to 7, 10 and 10 of them), widest first, markers at staggered offsets."""
    out = []
    for k in range(count):
        width = 1.0 + 1.8 * (count - 1 - k) / max(1, count - 1)
        out.append(LineStyle(color=f"C{k % 10}", linestyle=_DASHES[k % len(_DASHES)], linewidth=round(width, 2),
                             marker=_MARKERS[k % len(_MARKERS)],
                             markevery=(_MARK_STEP * k / max(1, count), _MARK_STEP)))
    return out


def _symlog(y: float) -> float:
    """The queue panel's vertical position of ``y`` (symlog, threshold LINTHRESH, y >= 0)."""
    return y / LINTHRESH if y <= LINTHRESH else 1.0 + math.log10(y / LINTHRESH)


def _at(xs: Sequence[float], ys: Sequence[float], x: float) -> float | None:
    """The step curve's value at ``x`` (the last point at or before it), None outside."""
    if not xs or x < xs[0] or x > xs[-1]:
        return None
    return ys[bisect_right(xs, x) - 1]


def coinciding(curves: Mapping[str, tuple[Sequence[float], Sequence[float]]], log: bool = False,
               touch: float = TOUCH, share: float = COINCIDE) -> list[tuple[str, str, float]]:
    """``(earlier, later, share)`` for each pair of curves (in ``curves``' order) that lie on each
    other (closer than ``touch`` of the panel's height; ``log``: on the symlog queue panel) at
    ``share`` or more of the points where both are defined."""
    shaped = {name: (list(xs), [_symlog(y) if log else y for y in ys]) for name, (xs, ys) in curves.items()}
    values = [y for _, ys in shaped.values() for y in ys]
    if not values:
        return []
    tolerance = max(touch * (max(values) - min(values)), 1e-9)
    names = list(shaped)
    out = []
    for i, first in enumerate(names):
        for second in names[i + 1:]:
            (xa, ya), (xb, yb) = shaped[first], shaped[second]
            grid = sorted(set(xa) | set(xb))
            both = close = 0
            for x in grid:
                a, b = _at(xa, ya, x), _at(xb, yb, x)
                if a is None or b is None:
                    continue
                both += 1
                close += abs(a - b) <= tolerance
            if both and close / both >= share:
                out.append((first, second, close / both))
    return out


def _notes(results: Sequence[ReplayResult]) -> list[str]:
    """Legend lines naming the curves drawn on each other: per panel, each group of policies
    linked by coinciding pairs, with the least share of such a pair."""
    notes = []
    order = [r.policy for r in results]
    for index, panel, log in ((1, "queue", True), (2, "instances", False)):
        curves = {r.policy: ([(t - r.start) / DAY for t in r.series[0]], list(r.series[index])) for r in results}
        group: dict[str, int] = {}
        least: dict[int, float] = {}
        for first, second, part in coinciding(curves, log=log):
            key = group.get(first, group.get(second, len(least)))
            for old in {group.get(first, key), group.get(second, key)} - {key}:
                for name in [n for n, g in group.items() if g == old]:
                    group[name] = key
                least[key] = min(least.get(key, 1.0), least.pop(old))
            group[first] = group[second] = key
            least[key] = min(least.get(key, 1.0), part)
        for key, part in least.items():
            names = [n for n in order if group.get(n) == key]
            text = f"{panel}: {', '.join(names[:-1])} and {names[-1]} ({part:.0%} of the time or more)"
            notes.append(textwrap.fill(text, NOTE_WIDTH, subsequent_indent="  "))
    return notes


def figure(results: Sequence[ReplayResult], title: str = ""):
    """The matplotlib figure of ``results``' queue and instance curves (not saved)."""
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(12, 6.5), layout="constrained")
    handles = []
    for r, style in zip(results, line_styles(len(results)), strict=True):
        times, queued, live = r.series
        days = [(t - r.start) / DAY for t in times]
        top.plot(days, queued, label=r.policy, **style.kwargs())
        (line,) = bottom.plot(days, live, label=r.policy, **style.kwargs())
        handles.append(line)
    top.set_ylabel("queued jobs (mean)")
    top.set_yscale("symlog", linthresh=LINTHRESH)
    bottom.set_ylabel("cloud instances (mean)")
    bottom.set_xlabel("days since the start of the window")
    notes = _notes(results)
    if notes:
        blank = Line2D([], [], linestyle="none")
        handles += [blank] * (len(notes) + 1)
        labels = [r.policy for r in results] + ["drawn on each other:"] + notes
    else:
        labels = [r.policy for r in results]
    # Outside the axes: the legend can never cover a curve.
    fig.legend(handles, labels, loc="outside right upper", fontsize="small", handlelength=3.5)
    if title:
        top.set_title(title)
    for ax in (top, bottom):
        ax.grid(True, alpha=0.3)
    return fig


def plot(results: Sequence[ReplayResult], path: str | os.PathLike[str], title: str = "") -> None:
    """Draw the queue and instance curves of ``results`` into ``path``."""
    fig = figure(results, title)
    import matplotlib.pyplot as plt

    try:
        fig.savefig(os.fspath(path), dpi=110)
    finally:
        plt.close(fig)
