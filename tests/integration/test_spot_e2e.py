"""A spot instance taken back while jobs run on it, end to end: the daemon, the Torque sandbox
(whose nodes' moms live as long as their moto instance) and a moto server, with the test kit
reclaiming the instance as the spot market would (tests/spotkit.py).

The rerunnable job is requeued and finishes on an on-demand instance while the spot section is
backed off; the job that is not rerunnable is named as lost; the node never stays in Torque; the
reclaimed instance is no longer paid for nor counted; nothing launches in a loop.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from phorque.adapters.state import StateStore
from tests import spotkit
from tests.integration.faultkit import Cloud, conf_text
from tests.integration.kit import exit_statuses, wait_until
from tests.torque.torquekit import PeakDesired

SPOT = "phorque-spot"
OD = "phorque-od"


def spot_config(tmp_path, sandbox, moto: str) -> str:
    spot = Cloud("spot", "moto", moto, SPOT, price=0.03, max_instances=2,
                 extra="market = spot\nqueues = batch\n").section()
    od = Cloud("od", "moto", moto, OD, price=0.10, max_instances=2).section()
    text = conf_text(tmp_path, sandbox, [], budget="10", loop_sleep=60)
    return text.replace("[Policy]", "interruption_poll_secs = 0.5\n\n[Policy]") + spot + od


def status_of(conf, *args: str) -> str:
    return subprocess.run([sys.executable, "-m", "phorque.cli.status", "-c", str(conf), *args],
                          capture_output=True, text=True, timeout=120, check=True).stdout


def node_of(sandbox, job: str) -> str | None:
    return spotkit.exec_node(sandbox.records("S", job))


@pytest.mark.parametrize("group_knows", [True, False], ids=["group-knows", "only-ec2-knows"])
def test_a_reclaimed_spot_instance_requeues_its_jobs_and_they_finish_on_demand(
        make_sandbox, moto, tmp_path, daemons, group_knows):
    # only-ec2-knows: the group still shows the member in service; the spot watch's trigger
    # has the daemon ask EC2 about every member, settled ones included.
    sandbox = make_sandbox(nodes=1, np=2, boot_mode="cloud", cloud_endpoint=moto, boot_delay=1)
    blocker = sandbox.qsub("-l", "nodes=1:ppn=2", runtime=3600)
    wait_until(lambda: node_of(sandbox, blocker), 30, "the static node to be taken")
    with PeakDesired(moto, [SPOT, OD]) as peaks:
        daemon = daemons(spot_config(tmp_path, sandbox, moto))
        # Rerunnable, in the queue the spot section serves: a spot instance is launched for it.
        saved = sandbox.qsub("-r", "y", "-l", "nodes=1:ppn=2", runtime=15)
        spot_node = wait_until(lambda: node_of(sandbox, saved), 90, "the job to start on a spot node")
        assert spotkit.desired(moto, SPOT) == 1 and spotkit.desired(moto, OD) == 0
        # Not rerunnable: it lands on the spot node's two free cores (nothing else is free) and
        # nothing is launched for it.
        doomed = sandbox.qsub("-r", "n", "-l", "nodes=1:ppn=2", runtime=3600)
        wait_until(lambda: node_of(sandbox, doomed), 30, "the second job on the spot node's free cores")
        assert node_of(sandbox, doomed) == spot_node
        (member,) = [m for m in spotkit.members(moto, SPOT) if m["LifecycleState"] == "InService"]

        spotkit.reclaim(SPOT, member["InstanceId"], group_knows=group_knows)

        # Requeued at once (an R record), then run to its end on an on-demand instance.
        wait_until(lambda: sandbox.records("R", saved), 60, "the rerunnable job requeued")
        wait_until(lambda: saved in exit_statuses(sandbox), 120, "the requeued job to finish")
        assert exit_statuses(sandbox)[saved] == 0
        od_node = node_of(sandbox, saved)
        assert od_node != spot_node
        wait_until(lambda: spot_node not in sandbox.run("pbsnodes", "-a").stdout, 60,
                   "the spot node removed from Torque")
        status = json.loads(status_of(daemon.conf, "--json"))
        text = status_of(daemon.conf)
    daemon.stop()

    # The reclaimed instance's replacement was cancelled: the spot group asks for nothing, and
    # only the on-demand instance was paid for while the job ran there.
    assert peaks.value == {SPOT: 1, OD: 1}, peaks.value
    assert status["cluster"]["spending"]["per_hour"] in (0.0, 0.1), status["cluster"]["spending"]
    assert {c["name"]: c["desired"] for c in status["clouds"]}[ "spot"] == 0
    (row,) = StateStore(str(tmp_path / "state" / "phorque.db")).interruptions()
    assert (row["cloud"], row["instance_id"], row["node"]) == ("spot", member["InstanceId"], spot_node)
    assert row["requeued"] == [saved]
    assert list(row["lost"]) == [doomed] and "not rerunnable" in row["lost"][doomed]
    assert status["phorque"]["interruptions"][0]["requeued"] == [saved]
    assert "TAKEN BACK BY THE CLOUD" in text and f"requeued {saved}" in text
    assert f"lost (not rerunnable) {doomed}" in text
    log = daemon.text()
    assert "Traceback" not in log
    if not group_knows:
        # Found by the evaluation the spot watch asked for, not by a later one.
        after = log[log.index(f"instance {member['InstanceId']} taken back by the cloud"):]
        answering = re.search(r"evaluation #\d+ \((.*)\): ", after)
        assert answering is not None and "spot interruption" in answering.group(1), after[:2000]
    assert f"{doomed} not requeued" in log and "purged (qdel -p)" in row["lost"][doomed]
    assert "backing off" in log  # the spot section: repeated interruptions move work elsewhere


def test_the_spot_watch_fires_when_an_instance_is_taken_back_or_leaves_its_group(moto, tmp_path):
    from phorque.adapters.cloud.factory import make_provider
    from phorque.adapters.config import load_config
    from phorque.runtime.spotwatch import SpotWatch
    from phorque.runtime.triggers import Trigger

    path = tmp_path / "phorque.conf"
    path.write_text("[Policy]\nname = CostAware\n" + Cloud("spot", "moto", moto, SPOT, price=0.03,
                    max_instances=3, extra="market = spot\n").section())
    (settings,) = load_config(path, environ={}).clouds
    provider = make_provider(settings)
    provider.ensure_setup()
    provider.set_desired(3)
    trigger = Trigger()
    watch = SpotWatch((settings,), trigger, every_secs=0)
    assert watch.check() == [] and not trigger.wait(0)
    first, second, _third = sorted(m["InstanceId"] for m in spotkit.members(moto, SPOT))
    spotkit.reclaim(SPOT, first)
    assert watch.check() == [first]
    assert trigger.wait(0).reasons == {"spot interruption": 1}
    assert watch.check() == []  # said once
    # A member that leaves the group without a word (the group drops a reclaimed instance).
    from moto.autoscaling.models import autoscaling_backends
    from moto.core import DEFAULT_ACCOUNT_ID
    group = autoscaling_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].autoscaling_groups[SPOT]
    group.instance_states = [m for m in group.instance_states if m.instance.id != second]
    assert watch.check() == [second]
