"""A spot instance taken back on a real pbs_server: the daemon requeues the rerunnable job with
a real ``qrerun -f`` while the node's real pbs_mom is gone, pbs_server refuses the job that is not
rerunnable and ends it with the node, the node is deleted, and the requeued job runs to its end
on an on-demand instance's mom while the spot section is backed off."""

from __future__ import annotations

from phorque.adapters.state import StateStore
from tests import spotkit, waiting
from tests.integration.faultkit import Cloud, start_daemon
from tests.integration.kit import conf_text
from tests.torque.test_real_daemon import _fill_static_nodes
from tests.torque.torquekit import BASE_MOMS, CloudMoms, PeakDesired

OD = "phorque-e2e"
SPOT = "phorque-spot"


def _host(real_torque, job: str) -> str | None:
    return spotkit.exec_node(real_torque.records("S", job))


def test_a_reclaimed_spot_instance_on_real_torque(real_torque, moto, tmp_path):
    _fill_static_nodes(real_torque)
    spot = Cloud("spot", "moto", moto, SPOT, price=0.03, max_instances=1, cores=4,
                 extra="market = spot\nqueues = batch\n").section()
    text = conf_text(tmp_path, real_torque, moto, cores=2, max_instances=1, charge=3600,
                     loop_sleep=30, boot_timeout=300, budget="10", extra_cloud="\n" + spot)
    text = text.replace("[Policy]", "interruption_poll_secs = 1\n\n[Policy]")
    with PeakDesired(moto, [SPOT, OD]) as peak, CloudMoms(real_torque, moto, SPOT) as spot_moms, \
            CloudMoms(real_torque, moto, OD) as od_moms:
        daemon = start_daemon(tmp_path, text)
        try:
            saved = real_torque.qsub("-r", "y", "-l", "nodes=1:ppn=2", script="sleep 20\n")
            spot_node = waiting.wait_for(lambda: _host(real_torque, saved), 300,
                                         "the rerunnable job to start on the spot node", interval=0.5)
            assert spot_node in spot_moms.started
            doomed = real_torque.qsub("-r", "n", "-l", "nodes=1:ppn=2", script="sleep 600\n")
            waiting.wait_for(lambda: _host(real_torque, doomed), 120,
                             "the second job on the spot node's free cores", interval=0.5)
            assert _host(real_torque, doomed) == spot_node
            (member,) = [m for m in spotkit.members(moto, SPOT) if m["LifecycleState"] == "InService"]

            spotkit.reclaim(SPOT, member["InstanceId"])

            waiting.wait_for(lambda: real_torque.records("R", saved), 120,
                             "pbs_server to requeue the rerunnable job", interval=0.5)
            waiting.wait_for(lambda: real_torque.exit_status(saved) is not None, 300,
                             "the requeued job to run to its end on demand", interval=0.5)
            assert real_torque.exit_status(saved) == 0
            od_node = _host(real_torque, saved)
            assert od_node in od_moms.started and od_node != spot_node
            waiting.wait_for(lambda: spot_node not in real_torque.nodes(), 120,
                             "the spot node deleted from Torque", interval=0.5)
            waiting.wait_for(lambda: real_torque.job_states().get(doomed) in (None, "C"), 120,
                             "the job that was not rerunnable to end with its node", interval=0.5)
            assert spotkit.desired(moto, SPOT) == 0
        finally:
            daemon.stop()
    assert peak.value == {SPOT: 1, OD: 1}, peak.value
    (row,) = StateStore(str(tmp_path / "state" / "phorque.db")).interruptions()
    assert row["node"] == spot_node and row["requeued"] == [saved]
    assert list(row["lost"]) == [doomed] and "not rerunnable" in row["lost"][doomed].lower()
    assert "purged (qdel -p)" in row["lost"][doomed]
    log = daemon.text()
    assert "Traceback" not in log
    assert set(real_torque.nodes()) >= set(BASE_MOMS)
