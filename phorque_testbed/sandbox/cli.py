"""``phorque-sandbox``: create, run and look at a sandbox Torque cluster.

    phorque-sandbox init DIR [--nodes N] [--np M] [--gpus G] [--mem-mb MB] [--properties P,Q]
                             [--server NAME] [settings]
    phorque-sandbox start DIR [--speed X] [--foreground]
    phorque-sandbox stop DIR
    phorque-sandbox status DIR
    phorque-sandbox configure DIR [settings]
    phorque-sandbox mom DIR NODE up|down
    phorque-sandbox fault DIR [COMMAND MODE [--count N]] [--clear]

Settings: ``--speed X``, ``--boot-delay SECS``, ``--cloud-endpoint URL`` (cloud-linked boots;
``--fixed-boot`` goes back to fixed delays), ``--cloud-region R``, ``--scheduler fifo|strict``,
``--default-runtime SECS``, ``--keep-completed SECS``, ``--mom-list-delay SECS``,
``--obit-delay SECS``, ``--sched-cycle SECS``, ``--mom-status-interval SECS``,
``--delete-infeasible yes|no``.
"""

from __future__ import annotations

import argparse
import sys
import time

from phorque_testbed.sandbox import cluster, faults, server
from phorque_testbed.sandbox.engine import Engine
from phorque_testbed.sandbox.layout import Layout
from phorque_testbed.sandbox.nodeattrs import state_words
from phorque_testbed.sandbox.server import server_running
from phorque_testbed.sandbox.store import Session

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text}")
    return value


def _non_negative(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text}")
    return value


def _settings_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("settings")
    group.add_argument("--speed", type=_positive, help="run job times and boot delays X times faster")
    group.add_argument("--boot-delay", type=_non_negative, metavar="SECS",
                       help="seconds a node created with qmgr takes to come up (default 30)")
    group.add_argument("--cloud-endpoint", metavar="URL",
                       help="boot a qmgr-created node when the EC2 instance with its DNS name has"
                            " existed for the boot delay (looked up at this endpoint)")
    group.add_argument("--fixed-boot", action="store_true",
                       help="boot qmgr-created nodes after the fixed boot delay (the default)")
    group.add_argument("--cloud-region", metavar="REGION", help="region for the EC2 endpoint")
    group.add_argument("--scheduler", choices=("fifo", "strict"),
                       help="fifo: skip jobs that do not fit (pbs_sched); strict: stop at them")
    group.add_argument("--default-runtime", type=_non_negative, metavar="SECS",
                       help="run time of a job without #SANDBOX runtime= (default 10)")
    group.add_argument("--keep-completed", type=_non_negative, metavar="SECS",
                       help="how long completed jobs stay in qstat and server_priv/jobs (300)")
    group.add_argument("--mom-list-delay", type=_non_negative, metavar="SECS",
                       help="a new node is down,offline,MOM-list-not-sent this long (5; real ~10)")
    group.add_argument("--obit-delay", type=_non_negative, metavar="SECS",
                       help="a job's E record comes this long after it ends (8, the mom's obit)")
    group.add_argument("--sched-cycle", type=_non_negative, metavar="SECS",
                       help="pbs_sched's periodic cycle, re-saving queued jobs' files (10; 0: off)")
    group.add_argument("--mom-status-interval", type=_non_negative, metavar="SECS",
                       help="resources_used is as of the moms' last status, sent this often (45)")
    group.add_argument("--delete-infeasible", choices=("yes", "no"),
                       help="pbs_sched deletes jobs no node could ever hold (yes, as pbs_sched)")


