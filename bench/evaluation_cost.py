"""How the cost of one evaluation grows with the queue: 1,000, 10,000 and 100,000 queued jobs on
2,000 nodes (half busy), two clouds.

For each size it times, separately and together:
  parse   reading the `qstat -f -x -t` and `pbsnodes -x` output Phorque would get (streamed,
          repaired) into jobs and nodes;
  policy  building the view and running each policy (CostAware, OnDemandPlusPlus, OnDemand);
and prints seconds per evaluation and the growth factor against the 1,000-job size. The baseline
in the same run is a plain ElementTree parse of the same bytes (what parsing costs without
Phorque's streaming and repairs).

    python3 dev.py bench evaluation_cost [--sizes 1000,10000,100000] [--nodes 2000]
"""

from __future__ import annotations

import argparse
import io
import random
import time
import xml.etree.ElementTree as ET

from phorque.model import CloudState
from phorque.model import Snapshot as Snap
from phorque.policy.policies import CostAware, OnDemand, OnDemandPlusPlus
from phorque.torque.xmlparse import parse_jobs, parse_nodes

SERVER = "master.example.org"


def qstat_xml(queued: int, nodes: int, rng: random.Random) -> bytes:
    parts = ['<?xml version="1.0"?>\n<Data>']
    jid = 1
    for n in range(nodes // 2):  # one running job on every other node
        parts.append(
            f"<Job><Job_Id>{jid}.{SERVER}</Job_Id><Job_Name>run{jid}</Job_Name><Job_Owner>u@h</Job_Owner>"
            f"<job_state>R</job_state><queue>batch</queue><exec_host>node{n:05d}/0-7</exec_host>"
            f"<qtime>1700000000</qtime><start_time>1700000100</start_time>"
            f"<Resource_List><nodes>1:ppn=8</nodes><nodect>1</nodect><walltime>04:00:00</walltime>"
            f"</Resource_List><Walltime><Remaining>{rng.randint(60, 14000)}</Remaining></Walltime>"
            f"<Variable_List>PBS_O_HOME=/home/u,PBS_O_WORKDIR=/home/u&x</Variable_List></Job>")
        jid += 1
    shapes = ["1:ppn=1", "1:ppn=4", "2:ppn=8", "4:ppn=2+1:ppn=8", "1:ppn=16"]
    for _ in range(queued):
        nodes_spec = rng.choice(shapes)
        parts.append(
            f"<Job><Job_Id>{jid}.{SERVER}</Job_Id><Job_Name>q{jid}</Job_Name><Job_Owner>u@h</Job_Owner>"
            f"<job_state>Q</job_state><queue>batch</queue><qtime>{1700000000 + jid}</qtime>"
            f"<Resource_List><nodes>{nodes_spec}</nodes><walltime>01:00:00</walltime></Resource_List>"
            f"<Variable_List>PBS_O_HOME=/home/u</Variable_List></Job>")
        jid += 1
    parts.append("</Data>\n")
    return "".join(parts).encode()


def pbsnodes_xml(nodes: int) -> bytes:
    parts = ["<Data>"]
    for n in range(nodes):
        busy = n < nodes // 2
        jobs = f"<jobs>0-7/{n + 1}.{SERVER}</jobs>" if busy else ""
        state = "job-exclusive" if busy else "free"
        parts.append(f"<Node><name>node{n:05d}</name><state>{state}</state><np>8</np>"
                     f"<ntype>cluster</ntype>{jobs}</Node>")
    parts.append("</Data>")
    return "".join(parts).encode()


def clouds() -> tuple[CloudState, ...]:
    return (CloudState("cheap", 0.05, 8, 64, 3600, 120, 900),
            CloudState("dear", 0.20, 16, 256, 3600, 120, 900))


def timed(fn, repeat: int = 1):
    best = float("inf")
    result = None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - started)
    return best, result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--nodes", type=int, default=2000)
    args = ap.parse_args()
    rng = random.Random(7)
    sizes = [int(s) for s in args.sizes.split(",")]
    nodes_bytes = pbsnodes_xml(args.nodes)
    print(f"evaluation cost, {args.nodes} nodes (half busy), clouds: cheap x8 cores max 64, dear x16 max 256")
    header = (f"{'queued':>8} {'qstat MB':>9} {'ET parse':>9} {'parse':>8} {'CostAware':>10} "
              f"{'OD++':>8} {'OnDemand':>9} {'total CA':>9} {'growth':>7}")
    print(header)
    first_total = None
    for size in sizes:
        data = qstat_xml(size, args.nodes, rng)
        repeat = 3 if size <= 10000 else 1
        clean = data.split(b"\n", 1)[1].replace(b"&x", b"&amp;x")  # plain ET needs valid XML
        t_et, _ = timed(lambda clean=clean: ET.fromstring(clean), repeat)

        def parse(data=data):
            return (list(parse_jobs(io.BytesIO(data))), list(parse_nodes(io.BytesIO(nodes_bytes))))

        t_parse, (jobs, nodes) = timed(parse, repeat)
        snap = Snap(now=1_700_001_000.0, jobs=tuple(jobs), nodes=tuple(nodes), clouds=clouds())
        times = {}
        for cls in (CostAware, OnDemandPlusPlus, OnDemand):
            times[cls.__name__], plan = timed(lambda cls=cls, snap=snap: cls(price_per_hour=40).plan(snap), repeat)
            if cls is CostAware:
                launched = plan.launched()
        total = t_parse + times["CostAware"]
        first_total = first_total or total
        print(f"{size:>8} {len(data) / 1e6:>9.1f} {t_et:>8.3f}s {t_parse:>7.3f}s {times['CostAware']:>9.3f}s "
              f"{times['OnDemandPlusPlus']:>7.3f}s {times['OnDemand']:>8.3f}s {total:>8.3f}s "
              f"{total / first_total:>6.1f}x   (CostAware launches {launched})")
    print("growth = total CostAware evaluation time relative to the first size; "
          "ET parse = plain ElementTree on the same qstat bytes, made valid first (baseline)")


if __name__ == "__main__":
    main()
