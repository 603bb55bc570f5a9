"""A configured queue that names no job of the trace is said on stderr, never a silent replay
without cloud use: a refusal (exit 2) when no job could make a policy launch, a warning when only
some configured queues match none."""

from __future__ import annotations

import json
from pathlib import Path

from phorque.replay.cli import main
from phorque.replay.queues import check_queues, trace_queues
from tests.replay.swfdata import HEADER, swf_line

CLOUD = """
[Cloud-{name}]
image_id = ami-1
autoscale_group_name = {name}
instance_type = m5.xlarge
instance_cores = 4
max_instances = 4
price = 0.5
{extra}
"""


def config(tmp_path: Path, queue_name: str = "", clouds: tuple[tuple[str, str], ...] = (("hotel", ""),)) -> Path:
    path = tmp_path / "phorque.conf"
    text = f"[Phorque]\nqueue_name = {queue_name}\n\n[Policy]\nname = CostAware\n"
    text += "".join(CLOUD.format(name=name, extra=extra) for name, extra in clouds)
    path.write_text(text)
    return path


def swf(tmp_path: Path, queues: list[int]) -> Path:
    """One 4-core, one-hour job per entry of ``queues`` (its SWF queue number), a minute apart, on
    a 4-core machine: all but the first wait for an hour or more without a cloud."""
    path = tmp_path / "t.swf"
    path.write_text(HEADER.format(procs=4) + "".join(
        swf_line(n, 60 * n, 3600, 4, req_time=7200, queue=q) for n, q in enumerate(queues, 1)))
    return path


def replay(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([*argv, "--local-nodes", "1", "--local-np", "4", "-q"])
    out = capsys.readouterr()
    return code, out.out, out.err


def cost_aware(out: str) -> dict:
    return next(r for r in json.loads(out)["results"] if r["policy"] == "CostAware")


def test_a_production_queue_name_on_numbered_queues_is_refused_naming_the_traces_queues(tmp_path, capsys):
    trace = swf(tmp_path, [1, 1, 2, 1, 1, 2, 1])
    code, out, err = replay(capsys, str(trace), "-c", str(config(tmp_path, "batch")), "--json")
    assert code == 2 and out == ""
    assert "queue_name batch matches no job of the trace" in err
    # The trace's queues, with their job counts, the most common first.
    assert "1 (5 jobs), 2 (2 jobs)" in err
    assert "--queue-name" in err
    # The way out it names works, and the cloud is then used.
    code, out, err = replay(capsys, str(trace), "-c", str(config(tmp_path, "batch")), "--json",
                            "--queue-name", "*")
    assert code == 0, err
    assert cost_aware(out)["cost"] > 0


def test_jobs_without_a_queue_are_named_and_default_queue_is_the_way_out(tmp_path, capsys):
    trace = swf(tmp_path, [-1, -1, -1])
    conf = config(tmp_path, "batch")
    code, _, err = replay(capsys, str(trace), "-c", str(conf), "--json")
    assert code == 2
    assert "(none) (3 jobs)" in err and "--default-queue NAME" in err
    code, out, err = replay(capsys, str(trace), "-c", str(conf), "--json", "--default-queue", "batch")
    assert code == 0, err
    assert "warning" not in err
    assert cost_aware(out)["cost"] > 0


def test_some_configured_queues_matching_none_is_a_warning_and_the_replay_goes_on(tmp_path, capsys):
    trace = swf(tmp_path, [1, 1, 2])
    code, out, err = replay(capsys, str(trace), "-c", str(config(tmp_path, "batch, 1")), "--json")
    assert code == 0, err
    assert "warning: queue_name: batch matches no job of the trace" in err
    assert "only the jobs of 1 count" in err
    assert cost_aware(out)["cost"] > 0


def test_a_cloud_section_whose_queues_match_no_job_is_said(tmp_path, capsys):
    trace = swf(tmp_path, [1, 1, 2])
    # One section for a queue the trace does not have, one for every queue: a warning.
    conf = config(tmp_path, clouds=(("gpu", "queues = gpu"), ("hotel", "")))
    code, out, err = replay(capsys, str(trace), "-c", str(conf), "--json")
    assert code == 0, err
    assert "warning: [Cloud-gpu] queues: gpu matches no job of the trace" in err
    assert "it will never launch" in err
    clouds = cost_aware(out)["clouds"]
    assert clouds["gpu"]["launched"] == 0 and clouds["hotel"]["launched"] > 0
    # Part of a section's queues: it still serves the others.
    conf = config(tmp_path, clouds=(("hotel", "queues = 2, batch"),))
    code, out, err = replay(capsys, str(trace), "-c", str(conf), "--json")
    assert code == 0, err
    assert "[Cloud-hotel] queues: batch matches no job" in err and "it serves only 2" in err
    # Only sections that serve no job of the trace: refused.
    conf = config(tmp_path, clouds=(("gpu", "queues = gpu"),))
    code, out, err = replay(capsys, str(trace), "-c", str(conf), "--json")
    assert code == 2 and out == ""
    assert "no cloud's queues match a job of the trace" in err


def test_a_matching_configuration_says_nothing(tmp_path, capsys):
    trace = swf(tmp_path, [1, 2])
    code, _, err = replay(capsys, str(trace), "-c", str(config(tmp_path, "1,2")), "--json")
    assert code == 0 and err == ""


def test_baselines_alone_only_warn(tmp_path, capsys):
    # LocalOnly and LaunchMax do not read queue_name: nothing in their figures is misleading.
    trace = swf(tmp_path, [1])
    code, _, err = replay(capsys, str(trace), "-c", str(config(tmp_path, "batch")), "--json",
                          "--policy", "LocalOnly")
    assert code == 0
    assert "warning: queue_name batch matches no job" in err


def test_a_few_queues_at_most_the_most_common_first():
    queues = [str(q) for q in range(8) for _ in range(q + 1)]
    assert trace_queues(queues) == ("7 (8 jobs), 6 (7 jobs), 5 (6 jobs), 4 (5 jobs), 3 (4 jobs) and 3 more")
    assert trace_queues(["", "", "batch"]) == "(none) (2 jobs), batch (1 job)"


def test_an_empty_trace_is_not_checked():
    assert check_queues([], frozenset({"batch"}), ()).error is None
