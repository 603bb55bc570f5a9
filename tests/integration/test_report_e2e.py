"""``phorque-report`` on the state and accounting log an end-to-end run wrote: the daemon launches
instances for two jobs on the sandbox and a moto server, the jobs run and end, the idle instances
are drained before their next charge and terminated; the report shares the paid time."""

from __future__ import annotations

import csv
import io
import json
import math
import subprocess
import sys
from datetime import date, timedelta

from phorque.adapters.state import StateStore
from tests.integration.kit import conf_text, wait_until
from tests.integration.test_daemon_e2e import start_daemon  # noqa: F401 (a fixture)

CHARGE = 30
PRICE = 0.36


def report(conf, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "phorque.cli.report", "-c", str(conf), *args],
                          capture_output=True, text=True, timeout=120)


def billed_total(rows: list[dict]) -> float:
    """What the instances cost by their billing periods: each from its launch for whole
    periods of CHARGE seconds (at least one), at PRICE per hour."""
    total = 0.0
    for row in rows:
        lived = row["ended"] - row["launched"]
        periods = max(1, math.ceil(lived / CHARGE - 1e-9))
        total += periods * CHARGE * PRICE / 3600
    return total


def test_the_report_shares_each_instances_paid_time_among_its_jobs(
        make_sandbox, moto, tmp_path, start_daemon):  # noqa: F811
    sandbox = make_sandbox(nodes=1, np=2, boot_delay=1)
    text = conf_text(tmp_path, sandbox, moto, charge=CHARGE, margin=12, max_instances=2, cores=4,
                     price=PRICE, budget="1", loop_sleep=5)
    daemon = start_daemon(text)
    jobs = [sandbox.qsub("-l", "nodes=1:ppn=4", runtime=4) for _ in range(2)]
    wait_until(lambda: all(sandbox.records("E", j) for j in jobs), 240, "both jobs to end")
    state = StateStore(str(tmp_path / "state" / "phorque.db"))
    wait_until(lambda: (rows := state.billing()) and all(r["ended"] for r in rows), 300,
               "every instance terminated and gone")
    assert daemon.stop() == 0
    rows = state.billing()
    assert len(rows) == 2 and all(r["node"] for r in rows)
    ran_on = {line.split("exec_host=")[1].split()[0].split("/")[0]
              for j in jobs for line in [sandbox.records("E", j)[0][3]]}
    assert ran_on == {r["node"] for r in rows}  # each job ran on one of the instances

    done = report(tmp_path / "phorque.conf", "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    expected = billed_total(rows)
    assert data["total"] == round(expected, 6)
    assert sum(inst["cost"] for inst in data["instances"]) == data["total"]
    assert {i["instance_id"] for i in data["instances"]} == {r["instance_id"] for r in rows}
    lines = data["lines"]
    assert round(sum(line["cost"] for line in lines), 6) == data["total"]  # the parts add up
    shares = {line["key"]: line for line in lines if line["kind"] == "jobs"}
    assert set(shares) == set(jobs)
    for job in jobs:
        # 4 cores for about 4 s on a 4-core instance: its share is its core-seconds' worth.
        share = shares[job]
        assert share["cost"] > 0 and 3 * 4 <= share["core_secs"] <= 20 * 4, share
        assert abs(share["cost"] - share["core_secs"] * PRICE / 3600 / 4) <= 2e-6
    idle = [line for line in lines if line["kind"] == "idle"]
    assert idle and all(line["cloud"] == "local" for line in idle)
    assert sum(line["cost"] for line in idle) > 0  # the booting and drain time was paid too
    assert data["clouds"][0]["charge_time_secs"] == CHARGE
    today = date.today().isoformat()
    assert [d["day"] for d in data["days"]] in ([today], [(date.today() - timedelta(days=1)).isoformat(), today])
    assert round(sum(d["cost"] for d in data["days"]), 6) == data["total"]
    assert all(d["budget"] == 24.0 or d["budget"] in (23.0, 25.0) for d in data["days"])

    # The same figures as CSV and as a table, and grouped another way.
    done = report(tmp_path / "phorque.conf", "--csv")
    assert done.returncode == 0, done.stderr
    rows_csv = list(csv.DictReader(io.StringIO(done.stdout)))
    assert len(rows_csv) == len(lines)
    assert round(sum(float(r["cost"]) for r in rows_csv), 6) == data["total"]
    by_user = json.loads(report(tmp_path / "phorque.conf", "--json", "--by", "user").stdout)
    assert by_user["total"] == data["total"]
    users = [line for line in by_user["lines"] if line["kind"] == "jobs"]
    assert len(users) == 1 and users[0]["jobs"] == 2
    assert users[0]["cost"] == round(sum(shares[j]["cost"] for j in jobs), 6)
    table = report(tmp_path / "phorque.conf").stdout
    assert "TOTAL" in table and "add up to the total (checked)" in table
    assert f"{data['total']:.6f}" in table

    # A window after everything: nothing paid in it.
    later = (date.today() + timedelta(days=2)).isoformat()
    empty = json.loads(report(tmp_path / "phorque.conf", "--json", "--since", later).stdout)
    assert empty["total"] == 0 and not [line for line in empty["lines"] if line["cost"]]
    bad = report(tmp_path / "phorque.conf", "--since", "yesterday")
    assert bad.returncode == 2 and "--since" in bad.stderr