def _settings(args: argparse.Namespace) -> dict[str, object]:
    found: dict[str, object] = {}
    for option in ("speed", "boot_delay", "cloud_region", "scheduler", "default_runtime",
                   "keep_completed", "mom_list_delay", "obit_delay", "sched_cycle",
                   "mom_status_interval"):
        value = getattr(args, option, None)
        if value is not None:
            found[option] = value
    if getattr(args, "delete_infeasible", None) is not None:
        found["delete_infeasible"] = 1 if args.delete_infeasible == "yes" else 0
    if getattr(args, "cloud_endpoint", None):
        found["cloud_endpoint"] = args.cloud_endpoint
        found["boot_mode"] = "cloud"
    if getattr(args, "fixed_boot", False):
        found["boot_mode"] = "fixed"
    return found


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="phorque-sandbox", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="action", required=True)
    p = sub.add_parser("init", help="create a sandbox cluster in DIR")
    p.add_argument("dir")
    p.add_argument("--nodes", type=int, default=2, help="static nodes (default 2)")
    p.add_argument("--np", type=int, default=4, help="cores per static node (default 4)")
    p.add_argument("--server", default=None, help="server name (default: this host's name)")
    p.add_argument("--properties", default="", help="comma-separated properties of the static nodes")
    p.add_argument("--gpus", type=int, default=0,
                   help="GPUs per static node (qmgr's gpus=; default 0)")
    p.add_argument("--mem-mb", type=int, default=0, metavar="MB",
                   help="memory per static node, as its pbs_mom reports it (default 2048 per core)")
    _settings_options(p)
    p = sub.add_parser("start", help="start the server (pbs_server) of DIR")
    p.add_argument("dir")
    p.add_argument("--speed", type=_positive)
    p.add_argument("--foreground", action="store_true", help="serve in this process")
    p = sub.add_parser("stop", help="stop the server: commands fail as with pbs_server down")
    p.add_argument("dir")
    p = sub.add_parser("status", help="an overview of DIR")
    p.add_argument("dir")
    p = sub.add_parser("configure", help="change settings of DIR")
    p.add_argument("dir")
    _settings_options(p)
    p = sub.add_parser("mom", help="stop or restart a node's pbs_mom (a testing aid)")
    p.add_argument("dir")
    p.add_argument("node")
    p.add_argument("state", choices=("up", "down"))
    p = sub.add_parser("fault", help="make the next calls of a command fail (a testing aid)")
    p.add_argument("dir")
    p.add_argument("command", nargs="?", choices=("qsub", "qstat", "qdel", "pbsnodes", "qmgr", "qrerun"))
    p.add_argument("mode", nargs="?", choices=faults.MODES)
    p.add_argument("--count", type=int, default=None, help="calls affected (default: all)")
    p.add_argument("--clear", action="store_true", help="remove every injected fault")
    return parser


def _require(layout: Layout) -> None:
    if not layout.exists():
        raise SystemExit(f"phorque-sandbox: no sandbox cluster in {layout.root}"
                         " (create one with: phorque-sandbox init DIR)")


def _configure(layout: Layout, settings: dict[str, object]) -> None:
    with Session(layout) as session:
        engine = Engine(session)
        if server_running(layout):
            engine.advance(time.time())
        for key, value in settings.items():
            session.set(key, value)
        engine.mark_dirty()


