"""End to end: ``phorque-evaluate --save-snapshot`` against the Torque sandbox and a moto server,
and ``--snapshot`` on the file it wrote, with the cluster gone."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from phorque.adapters.config import load_config
from phorque.adapters.snapshot_file import read_saved
from tests.integration.kit import conf_text


def _run(conf, *args):
    return subprocess.run([sys.executable, "-m", "phorque.cli.evaluate", "-c", str(conf), *args],
                          capture_output=True, text=True, timeout=120)


def test_save_snapshot_then_plan_on_it(make_sandbox, moto, tmp_path):
    sandbox = make_sandbox(nodes=1, np=2, boot_delay=1)
    sandbox.qsub("-l", "nodes=1:ppn=4", runtime=30)
    conf = tmp_path / "phorque.conf"
    conf.write_text(conf_text(tmp_path, sandbox, moto, charge=3600, margin=60))
    dry_file = tmp_path / "dry.json"

    dry = _run(conf, "--dry-run", "--json", "--save-snapshot", str(dry_file))
    assert dry.returncode == 0, dry.stderr
    printed = json.loads(dry.stdout)
    saved = read_saved(str(dry_file))
    assert saved.plan == printed["actions"] and saved.notes == printed["notes"]
    assert [(a["action"], a["cloud"], a["count"]) for a in saved.plan] == [("launch", "local", 1)]
    assert saved.policy["name"] == "CostAware" and saved.policy["price_per_hour"] == 10.0
    assert saved.policy["options"]["scale_in_margin_secs"] == 60
    assert [j.cores for j in saved.snapshot.jobs if j.is_queued] == [4]
    assert [n.np for n in saved.snapshot.nodes] == [2]
    assert [c.name for c in saved.snapshot.clouds] == ["local"]
    assert "--dry-run" in saved.description
    assert not os.path.exists(load_config(conf).phorque.state_path)  # a dry run still writes no state
    assert os.stat(dry_file).st_mode & 0o777 == 0o600

    # A real evaluation saves the snapshot it acted on and its plan.
    done_file = tmp_path / "done.json"
    done = _run(conf, "--json", "--save-snapshot", str(done_file))
    assert done.returncode == 0, done.stderr
    executed = json.loads(done.stdout)
    assert executed["executed"] is True
    kept = read_saved(str(done_file))
    assert [(a["action"], a["cloud"], a["count"]) for a in kept.plan] == [("launch", "local", 1)]
    assert "(executed)" in kept.description

    # With the cluster stopped, the saved file alone gives the same plan.
    sandbox.stop()
    again = _run(conf, "--snapshot", str(dry_file), "--json")
    assert again.returncode == 0, again.stderr
    out = json.loads(again.stdout)
    assert out["actions"] == saved.plan and out["snapshot"]["same_plan"] is True
    assert out["executed"] is False
