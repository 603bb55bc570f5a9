"""Right-sized launches on a real pbs_server and pbs_sched: a GPU job and a big-memory job make
Phorque launch on the dear cloud whose instance can run them, not on the cheaper one a count of
cores would have picked; the node is created with its GPUs, and pbs_sched starts the GPU job on
it (pbs_server places GPU requests by the nodes' ``gpus``)."""

from __future__ import annotations

from tests import waiting
from tests.integration.faultkit import start_daemon
from tests.integration.kit import conf_text
from tests.torque.torquekit import BASE_MOMS, CloudMoms, PeakDesired

GPU_GROUP, CPU_GROUP = "phorque-gpu", "phorque-cpu"
#: The static GPU node: while it is busy, the queued GPU job waits for a cloud node; that such a
#: node exists at all keeps pbs_sched from deleting the job as one that could never run.
STATIC_GPU = BASE_MOMS[0]


def _cpu_section(moto: str) -> str:
    return f"""
[Cloud-cpu]
cloud_uri = {moto}
autoscale_uri = {moto}
access_id = testing
secret_key = testing
image_id = ami-12c6146b
autoscale_group_name = {CPU_GROUP}
launch_config_name = {CPU_GROUP}-lc
instance_type = t3.medium
instance_cores = 2
instance_memory_mb = 8192
max_instances = 2
price = 0.1
boot_secs = 2
"""


def test_gpu_and_memory_jobs_launch_the_instance_that_can_run_them(real_torque, moto, tmp_path):
    real_torque.qmgr("set queue batch is_transit = true")
    real_torque.qmgr(f"set node {STATIC_GPU} gpus = 2")
    try:
        blockers = [real_torque.qsub("-l", "nodes=1:ppn=2:gpus=2", script="sleep 600\n"),
                    real_torque.qsub("-l", "nodes=1:ppn=2", script="sleep 600\n")]
        real_torque.wait_jobs(blockers, "R")
        text = conf_text(tmp_path, real_torque, moto, cores=2, max_instances=1, charge=60, margin=40,
                         loop_sleep=10, boot_timeout=300, budget="10", price=0.9, group=GPU_GROUP,
                         extra_cloud="instance_memory_mb = 16384\ninstance_gpus = 2\n") + _cpu_section(moto)
        with PeakDesired(moto, [GPU_GROUP, CPU_GROUP]) as peak, CloudMoms(real_torque, moto, GPU_GROUP) as moms:
            daemon = start_daemon(tmp_path, text)
            try:
                gpu_job = real_torque.qsub("-l", "nodes=1:ppn=2:gpus=2", script="sleep 5\n")
                # 12 GB: more than the cheap instance's 8 GB. It waits for the GPU instance
                # (max_instances 1) rather than buy a cheap one it could not run on.
                mem_job = real_torque.qsub("-l", "nodes=1:ppn=2,mem=12gb", script="sleep 1\n")
                for job in (gpu_job, mem_job):
                    waiting.wait_for(lambda job=job: real_torque.exit_status(job) is not None, 300,
                                     f"job {job} to run on the cloud node and end", interval=0.5)
                assert len(moms.started) == 1, moms.errors
                (node,) = moms.started
                for job in (gpu_job, mem_job):
                    assert real_torque.exit_status(job) == 0
                    assert f"exec_host={node}/" in real_torque.records("S", job)[0][3]
                # The node was created with the instance's GPUs: without them pbs_server would
                # never have placed the GPU job there.
                assert "<gpus>2</gpus>" in real_torque.run("pbsnodes", "-x", "--", node).stdout
            finally:
                daemon.stop()
        assert peak.value == {GPU_GROUP: 1, CPU_GROUP: 0}, daemon.text()
        assert "Traceback" not in daemon.text()
    finally:
        real_torque.run("qdel", "-p", "all")
        real_torque.recreate_base_node(STATIC_GPU)
