"""``phorque-evaluate --snapshot FILE`` and ``--save-snapshot FILE``: the real command, in a
process of its own, plans on a saved case without reading Torque, a cloud or the state."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from phorque.adapters.snapshot_file import read_saved
from tests.unit.test_snapshot_cases import _good, _set

ROOT = Path(__file__).resolve().parents[2]


def _config(tmp_path: Path, policy: str) -> Path:
    # Torque and the cloud are nowhere: the command must read neither.
    conf = tmp_path / "phorque.conf"
    conf.write_text(f"""[Phorque]
cluster_directory = {tmp_path / 'no-torque'}
torque_home = {tmp_path / 'no-torque'}
state_dir = {tmp_path / 'state'}
trigger_address =

[Policy]
{policy}

[Cloud-elsewhere]
cloud_uri = http://127.0.0.1:1
autoscale_uri = http://127.0.0.1:1
access_id = testing
secret_key = testing
image_id = ami-1
instance_type = t3.medium
instance_cores = 4
max_instances = 2
autoscale_group_name = nowhere
""")
    return conf


def _evaluate(conf: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "phorque.cli.evaluate", "-c", str(conf), *args],
                          capture_output=True, text=True, timeout=120, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_command_plans_on_a_case(tmp_path):
    case = "tests/cases/max_instances_spill.json"
    conf = _config(tmp_path, "name = OnDemand")
    proc = _evaluate(conf, "--snapshot", case, "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    saved = read_saved(str(ROOT / case))
    assert out["executed"] is False and out["policy"] == "OnDemand"
    assert out["actions"] == saved.plan and out["notes"] == saved.notes
    assert [(a["cloud"], a["count"]) for a in out["actions"]] == [("cheap", 2), ("dear", 2)]
    assert out["cluster"] == {"queued_jobs": 4, "queued_cores": 16, "total_cores": 0, "free_cores": 0,
                              "down_cores": 0}
    assert out["time"] == "2023-11-14T22:13:20+00:00"  # the snapshot's own time
    assert out["snapshot"]["same_plan"] is True and out["snapshot"]["same_policy"] is True
    assert out["snapshot"]["file"] == case
    assert not (tmp_path / "state").exists()  # nothing written, no lock taken

    text = _evaluate(conf, "--snapshot", case)
    assert text.returncode == 0, text.stderr
    assert "would launch +2 on cheap (0->2)" in text.stdout
    assert f"snapshot {case}: the plan is the one saved" in text.stdout


def test_command_says_when_the_plan_or_the_policy_differs(tmp_path):
    case = "tests/cases/walltime_aware_waits.json"
    conf = _config(tmp_path, "name = CostAware\nprice_per_hour = 10\nwalltime_aware = false")
    proc = _evaluate(conf, "--snapshot", case)
    assert proc.returncode == 1, proc.stderr
    assert "would launch +1 on hotel" in proc.stdout
    assert 'the saved plan was made by policy CostAware; planned here with CostAware: options' in proc.stdout
    assert '"walltime_aware": false' in proc.stdout and '"walltime_aware": true' in proc.stdout
    assert "the plan differs from the one saved:" in proc.stdout
    assert '    +{"action": "launch", "cloud": "hotel", "count": 1' in proc.stdout
    as_json = json.loads(_evaluate(conf, "--snapshot", case, "--json").stdout)
    assert as_json["snapshot"]["same_plan"] is False and as_json["snapshot"]["same_policy"] is False
    assert as_json["snapshot"]["saved_actions"] == [] and len(as_json["actions"]) == 1


def test_command_saves_again_what_it_planned(tmp_path):
    case = ROOT / "tests/cases/drained_put_back.json"
    conf = _config(tmp_path, "name = CostAware\nprice_per_hour = 10")
    out = tmp_path / "again.json"
    proc = _evaluate(conf, "--snapshot", str(case), "--save-snapshot", str(out))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(out.read_text()) == json.loads(case.read_text())


def test_command_that_cannot_save_says_so(tmp_path):
    conf = _config(tmp_path, "name = CostAware\nprice_per_hour = 10")
    target = tmp_path / "missing-dir" / "x.json"
    proc = _evaluate(conf, "--snapshot", "tests/cases/cheapest_cloud.json", "--save-snapshot", str(target))
    assert proc.returncode == 1
    assert "would launch +1 on cheap" in proc.stdout  # the plan is still shown
    assert f"cannot save the snapshot to {target}: No such file or directory" in proc.stderr
    assert not target.parent.exists()


def test_command_on_a_malformed_file(tmp_path):
    conf = _config(tmp_path, "name = OnDemand")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(_set(_good(), ["snapshot", "jobs", 0, "cores"], "four")))
    proc = _evaluate(conf, "--snapshot", str(bad))
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f'phorque: saved snapshot: {bad}: snapshot.jobs[0].cores: '
                                   'expected an integer, got "four"')
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    as_json = _evaluate(conf, "--snapshot", str(bad), "--json")
    assert as_json.returncode == 2 and json.loads(as_json.stdout)["executed"] is False


def test_command_shows_a_hostile_field_name_escaped(tmp_path):
    conf = _config(tmp_path, "name = OnDemand")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(_set(_good(), ["snapshot", "\x1b[2J"], 1)))
    proc = _evaluate(conf, "--snapshot", str(bad))
    assert proc.returncode == 2
    assert "snapshot.\\x1b[2J: unknown field of Snapshot" in proc.stderr and "\x1b" not in proc.stderr


def test_snapshot_takes_no_live_options(tmp_path):
    conf = _config(tmp_path, "name = OnDemand")
    proc = _evaluate(conf, "--snapshot", "tests/cases/cheapest_cloud.json", "--local")
    assert proc.returncode == 2 and "takes no --async or --local" in proc.stderr


def test_command_says_when_only_the_wake_up_differs(tmp_path):
    # The same idle instance, drained 300 s before its boundary instead of 120 s: no action
    # either way, but the plan looks again at another moment.
    case = "tests/cases/idle_mid_period.json"
    conf = _config(tmp_path, "name = CostAware\nprice_per_hour = 10\nscale_in_margin_secs = 300")
    proc = _evaluate(conf, "--snapshot", case)
    assert proc.returncode == 1, proc.stderr
    assert "the plan differs from the one saved:" in proc.stdout
    assert '    -{"wake_at": 1700001680.0}' in proc.stdout and '    +{"wake_at": 1700001500.0}' in proc.stdout
    out = json.loads(_evaluate(conf, "--snapshot", case, "--json").stdout)["snapshot"]
    assert (out["same_plan"], out["wake_at"], out["saved_wake_at"]) == (False, 1700001500.0, 1700001680.0)
