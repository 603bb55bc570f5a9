"""What real Torque servers print, read right: the captures of tests/fixtures/real-torque/ (our
Torque 6.1.3) and output collected from other sites (Torque 2.x job-exclusive nodes, Torque 6
NUMA placement)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from phorque.errors import CommandError
from phorque.model import JOB_EXCLUSIVE, Job
from phorque.plan import Kind
from phorque.policy.policies import CostAware, OnDemand, OnDemandPlusPlus
from phorque.policy.view import View
from phorque.torque.commands import NodeNotReady, Torque
from phorque.torque.xmlparse import jobs_from_bytes, nodes_from_bytes
from tests.builders import cloud, cloud_node, inst, job, node, owned, snapshot

REAL = Path(__file__).parent / "fixtures" / "real-torque"
POLICIES = (CostAware, OnDemand, OnDemandPlusPlus)


def _ids() -> dict[str, str]:
    return dict(line.split() for line in (REAL / "job_ids.txt").read_text().splitlines())


def test_every_captured_job_reads_as_submitted():
    ids = _ids()
    jobs = {j.id: j for j in jobs_from_bytes((REAL / "qstat_f_x_t.out").read_bytes())}
    assert jobs[ids["nodes2x2"]].cores == 4
    assert jobs[ids["ncpus2"]].cores == 2  # ncpus alone: N cores, as the schedulers treat it
    procs = jobs[ids["procs3"]]
    assert procs.cores == 3 and procs.refused_by_server == "Unknown node-attribute"
    assert jobs[ids["held"]].state == "H"
    assert jobs[ids["long"]].queue == "long" and jobs[ids["long"]].walltime_secs == 2 * 86400
    base = ids["array"].split("[", 1)[0]
    assert sorted(j.state for i, j in jobs.items() if i.startswith(base + "[")) == ["H", "H", "R", "R"]
    assert jobs[ids["deleted"]].state == "C"
    # The -v value with & < > ' " comes back unharmed through Torque's escaping.
    assert ids["env"] in jobs


def test_a_new_node_as_the_real_server_prints_it_is_booting_not_held_by_an_administrator():
    (new,) = nodes_from_bytes((REAL / "pbsnodes_x_new_node.out").read_bytes())
    assert new.is_new and new.is_offline and new.is_down
    instance = inst("i-1", new.name, age=20)
    snap = snapshot(jobs=[job("1.s", nodes=((1, 4),))], nodes=[new],
                    clouds=[cloud(cores=4, instances=(instance,))],
                    owned=[owned("i-1", node_name=new.name, joined=False, age=20)])
    (cn,) = View(snap).cloud_nodes
    assert not cn.admin_offline
    for policy in POLICIES:
        plan = policy().plan(snap)
        assert not [a for a in plan.actions if a.kind == Kind.LAUNCH], (policy.__name__, plan)
        assert not any("administrator" in n for n in plan.notes), plan.notes


@pytest.mark.parametrize("comment, refused", [
    ("Not Running - PBS Error: Unknown node-attribute ", True),
    ("Not Running - PBS Error: Job exceeds queue resource limits", True),
    ("Not Running: Not enough of the right type of nodes are available", False),
    ("Not Running - PBS Error: Execution server rejected request", False),
    ("", False),
])
def test_only_jobs_the_server_refuses_to_start_are_not_demand(comment, refused):
    waiting = Job(id="5.s", state="Q", queue="batch", cores=4, comment=comment)
    snap = snapshot(jobs=[waiting], clouds=[cloud(cores=4, desired=0)])
    for policy in POLICIES:
        plan = policy().plan(snap)
        launched = sum(a.count or 0 for a in plan.actions if a.kind == Kind.LAUNCH)
        assert launched == (0 if refused else 1), (policy.__name__, comment)
        assert any("5.s" in n and "cannot start" in n for n in plan.notes) == refused


def test_a_job_exclusive_node_that_lists_no_job_is_not_idle():
    # Torque 2.x, as collected at another site: the state says taken, the jobs list is empty.
    taken = cloud_node("a", state=JOB_EXCLUSIVE)
    assert not taken.is_idle
    snap = snapshot(nodes=[taken], clouds=[cloud(charge=3600, instances=(inst("i-a", "a", age=3590),))],
                    owned=[owned("i-a", node_name="a", age=3590)])
    for policy in POLICIES:
        plan = policy().plan(snap)
        assert not [a for a in plan.actions if a.kind in (Kind.DRAIN, Kind.TERMINATE, Kind.REMOVE)], \
            (policy.__name__, plan)


def test_dedicated_cores_and_threads_count_where_they_say_more_than_the_job_list():
    # Torque 6 with NUMA support: a -L job on whole cores; the jobs list names one slot.
    xml = (b"<Data><Node><name>n1</name><state>free</state><np>16</np>"
           b"<jobs>0/12.srv</jobs><dedicated_cores>8</dedicated_cores>"
           b"<dedicated_threads>8</dedicated_threads></Node>"
           b"<Node><name>n2</name><state>free</state><np>16</np><jobs>0-3/13.srv</jobs>"
           b"<dedicated_cores>0</dedicated_cores></Node></Data>")
    n1, n2 = nodes_from_bytes(xml)
    assert n1.used_slots == 8 and n1.free_cores == 8
    assert n2.used_slots == 4 and n2.free_cores == 12
    assert node("n3", np=16).free_cores == 16


def _fake_pbsnodes(tmp_path: Path, capture: str) -> Torque:
    """A pbsnodes that prints what the real one printed (its stderr and exit status)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    script = bindir / "pbsnodes"
    err = (REAL / f"{capture}.err").read_text()
    code = int((REAL / f"{capture}.rc").read_text())
    script.write_text(f"#!/bin/sh\nprintf '%s' {_sh_quote(err)} >&2\nexit {code}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    assert os.access(script, os.X_OK)
    return Torque(str(tmp_path), timeout=30)


def _sh_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def test_pbsnodes_on_an_unknown_node_fails_although_it_exits_0(tmp_path):
    torque = _fake_pbsnodes(tmp_path, "pbsnodes_o_unknown")
    with pytest.raises(CommandError, match="Unknown node"):
        torque.offline("no-such-node", "phorque: draining: x")


def test_pbsnodes_on_a_node_just_created_is_not_ready_yet(tmp_path):
    torque = _fake_pbsnodes(tmp_path, "pbsnodes_o_new_node")
    with pytest.raises(NodeNotReady):
        torque.offline("cloud-new.example", "phorque: draining: x")
