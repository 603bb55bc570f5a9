"""Giving up on instances that never boot. One incident counts as one failure of its cloud:
when every instance of a launch stays pending past the boot timeout, the evaluation that gives
them up backs the cloud off once (60 s), not once per instance (six of them reached the
30-minute maximum). And on a cloud-only cluster with no node yet they can be terminated: the
re-read of their would-be node gets "Server has no node list", which means "no such node".
"""

from __future__ import annotations

import time

from phorque.act.engine import Engine
from phorque.adapters.torque.commands import Torque
from phorque.core.plan import Kind
from tests.cloud.cloudkit import set_faults
from tests.integration.kit import e2e_config


def test_instances_of_one_launch_that_never_boot_count_once(make_sandbox, proxy, tmp_path):
    sandbox = make_sandbox(nodes=0, np=4, boot_delay=0.5)
    config = e2e_config(tmp_path, sandbox, proxy, boot_timeout=2, max_instances=4)
    set_faults(proxy, stuck_pending={"new": True})
    engine = Engine(config)
    for _ in range(4):
        sandbox.qsub("-l", "nodes=1:ppn=4", runtime=30)
    first = engine.evaluate()
    assert [(o.action.kind, o.action.count) for o in first.outcomes] == [(Kind.LAUNCH, 4)]
    engine.evaluate()  # sees them (the boot timeout counts from here), pending with no DNS name
    time.sleep(3)  # past the boot timeout
    before = time.time()
    given_up = engine.evaluate()
    terminated = [o for o in given_up.outcomes if o.action.kind == Kind.TERMINATE and o.status == "done"]
    assert len(terminated) == 4 and all(o.action.fault for o in terminated)
    health = engine.state.health()["local"]
    assert health["failures"] == 1
    assert before + 55 < health["backoff_until"] < time.time() + 61
    # Backed off: the jobs still queued launch nothing on it meanwhile.
    assert not [o for o in engine.evaluate().outcomes if o.action.kind == Kind.LAUNCH]


def test_a_node_read_on_a_server_without_nodes_is_no_node(make_sandbox):
    sandbox = make_sandbox(nodes=0)
    assert Torque(str(sandbox.root), 20).node("ip-10-0-0-1.ec2.internal") is None
    assert Torque(str(sandbox.root), 20).nodes() == []
