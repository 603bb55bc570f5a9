"""A job's attributes as pbs_server reports them to qstat, in Torque 6.1's order.

The order is that of ``job_attr_def`` (the ``JOB_ATR_*`` enum in pbs_job.h), as in the real
``qstat -f -x`` samples (aws-parallelcluster-node's ``qstat_output.xml``, Torque 6.1.2):
``Job_Name, Job_Owner, resources_used, job_state, queue, server, ..., Resource_List,
session_id, substate, Variable_List, euser, egroup, hashname, queue_rank, queue_type, comment,
etime, exit_status, submit_args, job_array_id, start_time, Walltime, start_count,
fault_tolerant, comp_time, job_radix, total_runtime, submit_host, init_work_dir,
request_version`` (``exec_gpus`` after ``exec_host`` and ``gpu_flags`` before
``request_version`` for a job given GPUs, from the enum), checked against a real 6.1.3 (``tests/fixtures/real-torque/``):
``Resource_List`` shows ``neednodes``, ``hashname`` appears once a job has run, a held job has
no ``etime``, and ``resources_used`` only after the first mom status since the start.

Each attribute is ``(name, resource, value)``; ``resource`` is None for plain attributes.
"""

from __future__ import annotations

from phorque_testbed.sandbox.acct import used
from phorque_testbed.sandbox.request import decode_resources, hms
from phorque_testbed.sandbox.rows import Record

Attr = tuple[str, "str | None", str]

def elapsed(job: Record, now: float) -> float:
    """Sandbox seconds a running job has run (real time times the speed it started with)."""
    if job["start"] is None or job["state"] != "R":
        return float(job["used_walltime"] or 0)
    return max(0.0, (now - job["start"]) * (job["speed"] or 1.0))


def ran_until(job: Record, now: float) -> float:
    """Sandbox seconds of work a running job has done: its elapsed time, but no more than its
    run lasts (the process may have ended while the mom's obit is still on its way)."""
    ran = job["ran"] if job["ran"] is not None else job["walltime"]
    return min(elapsed(job, now), ran)


def array_summary_state(states: list[str]) -> str:
    """The state qstat shows for an array without ``-t``: R if any sub-job runs, Q if any
    waits, H if any is held, else C."""
    for state in ("R", "Q", "H"):
        if state in states:
            return state
    return "C"


def hashname(job_id: str) -> str:
    """The job's file prefix (``hashname``): ``4.srv`` for the array ``4[].srv``, ``4-1.srv`` for
    its sub-job ``4[1].srv``."""
    return job_id.replace("[]", "").replace("[", "-").replace("]", "")


SUBSTATES = {"Q": 10, "H": 20, "W": 30, "R": 42, "E": 50, "C": 59}


