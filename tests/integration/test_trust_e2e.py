"""Ownership that cannot be faked and an administrator's offline that always wins: the engine and
the executor against the Torque sandbox and a moto server (behind the fault proxy) on 127.0.0.1.

A Torque operator can write any note on any node; Phorque's record, not a ``phorque:`` note,
decides what is Phorque's. An administrator's own offline note is never overwritten, also when
it is written while Phorque works, and a termination that failed at the cloud leaves the node.
"""

from __future__ import annotations

import re
import stat
import time

from phorque.act.engine import Engine
from phorque.act.executor import Executor
from phorque.adapters.cloud.lock import cloud_lock
from phorque.core.model import Stage
from phorque.core.plan import Kind, Plan
from phorque.policy.common import retire
from phorque.policy.view import View
from tests.integration.faultkit import set_faults
from tests.integration.kit import e2e_config, wait_until


def node_names(sandbox) -> set[str]:
    proc = sandbox.run("pbsnodes", "-x")
    if proc.returncode != 0 and "has no node list" in proc.stderr:
        return set()
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    return set(re.findall(r"<name>([^<]+)</name>", out))


def note_of(engine: Engine, name: str) -> str:
    node = engine.torque.node(name)
    assert node is not None
    return node.note


def joined_node(engine: Engine, sandbox, jobs: int = 1) -> str:
    """Launch one instance for a job, join it, and wait until the job ran and ended."""
    for _ in range(jobs):
        sandbox.qsub("-l", "nodes=1:ppn=4", runtime=0.5)
    engine.evaluate()
    joined = wait_until(lambda: [o.action.node for o in engine.evaluate().outcomes
                                 if o.action.kind == Kind.JOIN and o.status == "done"],
                        60, "the instance to join", interval=0.3)
    wait_until(lambda: len(sandbox.records("E")) == jobs, 60, "the job to end")
    return joined[0]


def apply_retire(engine: Engine, config, name: str):
    """Apply a plan that retires ``name`` (what a policy decides for an idle node)."""
    snapshot = engine.snapshot(time.time(), save=False)
    (cn,) = [c for c in View(snapshot).cloud_nodes if c.node is not None and c.node.name == name]
    with cloud_lock(config.phorque.lock_path):
        return Executor(engine.torque, engine.providers, {c.name: c for c in config.clouds},
                        engine.state, time.time(), lambda *_: None).apply(
            Plan(actions=tuple(retire(cn, "test: idle"))), snapshot)


def test_a_phorque_note_written_on_a_static_node_does_not_make_it_phorques(make_sandbox, moto, tmp_path):
    sandbox = make_sandbox(nodes=2, np=2)
    engine = Engine(e2e_config(tmp_path, sandbox, moto))
    # What any Torque operator may do; before, node01 was then taken as an orphan and deleted.
    sandbox.run("pbsnodes", "-N", "phorque: joined i-0123456789abcdef0 (local)", "--", "node01", check=True)
    sandbox.run("pbsnodes", "-o", "-N", "phorque: draining: idle", "--", "node02", check=True)
    for _ in range(2):
        ev = engine.evaluate()
        assert not [a for a in ev.plan.actions if a.node in ("node01", "node02")], ev.plan.actions
    assert {"node01", "node02"} <= node_names(sandbox)
    notes = " ".join(ev.plan.notes)
    assert "node01 has a phorque: note, but Phorque has no record of creating it" in notes
    assert "node02 has a phorque: note" in notes


def test_a_node_phorque_created_is_still_removed_once_its_instance_is_gone(make_sandbox, moto, tmp_path):
    """Ownership by record, not by note: a node whose instance vanished is still removed."""
    sandbox = make_sandbox(nodes=0, np=4, boot_delay=0.2)
    engine = Engine(e2e_config(tmp_path, sandbox, moto, charge=3600, margin=60))
    name = joined_node(engine, sandbox)
    # Someone rewrites the note; the state still records the node as Phorque's.
    sandbox.run("pbsnodes", "-N", "rebooted by ops", "--", name, check=True)
    (owned,) = engine.state.owned()
    engine.providers["local"].terminate(owned.instance_id)
    wait_until(lambda: name not in node_names(sandbox) if engine.evaluate() else False, 60,
               "the orphan node to be removed", interval=0.3)


def test_a_draining_stage_left_by_a_restart_does_not_override_an_administrators_offline(
        make_sandbox, moto, tmp_path):
    sandbox = make_sandbox(nodes=0, np=4, boot_delay=0.2)
    config = e2e_config(tmp_path, sandbox, moto, policy="OnDemand", charge=3600)
    engine = Engine(config)
    name = joined_node(engine, sandbox)
    (owned,) = engine.state.owned()
    # A daemon that died draining this node leaves the stage; meanwhile the administrator took
    # the node for themselves.
    engine.state.set_stage(owned.instance_id, "local", Stage.DRAINING, time.time(), drain_started=time.time())
    sandbox.run("pbsnodes", "-o", "-N", "memory test by admin", "--", name, check=True)
    restarted = Engine(config)
    for _ in range(3):
        ev = restarted.evaluate()
        assert not [o for o in ev.outcomes if o.action.node == name], ev.outcomes
    assert note_of(restarted, name) == "memory test by admin"
    assert name in node_names(sandbox)
    assert len(restarted.providers["local"].describe().instances) == 1


