"""Where the policies stand: the same workloads replayed under every policy and both billings.

    python3 dev.py bench replay_compare [--jobs N] [--out DIR] [--quick]

Scenarios (two clouds, the replay defaults: "cheap" 0.05/h x 8 cores, at most 16 instances, and
"dear" 0.20/h x 8 cores, at most 64; boot 120 s; no budget limit; pbs_sched FIFO; evaluations on
events):

* KTH-SP2, the whole cleaned log (28,476 jobs, 11 months), on 64 local cores (8 x 8);
* HPC2N, four weeks from day 588 of the log (9,549 jobs, offered load 1.46 on 120 cores), on
  120 local cores (15 x 8);
* lublin_256, the whole synthetic trace (10,000 jobs, 89 days), on 256 local cores (32 x 8);

each with hourly billing (charge_time_secs 3600) and per-second billing (0), for LocalOnly,
LaunchMax, OnDemandPlusPlus, OnDemand and CostAware. Prints a Markdown table per scenario (waits
and cost, with changes against LocalOnly and LaunchMax), writes them with the raw figures to
OUT/replay_compare.{md,json} and draws OUT/replay.png (queue and instances over time, hourly
billing). Workloads: the Parallel Workloads Archive (see ../shared/traces/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from phorque.replay import ReplaySettings, replay
from phorque.replay.report import duration
from phorque.replay.swf import read_swf
from phorque.replay.trace import DAY, Window

ROOT = Path(__file__).resolve().parent.parent
TRACES = Path(os.environ.get("PHORQUE_TRACES", ROOT.parent.parent / "shared" / "traces"))
if not TRACES.exists():
    TRACES = Path("/work/shared/traces")
POLICIES = ("LocalOnly", "LaunchMax", "OnDemandPlusPlus", "OnDemand", "CostAware")
SCENARIOS = {
    "KTH-SP2, 64 cores": ("KTH-SP2-1996-2.1-cln.swf.gz", None, None, 8),
    "HPC2N 4 weeks, 120 cores": ("HPC2N-2002-2.1-cln.swf.gz", "588", 28.0, 15),
    "lublin_256, 256 cores": ("lublin_256.swf.gz", None, None, 32),
}
QUICK_DAYS = 7.0
BILLING = {"hourly": 3600, "per second": 0}


def one(task: tuple[str, str, str, str]) -> dict:
    scenario, billing, policy, quick = task
    name, start, days, nodes = SCENARIOS[scenario]
    if quick:
        days = QUICK_DAYS
    trace = read_swf(TRACES / name, Window(start, days))
    settings = ReplaySettings(local_nodes=nodes, local_np=8, samples=300).with_charge(BILLING[billing])
    result = replay(trace, policy, settings)
    row = result.as_dict(timing=True)
    row.update(scenario=scenario, billing=billing, trace_jobs=len(trace.jobs),
               series=[[round((t - result.start) / DAY, 4) for t in result.series[0]],
                       [round(q, 2) for q in result.series[1]], [round(n, 2) for n in result.series[2]]])
    return row


def change(value: float, base: float) -> str:
    if base == 0:
        return "-" if value == 0 else "new"
    return f"{(value - base) / base:+.0%}"


def markdown(rows: list[dict]) -> str:
    out = []
    for scenario in SCENARIOS:
        for billing in BILLING:
            group = {r["policy"]: r for r in rows if r["scenario"] == scenario and r["billing"] == billing}
            if not group:
                continue
            local, launch_max = group["LocalOnly"], group["LaunchMax"]
            out.append(f"\n**{scenario}, {billing} billing** ({local['trace_jobs']:,} jobs)\n")
            out.append("| policy | mean wait | p95 wait | bounded slowdown | cost | instance-hours | "
                       "paid utilization | peak instances | wait vs LocalOnly | cost vs LaunchMax |")
            out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
            for policy in POLICIES:
                r = group[policy]
                out.append(
                    f"| {policy} | {duration(r['mean_wait_secs'])} | {duration(r['p95_wait_secs'])} | "
                    f"{r['mean_bounded_slowdown']:.2f} | {r['cost']:,.0f} | {r['instance_hours']:,.0f} | "
                    f"{r['paid_utilization']:.0%} | {r['peak_instances']} | "
                    f"{change(r['mean_wait_secs'], local['mean_wait_secs'])} | "
                    f"{change(r['cost'], launch_max['cost'])} |")
            unstarted = [f"{p}: {group[p]['unstarted']}" for p in POLICIES if group[p]["unstarted"]]
            if unstarted:
                out.append(f"\nJobs never started (larger than the local cluster, left out of the "
                           f"waits): {', '.join(unstarted)}.")
    return "\n".join(out)


def summary(rows: list[dict]) -> str:
    """One compact table: mean wait / cost for every policy, scenario and billing."""
    columns = [(s, b) for s in SCENARIOS for b in BILLING]
    head = " | ".join(f"{s.split(',')[0]}, {b}" for s, b in columns)
    out = ["| policy | " + head + " |", "|---|" + "---:|" * len(columns)]
    for policy in POLICIES:
        cells = []
        for scenario, billing in columns:
            r = next((r for r in rows if (r["scenario"], r["billing"], r["policy"]) ==
                      (scenario, billing, policy)), None)
            cells.append("-" if r is None else f"{duration(r['mean_wait_secs'])} / {r['cost']:,.0f}")
        out.append(f"| {policy} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def draw(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from phorque.replay.plot import LINTHRESH, line_styles

    styles = dict(zip(POLICIES, line_styles(len(POLICIES)), strict=True))
    fig, axes = plt.subplots(2, len(SCENARIOS), figsize=(16, 6.5), layout="constrained")
    for col, scenario in enumerate(SCENARIOS):
        top, bottom = axes[0][col], axes[1][col]
        for policy in POLICIES:
            r = next((r for r in rows if r["scenario"] == scenario and r["billing"] == "hourly"
                      and r["policy"] == policy), None)
            if r is None:
                continue
            days, queued, live = r["series"]
            top.plot(days, queued, label=policy, **styles[policy].kwargs())
            bottom.plot(days, live, label=policy, **styles[policy].kwargs())
        top.set_title(f"{scenario} (hourly billing)", fontsize="medium")
        top.set_yscale("symlog", linthresh=LINTHRESH)
        top.grid(True, alpha=0.3)
        bottom.grid(True, alpha=0.3)
        bottom.set_xlabel("days")
    axes[0][0].set_ylabel("queued jobs (mean per bin)")
    axes[1][0].set_ylabel("cloud instances (mean per bin)")
    # The styles of phorque-replay --plot: outside the axes, each policy its own dash and marker.
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", fontsize="small", handlelength=3.5)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel replays")
    parser.add_argument("--out", default=str(ROOT / "docs"), help="where the table and plot go")
    parser.add_argument("--quick", action="store_true", help=f"only {QUICK_DAYS:g} days of each trace")
    args = parser.parse_args(argv)
    tasks = [(s, b, p, "quick" if args.quick else "") for s in SCENARIOS for b in BILLING for p in POLICIES]
    began = time.perf_counter()
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        rows = list(pool.map(one, tasks))
    elapsed = time.perf_counter() - began
    table = "Mean wait / cost:\n\n" + summary(rows) + "\n" + markdown(rows)
    print(table)
    slowest = max(rows, key=lambda r: r["sim_secs"])
    print(f"\n{len(rows)} replays in {elapsed:.0f} s ({args.jobs} at a time); slowest: {slowest['policy']} "
          f"on {slowest['scenario']}, {slowest['billing']} billing, {slowest['sim_secs']:.1f} s")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "replay_compare.md").write_text(table.strip() + "\n")
    (out / "replay_compare.json").write_text(json.dumps(
        [{k: v for k, v in r.items() if k != "series"} for r in rows], indent=1) + "\n")
    try:
        draw(rows, out / "replay.png")
        print(f"plot: {out / 'replay.png'}")
    except ImportError:
        print("matplotlib is missing: no plot (pip install 'phorque[plot]')", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
