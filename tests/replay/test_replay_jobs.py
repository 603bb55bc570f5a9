"""``phorque-replay --jobs N``: the policies replayed in worker processes print what one process
prints, in the same order (only each replay's own run time may differ)."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

from phorque.replay import ReplaySettings
from phorque.replay.cli import main
from phorque.replay.parallel import replay_all
from phorque.replay.swf import read_swf
from phorque.replay.trace import Window

LUBLIN = Path("/work/shared/traces/lublin_256.swf.gz")
WINDOW = [str(LUBLIN), "--start", "10", "--days", "2", "--local-nodes", "8", "--local-np", "8", "--quiet"]


def _run(capsys, *args: str) -> str:
    assert main([*WINDOW, *args]) == 0
    return capsys.readouterr().out


def _without_run_time(table: str) -> list[str]:
    """The table's lines without the run time column (the only wall-clock figure)."""
    lines = []
    for line in table.splitlines():
        line = re.sub(r"\s+(run time|-+|[0-9.]+ s)$", "", line) if line.strip() else line
        lines.append(" ".join(line.split()))
    return lines


def test_two_jobs_print_the_same_json_as_one(capsys):
    one = _run(capsys, "--json", "--jobs", "1")
    two = _run(capsys, "--json", "--jobs", "2")
    assert one == two
    policies = [r["policy"] for r in json.loads(one)["results"]]
    assert policies == ["LocalOnly", "OnDemandPlusPlus", "OnDemand", "CostAware", "LaunchMax"]


def test_two_jobs_print_the_same_table_as_one(capsys):
    one = _run(capsys, "--jobs", "1", "--charge", "0")
    three = _run(capsys, "--jobs", "3", "--charge", "0")
    assert "run time" in one
    assert _without_run_time(one) == _without_run_time(three)
    assert _without_run_time(one) != _without_run_time(_run(capsys, "--jobs", "1"))  # the test can fail


def test_workers_report_each_policy_once_and_keep_the_order():
    trace = read_swf(LUBLIN, Window("10", 2))
    settings = ReplaySettings(local_nodes=8, local_np=8)
    names = ["CostAware", "LocalOnly", "OnDemand"]
    stream = io.StringIO()
    results = replay_all(trace, settings, names, jobs=2, stream=stream)
    assert [r.policy for r in results] == names
    said = stream.getvalue().splitlines()
    assert sorted(line.split(":")[0] for line in said) == sorted(names)
    alone = replay_all(trace, settings, names, jobs=1)
    assert [r.as_dict() for r in results] == [r.as_dict() for r in alone]
    assert [r.series for r in results] == [r.series for r in alone]


def test_jobs_below_one_is_a_usage_error(capsys):
    assert main([*WINDOW, "--jobs", "0"]) == 2
    assert "--jobs must be at least 1" in capsys.readouterr().err