def test_the_offline_step_never_overwrites_a_note_written_since_the_snapshot(make_sandbox, moto, tmp_path):
    sandbox = make_sandbox(nodes=0, np=4, boot_delay=0.2)
    config = e2e_config(tmp_path, sandbox, moto, charge=3600)
    engine = Engine(config)
    name = joined_node(engine, sandbox)
    snapshot = engine.snapshot(time.time(), save=False)
    (cn,) = [c for c in View(snapshot).cloud_nodes if c.node is not None]
    # Between Phorque's read of Torque and its offline (it reads the clouds meanwhile):
    sandbox.run("pbsnodes", "-o", "-N", "disk check by admin", "--", name, check=True)
    with cloud_lock(config.phorque.lock_path):
        outcomes = Executor(engine.torque, engine.providers, {c.name: c for c in config.clouds},
                            engine.state, time.time(), lambda *_: None).apply(
            Plan(actions=tuple(retire(cn, "test: idle"))), snapshot)
    assert [(o.action.kind, o.status) for o in outcomes] == [
        (Kind.DRAIN, "skipped"), (Kind.TERMINATE, "skipped"), (Kind.REMOVE, "skipped")]
    assert note_of(engine, name) == "disk check by admin"
    assert len(engine.providers["local"].describe().instances) == 1


def test_a_note_written_between_the_offline_and_the_re_read_stops_the_termination(
        make_sandbox, moto, tmp_path):
    """pbsnodes has no compare-and-set: the administrator may write just after Phorque's offline.
    A ``pbsnodes`` in ``cluster_directory/bin`` that does what Torque does and then what the
    administrator does reproduces that moment; the re-read must see it."""
    sandbox = make_sandbox(nodes=0, np=4, boot_delay=0.2)
    config = e2e_config(tmp_path, sandbox, moto, charge=3600)
    engine = Engine(config)
    name = joined_node(engine, sandbox)
    racing = tmp_path / "racing"
    (racing / "bin").mkdir(parents=True)
    for command in ("qstat", "qmgr"):
        script = racing / "bin" / command
        script.write_text(f"#!/bin/sh\nexec '{sandbox.layout.command(command)}' \"$@\"\n")
        script.chmod(0o755)
    wrapper = racing / "bin" / "pbsnodes"
    wrapper.write_text(
        "#!/bin/sh\n"
        f"'{sandbox.layout.command('pbsnodes')}' \"$@\" || exit $?\n"
        "if [ \"$1\" = \"-o\" ]; then\n"
        f"  exec '{sandbox.layout.command('pbsnodes')}' -o -N 'taken by admin' -- \"$5\"\n"
        "fi\n")
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    engine.torque.cluster_directory = str(racing)
    outcomes = apply_retire(engine, config, name)
    assert [(o.action.kind, o.status) for o in outcomes] == [
        (Kind.DRAIN, "skipped"), (Kind.TERMINATE, "skipped"), (Kind.REMOVE, "skipped")]
    assert "administrator" in outcomes[0].detail
    assert note_of(engine, name) == "taken by admin"
    assert len(engine.providers["local"].describe().instances) == 1
    assert name in node_names(sandbox)


def test_a_termination_that_failed_at_the_cloud_does_not_remove_the_node(make_sandbox, proxy, tmp_path):
    sandbox = make_sandbox(nodes=0, np=4, boot_delay=0.2)
    config = e2e_config(tmp_path, sandbox, proxy, charge=3600)
    engine = Engine(config)
    name = joined_node(engine, sandbox)
    set_faults(proxy, rules=[{"kind": "error", "status": 500, "action": "TerminateInstanceInAutoScalingGroup"}])
    outcomes = apply_retire(engine, config, name)
    assert [(o.action.kind, o.status) for o in outcomes] == [
        (Kind.DRAIN, "done"), (Kind.TERMINATE, "failed"), (Kind.REMOVE, "skipped")]
    assert "termination of its instance failed" in outcomes[2].detail
    assert name in node_names(sandbox)  # the instance still runs (and is billed): so does its node
    set_faults(proxy, rules=[])
    # The next evaluation finishes the termination, and only then removes the node.
    wait_until(lambda: name not in node_names(sandbox) if engine.evaluate() else False, 60,
               "the termination to be finished", interval=0.3)
    assert engine.providers["local"].describe().instances == () or all(
        not i.state.is_valid for i in engine.providers["local"].describe().instances)
