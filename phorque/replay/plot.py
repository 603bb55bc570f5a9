"""Queue length and instances over time, one line per policy, in one PNG (needs matplotlib:
``pip install phorque[plot]``)."""

from __future__ import annotations

import os
from collections.abc import Sequence

from phorque.replay.metrics import ReplayResult
from phorque.replay.trace import DAY


class PlotUnavailable(RuntimeError):
    """matplotlib is not installed."""


def require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise PlotUnavailable("--plot needs matplotlib: pip install 'phorque[plot]'") from None


def plot(results: Sequence[ReplayResult], path: str | os.PathLike[str], title: str = "") -> None:
    """Draw the queue and instance curves of ``results`` into ``path``."""
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(10, 6.5), constrained_layout=True)
    for r in results:
        times, queued, live = r.series
        days = [(t - r.start) / DAY for t in times]
        top.plot(days, queued, label=r.policy, linewidth=0.9)
        bottom.plot(days, live, label=r.policy, linewidth=0.9)
    top.set_ylabel("queued jobs (mean)")
    top.set_yscale("symlog", linthresh=10)
    bottom.set_ylabel("cloud instances (mean)")
    bottom.set_xlabel("days since the start of the window")
    top.legend(loc="upper left", fontsize="small", ncols=min(5, len(results)))
    if title:
        top.set_title(title)
    for ax in (top, bottom):
        ax.grid(True, alpha=0.3)
    fig.savefig(os.fspath(path), dpi=110)
    plt.close(fig)
