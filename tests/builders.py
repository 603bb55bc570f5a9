"""Readable builders for snapshots in policy tests."""

from __future__ import annotations

from phorque.core.model import (
    Chunk,
    CloudState,
    Health,
    Instance,
    InstanceState,
    Job,
    Node,
    Owned,
    Snapshot,
    Stage,
)
from phorque.policy.view import drain_note, join_note

NOW = 1_700_000_000.0


def node(name: str, np: int = 4, state: str = "free", jobs: tuple[str, ...] = (), used: int | None = None,
         note: str = "") -> Node:
    return Node(name=name, np=np, state=frozenset(state.split(",")), jobs=jobs,
                used_slots=len(jobs) if used is None else used, note=note)


def job(job_id: str, state: str = "Q", cores: int = 1, nodes: tuple[tuple[int, int], ...] = (),
        queue: str = "batch", walltime: int | None = 3600, remaining: int | None = None,
        hosts: tuple[str, ...] = (), queued_at: float | None = None) -> Job:
    chunks = tuple(Chunk(c, p) for c, p in nodes)
    if chunks:
        cores = sum(c * p for c, p in nodes)
    return Job(id=job_id, state=state, queue=queue, cores=cores, chunks=chunks, walltime_secs=walltime,
               remaining_secs=remaining, exec_hosts=hosts, queued_at=queued_at)


def inst(iid: str, dns: str | None = None, state: InstanceState = InstanceState.RUNNING,
         age: float = 600.0) -> Instance:
    return Instance(id=iid, state=state, dns=dns, launch_time=NOW - age)


def cloud(name: str = "hotel", price: float = 0.1, cores: int = 4, max_instances: int = 10,
          charge: int = 3600, desired: int | None = None, instances: tuple[Instance, ...] = (),
          health: Health = Health.OK, boot: int = 120, boot_timeout: int = 900) -> CloudState:
    valid = sum(1 for i in instances if i.state.is_valid)
    return CloudState(name=name, price=price, instance_cores=cores, max_instances=max_instances,
                      charge_time_secs=charge, boot_secs=boot, boot_timeout_secs=boot_timeout,
                      desired=valid if desired is None else desired, instances=instances, health=health)


def cloud_node(name: str, cloud_name: str = "hotel", np: int = 4, state: str = "free",
               jobs: tuple[str, ...] = (), draining: bool = False) -> Node:
    note = drain_note("test") if draining else join_note(cloud_name, "i-" + name)
    if draining and "offline" not in state:
        state = state + ",offline" if state != "free" else "offline"
    return node(name, np=np, state=state, jobs=jobs, note=note)


def owned(iid: str, cloud_name: str = "hotel", node_name: str | None = None,
          stage: Stage = Stage.IDLE, idle_for: float | None = None, joined: bool = True,
          age: float = 600.0) -> Owned:
    return Owned(instance_id=iid, cloud=cloud_name, stage=stage, node=node_name, first_seen=NOW - age,
                 launch_time=NOW - age, joined_at=NOW - age + 60 if joined else None,
                 idle_since=None if idle_for is None else NOW - idle_for)


def snapshot(jobs=(), nodes=(), clouds=(), owned=(), memory=None, now: float = NOW) -> Snapshot:
    return Snapshot(now=now, jobs=tuple(jobs), nodes=tuple(nodes), clouds=tuple(clouds),
                    owned=tuple(owned), memory=memory or {})