def status_text(layout: Layout) -> str:
    """A readable overview of a cluster: server, settings, nodes and jobs."""
    up = server_running(layout)
    with Session(layout) as session:
        engine = Engine(session)
        now = engine.advance(time.time()) if up else time.time()
        s = session.settings()
        nodes = engine.db.execute("SELECT * FROM nodes ORDER BY seq").fetchall()
        used = dict(engine.db.execute("SELECT node, COUNT(*) FROM alloc GROUP BY node").fetchall())
        jobs = engine.db.execute("SELECT * FROM jobs ORDER BY seq, idx").fetchall()
        templates = {r["seq"]: engine.template_state(r) for r in jobs if r["kind"] == "template"}
    boot = (f"cloud-linked to {s['cloud_endpoint']} ({s['boot_delay']} s after launch)"
            if s["boot_mode"] == "cloud" else f"after {s['boot_delay']} s")
    pid = server.server_pid(layout) if up else None
    lines = [
        f"Sandbox cluster {layout.root}",
        f"  server {s['server_name']}: " + (f"up (pid {pid})" if up else "DOWN (start it with:"
                                            f" phorque-sandbox start {layout.root})"),
        f"  speed x{float(s['speed']):g}, scheduler {s['scheduler']}"
        f"{'' if s['scheduling'] == '1' else ' (scheduling=false)'}, new nodes boot {boot}",
        f"  default job run time {s['default_runtime']} s, keep_completed {s['keep_completed']} s",
        "",
        f"{'NODE':<24} {'STATE':<22} {'NP':>4} {'USED':>5} {'GPUS':>4}  NOTE",
    ]
    for node in nodes:
        state = ",".join(state_words(node, used.get(node["name"], 0), now))
        lines.append(f"{node['name']:<24} {state:<22} {node['np']:>4}"
                     f" {used.get(node['name'], 0):>5} {node['gpus']:>4}  {node['note']}")
    counts: dict[str, int] = {}
    for job in jobs:
        if job["kind"] != "template":
            counts[job["state"]] = counts.get(job["state"], 0) + 1
    lines += ["", "Jobs: " + ", ".join(f"{counts.get(k, 0)} {word}" for k, word in
                                       (("Q", "queued"), ("R", "running"), ("C", "completed")))]
    if jobs:
        lines.append(f"  {'JOB ID':<28} {'NAME':<16} S  {'EXEC_HOST / COMMENT'}")
    for job in jobs:
        state = templates[job["seq"]] if job["kind"] == "template" else job["state"]
        detail = job["exec_host"] if job["state"] == "R" else (job["comment"] or "")
        lines.append(f"  {job['id']:<28} {job['name'][:16]:<16} {state}  {detail}")
    lines.append("")
    lines.append(f"(as of {time.strftime('%H:%M:%S', time.localtime(now))};"
                 f" Torque commands in {layout.bin})")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    layout = Layout(args.dir)
    if args.action == "init":
        if args.nodes < 0 or args.np < 1 or args.gpus < 0 or args.mem_mb < 0:
            print("phorque-sandbox: --nodes, --gpus and --mem-mb must be >= 0 and --np >= 1",
                  file=sys.stderr)
            return EXIT_USAGE
        import os
        name = args.server or os.uname().nodename
        props = [p for p in args.properties.split(",") if p]
        try:
            cluster.init(args.dir, args.nodes, args.np, name, _settings(args), props,
                         gpus=args.gpus, mem_mb=args.mem_mb)
        except cluster.ClusterExists as exc:
            print(f"phorque-sandbox: {exc}", file=sys.stderr)
            return EXIT_FAILED
        extras = (f", {args.gpus} GPUs" if args.gpus else "") + (
            f", {args.mem_mb} MB" if args.mem_mb else "")
        print(f"created sandbox cluster {layout.root}: server {name}, {args.nodes} nodes of"
              f" {args.np} cores{extras}; start it with: phorque-sandbox start {layout.root}")
        return EXIT_OK
    _require(layout)
    if args.action == "start":
        if args.speed is not None:
            _configure(layout, {"speed": args.speed})
        try:
            if args.foreground:
                import logging
                logging.basicConfig(level=logging.INFO,
                                    format="%(asctime)s %(levelname)s %(message)s")
                server.Server(layout).run()
                return EXIT_OK
            pid = server.start(layout)
        except (server.AlreadyRunning, RuntimeError) as exc:
            print(f"phorque-sandbox: {exc}", file=sys.stderr)
            return EXIT_FAILED
        print(f"sandbox server of {layout.root} started (pid {pid})")
        return EXIT_OK
    if args.action == "stop":
        if not server.stop(layout):
            print(f"phorque-sandbox: no server is running for {layout.root}", file=sys.stderr)
            return EXIT_FAILED
        return EXIT_OK
    if args.action == "status":
        sys.stdout.write(status_text(layout))
        return EXIT_OK
    if args.action == "configure":
        settings = _settings(args)
        if not settings:
            print("phorque-sandbox: nothing to change", file=sys.stderr)
            return EXIT_USAGE
        _configure(layout, settings)
        return EXIT_OK
    if args.action == "mom":
        with Session(layout) as session:
            engine = Engine(session)
            now = engine.advance(time.time()) if server_running(layout) else time.time()
            if engine.db.execute("SELECT 1 FROM nodes WHERE name = ?", (args.node,)).fetchone() is None:
                print(f"phorque-sandbox: no node {args.node}", file=sys.stderr)
                return EXIT_FAILED
            engine.mom_state(args.node, args.state == "up", now)
            engine.schedule(now)
        return EXIT_OK
    if args.action == "fault":
        if args.clear:
            faults.write(layout, {})
            return EXIT_OK
        if not args.command or not args.mode:
            print("phorque-sandbox: fault needs COMMAND and MODE (or --clear)", file=sys.stderr)
            return EXIT_USAGE
        table = faults.read(layout)
        entry: dict[str, object] = {"mode": args.mode}
        if args.count is not None:
            entry["count"] = args.count
        table[args.command] = entry
        faults.write(layout, table)
        return EXIT_OK
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
