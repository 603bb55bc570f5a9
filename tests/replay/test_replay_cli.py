"""``phorque-replay`` from the command line: its JSON, its table, its errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from phorque.replay.cli import main
from tests.replay.swfdata import write_swf

CONFIG = """\
[Phorque]
loop_sleep_secs = 60

[Policy]
name = CostAware
price_per_hour = 1.5
scale_in_margin_secs = 300

[Cloud-hotel]
image_id = ami-1
autoscale_group_name = hotel
instance_type = m1.small
instance_cores = 4
max_instances = 3
price = 0.5
charge_time_secs = 60
"""


def trace(tmp_path: Path) -> Path:
    jobs = [(k * 30, 600, 4, 900) for k in range(6)] + [(400, 100, 1, 200)]
    return write_swf(tmp_path / "t.swf", jobs, procs=4)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "phorque.replay.cli", *args], capture_output=True,
                          text=True, timeout=120)


def test_json_has_the_documented_shape_and_the_baselines(tmp_path):
    done = run_cli(str(trace(tmp_path)), "--json", "--policy", "CostAware", "OnDemand", "--local-nodes", "1",
                   "--local-np", "4")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["trace"] == "t.swf" and data["jobs"] == 7
    assert [r["policy"] for r in data["results"]] == ["LocalOnly", "CostAware", "OnDemand", "LaunchMax"]
    keys = {"policy", "mean_wait_secs", "p95_wait_secs", "mean_bounded_slowdown", "cost", "instance_hours",
            "paid_utilization", "peak_instances"}
    for row in data["results"]:
        assert keys <= row.keys()
    local_only, launch_max = data["results"][0], data["results"][-1]
    assert local_only["cost"] == 0 and launch_max["peak_instances"] == 16 + 64
    assert local_only["mean_wait_secs"] > data["results"][1]["mean_wait_secs"]


def test_same_command_prints_the_same_json(tmp_path):
    args = (str(trace(tmp_path)), "--json", "--policy", "CostAware", "--local-nodes", "1", "--local-np", "4")
    assert run_cli(*args).stdout == run_cli(*args).stdout


def test_config_gives_clouds_budget_and_policy_options(tmp_path, capsys):
    conf = tmp_path / "phorque.conf"
    conf.write_text(CONFIG)
    code = main([str(trace(tmp_path)), "-c", str(conf), "--json", "--local-nodes", "1", "--local-np", "4"])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert [r["policy"] for r in data["results"]] == ["LocalOnly", "CostAware", "LaunchMax"]
    setup = data["setup"]
    assert setup["price_per_hour"] == 1.5 and setup["loop_sleep_secs"] == 60
    assert [c["name"] for c in setup["clouds"]] == ["hotel"]
    for row in data["results"]:
        assert row["peak_instances"] <= 3  # max_instances, and 1.5/h buys 3 at 0.5
        assert row["peak_rate"] <= 1.5


def test_text_table_and_charge_override(tmp_path, capsys):
    code = main([str(trace(tmp_path)), "--policy", "OnDemand", "--charge", "0", "--local-nodes", "1",
                 "--local-np", "4", "--quiet"])
    out = capsys.readouterr().out
    assert code == 0
    assert "billed per second" in out
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("policy"))
    assert [line.split()[0] for line in lines[header + 2:header + 5]] == ["LocalOnly", "OnDemand", "LaunchMax"]


def test_usage_errors_are_reported_not_raised(tmp_path, capsys):
    assert main([str(tmp_path / "missing.swf")]) == 2
    assert "missing.swf" in capsys.readouterr().err
    assert main([str(trace(tmp_path)), "--policy", "Nope"]) == 2
    assert "no policy named 'Nope'" in capsys.readouterr().err
    assert main([str(trace(tmp_path)), "--budget", "lots"]) == 2
    assert "--budget" in capsys.readouterr().err


def test_plot_draws_a_png_or_says_what_is_missing(tmp_path, capsys):
    png = tmp_path / "out.png"
    code = main([str(trace(tmp_path)), "--policy", "CostAware", "--local-nodes", "1", "--local-np", "4",
                 "--plot", str(png), "--quiet"])
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert code == 2
        assert "matplotlib" in capsys.readouterr().err
        assert not png.exists()
    else:
        assert code == 0
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