def sampled_usage(job: Record, now: float, status_every: float | None) -> float | None:
    """Sandbox seconds of run time pbs_server knows of: what the last mom status said (one every
    ``status_every`` real seconds since the start), the final figure once the job is over, or
    None before the first status (``resources_used`` is absent then)."""
    if job["state"] == "C":
        return float(job["used_walltime"] or 0)
    if job["state"] != "R" or job["start"] is None:
        return None
    since = max(0.0, now - job["start"])
    if status_every:
        reports = int(since // status_every)
        if reports == 0:
            return None
        since = reports * status_every
    ran = job["ran"] if job["ran"] is not None else job["walltime"]
    return min(since * (job["speed"] or 1.0), ran)


def job_attributes(job: Record, now: float, server: str, state: str | None = None,
                   status_every: float | None = None) -> list[Attr]:
    """The attributes of one job (or of an array template, with its summarised ``state``).

    ``status_every``: real seconds between two mom status reports (``resources_used`` is as of
    the last one); None shows the usage as of now.
    """
    state = state or job["state"]
    started = job["start"] is not None and job["exec_host"] is not None
    out: list[Attr] = [
        ("Job_Name", None, job["name"]),
        ("Job_Owner", None, job["owner"]),
    ]
    usage_secs = sampled_usage(job, now, status_every) if started else None
    if usage_secs is not None:
        usage = dict(used(job["slots"] or 0, usage_secs))
        usage["cput"] = hms(int(usage["cput"]))
        out += [("resources_used", k, v) for k, v in usage.items()]
    out += [
        ("job_state", None, state),
        ("queue", None, job["queue"]),
        ("server", None, server),
    ]
    if job["account"]:
        out.append(("Account_Name", None, job["account"]))
    out += [
        ("Checkpoint", None, "u"),
        ("ctime", None, str(int(job["ctime"]))),
        ("Error_Path", None, job["error_path"]),
    ]
    if job["exec_host"]:
        out.append(("exec_host", None, job["exec_host"]))
    if job["exec_gpus"]:  # JOB_ATR_exec_gpus follows exec_host (exec_port is not shown)
        out.append(("exec_gpus", None, job["exec_gpus"]))
    # An array's sub-jobs show Hold_Types only while held by the array's %limit (real captures).
    if job["kind"] != "sub" or job["hold"]:
        out.append(("Hold_Types", None, job["hold"] or "n"))
    out += [
        ("Join_Path", None, job["join_path"]),
        ("Keep_Files", None, job["keep_files"]),
        ("Mail_Points", None, job["mail_points"]),
        ("mtime", None, str(int(job["mtime"]))),
        ("Output_Path", None, job["output_path"]),
        ("Priority", None, str(job["priority"])),
        ("qtime", None, str(int(job["qtime"]))),
        ("Rerunable", None, "True" if job["rerunable"] else "False"),
    ]
    out += [("Resource_List", k, v) for k, v in decode_resources(job["resources"])]
    if job["session"] is not None and started:
        out.append(("session_id", None, str(job["session"])))
    out.append(("substate", None, str(SUBSTATES.get(state, 10))))
    variables = job["variables"]
    if job["kind"] == "sub":
        variables = f"PBS_ARRAYID={job['idx']}," + variables
    out += [
        ("Variable_List", None, variables),
        ("euser", None, job["euser"]),
        ("egroup", None, job["egroup"]),
    ]
    if job["start"] is not None:  # pbs_server names the job's files once it has run
        out.append(("hashname", None, hashname(job["id"])))
    if job["queue_rank"] is not None:
        out.append(("queue_rank", None, str(job["queue_rank"])))
    out.append(("queue_type", None, "E"))
    if job["comment"]:
        out.append(("comment", None, job["comment"]))
    if "u" not in job["hold"]:  # a job held at submission was never eligible
        out.append(("etime", None, str(int(job["etime"]))))
    if state == "C" and job["exit_status"] is not None:
        out.append(("exit_status", None, str(job["exit_status"])))
    out.append(("submit_args", None, job["submit_args"]))
    if job["kind"] == "sub":
        out.append(("job_array_id", None, str(job["idx"])))
    if job["kind"] == "template" and job["array_request"]:
        out.append(("job_array_request", None, job["array_request"]))
    if job["start"] is not None:
        out.append(("start_time", None, str(int(job["start"]))))
    if state == "R" and started:
        out.append(("Walltime", "Remaining", str(int(job["walltime"] - elapsed(job, now)))))
    if job["start_count"]:
        out.append(("start_count", None, str(job["start_count"])))
    out.append(("fault_tolerant", None, "False"))
    if state == "C" and job["comp_time"] is not None:
        out.append(("comp_time", None, str(int(job["comp_time"]))))
    out.append(("job_radix", None, "0"))
    if state == "C" and job["comp_time"] is not None and job["start"] is not None:
        out.append(("total_runtime", None, f"{max(0.0, job['comp_time'] - job['start']):f}"))
    out += [
        ("submit_host", None, job["submit_host"]),
        ("init_work_dir", None, job["init_work_dir"]),
    ]
    if job["gpu_flags"] is not None:  # JOB_ATR_gpu_flags: set with exec_gpus
        out.append(("gpu_flags", None, str(job["gpu_flags"])))
    out.append(("request_version", None, "1"))
    return out
