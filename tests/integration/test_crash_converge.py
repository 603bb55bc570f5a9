"""Crash anywhere, converge: the real daemon is killed with SIGKILL at each crash point (every
step where a change outside and its state write are not atomic together), restarted, and must
converge: no duplicate launch, no instance left running and unknown after the boot timeout, no
Torque node without an instance, no job killed, no state record stuck or lost.

Every case is its own world (a sandbox whose cloud nodes live and die with their EC2 instances,
one region of a moto server, a state folder); the worlds run side by side, so the whole matrix
takes about as long as its slowest scenario.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest

from phorque.act.crashpoints import ENV, POINTS
from phorque.core.model import Stage
from tests.cloud.cloudkit import set_faults
from tests.integration.crashkit import REGIONS, Audit, MotoProcess, World, daemon_env
from tests.integration.kit import exit_statuses, wait_until
from tests.servers import faults as fault_proxy

#: Seconds a scenario may take to converge once restarted: a deadline for a hang, generous
#: enough for a machine loaded by other work (nine worlds run side by side here).
CONVERGE_SECS = 400
#: How late past the boot timeout an unjoined instance may still live (evaluation cadence,
#: and a daemon restart after a crash, on a loaded machine).
GRACE_SECS = 90
WORKERS = 9
#: Long enough for a daemon restart on a busy machine, short enough to wait for.
BOOT_TIMEOUT = 20

LIFECYCLE_POINTS = ("observe.saved", "launch.before", "launch.after", "join.before", "join.created",
                    "join.recorded", "drain.recorded", "drain.offline", "terminate.before",
                    "terminate.after", "remove.before", "remove.after")
CASES = ([("lifecycle", p) for p in LIFECYCLE_POINTS]
         + [("undrain", "undrain.cleared"), ("outage", "launch.after"),
            ("boot-timeout", "terminate.before"), ("boot-timeout", "terminate.after"),
            ("stalled-request", "cancel.before"), ("stalled-request", "cancel.after")])


@dataclass
class Result:
    """What one scenario did and saw."""

    needed: int                       # instances one decision asks for
    crash_codes: list[int | None] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)
    max_desired: int = 0
    launched: int = 0                 # instances ever launched in the group
    unknown_late: list[str] = field(default_factory=list)  # seen while it ran
    final: Audit | None = None
    records: list = field(default_factory=list)
    exits: dict[str, int] = field(default_factory=dict)
    jobs: list[str] = field(default_factory=list)
    interrupted: list[list[str]] = field(default_factory=list)  # D and R accounting records
    stop_code: int | None = None
    notes: dict = field(default_factory=dict)


class Sampler(threading.Thread):
    """Watches a world while it runs: the highest desired capacity, and any live instance that
    is still not a Torque node well after the boot timeout."""

    def __init__(self, world: World, result: Result):
        super().__init__(daemon=True)
        self.world, self.result = world, result
        self.done = threading.Event()
        self.since = 0.0  # boot timeouts count from here (a daemon that is kept down counts nothing)

    def run(self) -> None:
        while not self.done.wait(1.0):
            try:
                self.sample()
            except Exception as exc:  # a slow moment of moto: the next look counts
                self.result.notes.setdefault("sampler", []).append(repr(exc))

    def sample(self) -> None:
        w, r = self.world, self.result
        r.max_desired = max(r.max_desired, w.desired())
        instances = w.instances()
        names = set(w.nodes())
        now = time.time()
        for inst in instances:
            age = now - max(inst.launch_time, self.since)
            if inst.live and inst.dns not in names and age > w.boot_timeout + GRACE_SECS:
                r.unknown_late.append(f"{inst.id} unknown to Torque {age:.0f} s after its launch")

    def stop(self) -> None:
        self.done.set()
        self.join(timeout=30)
        self.sample()


def converged(world: World, jobs: list[str]) -> bool:
    """Every job ended, no instance lives, only static nodes remain, every record is final."""
    if not set(jobs) <= set(exit_statuses(world.sandbox)):
        return False
    if any(i.live for i in world.instances()) or set(world.nodes()) != world.static:
        return False
    return all(r.stage == Stage.GONE for r in world.records())


def die_at(world: World, result: Result, *points: str) -> None:
    """Start the daemon once per crash point, each time letting it die there."""
    for point in points:
        proc = world.daemon(point)
        result.crash_codes.append(proc.wait(timeout=300))
        if proc.alive():
            proc.kill()


def finish(world: World, result: Result, jobs: list[str], sampler: Sampler) -> None:
    """Restart without a crash point, wait for convergence, collect the evidence."""
    proc = world.daemon()
    try:
        # Convergence counts only once the restarted daemon has looked (and set its signals).
        wait_until(lambda: "evaluation #1 " in proc.text() or not proc.alive(), 300, "the first evaluation")
        wait_until(lambda: converged(world, jobs) or not proc.alive(), CONVERGE_SECS, "convergence",
                   interval=0.5)
    except AssertionError:
        result.notes["not converged"] = True
    result.final = world.audit()
    result.stop_code = proc.stop()
    sampler.stop()
    result.launched = len(world.instances())
    result.records = world.records()
    result.exits = exit_statuses(world.sandbox)
    result.jobs = jobs
    result.interrupted = world.sandbox.records("D") + world.sandbox.records("R")
    result.logs = [p.text() for p in world.daemons]


def evaluations(proc) -> int:
    """Evaluations the daemon has finished (done or skipped), from its log."""
    return proc.text().count("evaluation #")


def qsub4(world: World, count: int, runtime: float = 3) -> list[str]:
    return [world.sandbox.qsub("-l", "nodes=1:ppn=4", runtime=runtime) for _ in range(count)]


def begin(world: World, needed: int, point: str) -> tuple[Result, list[str], Sampler]:
    """Submit ``needed`` jobs of one instance each, start watching, and let the daemon die at
    ``point``."""
    result = Result(needed=needed)
    jobs = qsub4(world, needed)
    sampler = Sampler(world, result)
    sampler.start()
    die_at(world, result, point)
    return result, jobs, sampler


def lifecycle(world: World, point: str) -> Result:
    """Two jobs launch two instances that join, run the jobs, idle, drain and go at their
    charge boundary; the daemon dies at ``point`` on the way."""
    result, jobs, sampler = begin(world, 2, point)
    finish(world, result, jobs, sampler)
    return result


def outage(world: World, point: str) -> Result:
    """Dies just after launching, and stays down longer than the boot timeout: the restarted
    daemon must join the two healthy instances it never saw, not terminate them as instances
    that never booted (and launch two more)."""
    result, jobs, sampler = begin(world, 2, point)
    # Down until both instances are older than the boot timeout (what makes this an outage).
    wait_until(lambda: len(world.instances()) == 2 and all(
        time.time() - i.launch_time > world.boot_timeout + 5 for i in world.instances()),
        world.boot_timeout + 300, "the outage to outlast the boot timeout", interval=0.5)
    sampler.since = time.time()
    finish(world, result, jobs, sampler)
    return result


def undrain(world: World, point: str) -> Result:
    """Dies just after offlining a node to drain it; two longer jobs arrive meanwhile (one starts
    on the other node, one waits), so the restarted daemon puts the drained node back in
    service, and dies there too; the third start converges (and uses the two paid instances,
    launching none)."""
    result, jobs, sampler = begin(world, 2, "drain.offline")
    jobs += qsub4(world, 2, runtime=10)
    die_at(world, result, point)
    finish(world, result, jobs, sampler)
    return result


def boot_timeout(world: World, point: str) -> Result:
    """The instance stays pending (the fault proxy) and never joins; the daemon dies while
    terminating it. After the restart the instance must be gone, and the cloud backed off: the
    still-queued job must not launch it again at once."""
    result, (job,), sampler = begin(world, 1, point)
    proc = world.daemon()
    wait_until(lambda: not any(i.live for i in world.instances()), 300, "the stuck instance to go")
    # A restarted daemon without the back-off would have launched again within two evaluations.
    seen = evaluations(proc)
    wait_until(lambda: evaluations(proc) >= seen + 2, 300, "two more evaluations", interval=0.2)
    result.notes["launched before the job was deleted"] = len(world.instances())
    result.notes["health"] = world.health()
    result.notes["checked at"] = time.time()
    world.sandbox.run("qdel", job, check=True)
    proc.stop()
    finish(world, result, [], sampler)
    return result


def stalled_request(world: World, point: str) -> Result:
    """The cloud takes the request but never starts an instance (moto with a launch
    configuration it cannot launch); after the boot timeout the request is cancelled, and the
    daemon dies around that."""
    result, (job,), sampler = begin(world, 1, point)
    proc = world.daemon()
    wait_until(lambda: world.desired() == 0, 300, "the request to be cancelled")
    seen = evaluations(proc)
    wait_until(lambda: evaluations(proc) >= seen + 2, 300, "two more evaluations", interval=0.2)
    result.notes["desired after the cancel"] = world.desired()
    world.sandbox.run("qdel", job, check=True)
    proc.stop()
    finish(world, result, [], sampler)
    return result


SCENARIOS: dict[str, Callable[[World, str], Result]] = {
    "lifecycle": lifecycle, "outage": outage, "undrain": undrain, "boot-timeout": boot_timeout,
    "stalled-request": stalled_request}


def case_id(case: tuple[str, str]) -> str:
    return f"{case[0]}@{case[1]}"


@pytest.fixture(scope="module")
def crash_results(request, tmp_path_factory):
    """Run every selected case side by side, each in its own world; results by case id."""
    wanted = [item.callspec.params["case"] for item in request.session.items
              if item.module is request.module and hasattr(item, "callspec") and "case" in item.callspec.params]
    base = tmp_path_factory.mktemp("crash")
    moto = MotoProcess(base / "moto.log")
    proxies = []
    results: dict[str, Result | BaseException] = {}
    try:
        regions = dict(zip((case_id(c) for c in CASES), REGIONS, strict=False))
        moto.warm(regions[case_id(c)] for c in wanted)

        def run(case: tuple[str, str]) -> None:
            scenario, point = case
            extra = {}
            endpoint = None
            if scenario == "boot-timeout":
                running, _ = fault_proxy.start(moto.url)
                proxies.append(running)
                set_faults(running.url, stuck_pending={"new": True})
                endpoint = running.url
            if scenario == "stalled-request":
                extra["extra_cloud"] = "security_groups = sg-0missing\n"
            world = World(base / case_id(case), moto.url, regions[case_id(case)], endpoint=endpoint,
                          boot_timeout=BOOT_TIMEOUT, charge=20, margin=5, loop_sleep=5, **extra)
            try:
                results[case_id(case)] = SCENARIOS[scenario](world, point)
            except BaseException as exc:  # reported by the case's own test
                results[case_id(case)] = exc
            finally:
                world.close()

        with ThreadPoolExecutor(max_workers=WORKERS) as pool:
            list(pool.map(run, wanted))
        yield results
    finally:
        for running in proxies:
            running.stop()
        moto.stop()


def test_every_crash_point_has_a_case():
    assert {p for _, p in CASES} == set(POINTS)
    assert len({case_id(c) for c in CASES}) == len(CASES) <= len(REGIONS)


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_daemon_killed_at_a_crash_point_converges(case, crash_results):
    scenario, point = case
    result = crash_results[case_id(case)]
    if isinstance(result, BaseException):
        raise result
    logs = "\n----\n".join("\n".join(text.splitlines()[-40:]) for text in result.logs)
    # It really died at that point, by SIGKILL.
    assert result.crash_codes and all(code == -9 for code in result.crash_codes), (result.crash_codes, logs)
    assert f"crash point {point} (pass 1): SIGKILL" in result.logs[len(result.crash_codes) - 1]
    assert not result.notes.get("not converged"), (result.final, logs)
    # No duplicate launch: never more capacity than one decision asks for.
    assert result.max_desired <= result.needed, (result.max_desired, logs)
    assert result.launched == (0 if scenario == "stalled-request" else result.needed), logs
    # Nothing left behind: no unknown instance after the boot timeout, no node without an
    # instance, no record stuck or lost.
    assert result.unknown_late == [], result.unknown_late
    assert result.final is not None and result.final.clean, str(result.final)
    assert all(r.stage == Stage.GONE for r in result.records), result.records
    # No job killed: each ended once with Exit_status 0, none deleted or requeued.
    assert result.exits == {job: 0 for job in result.jobs}
    assert [r for r in result.interrupted if r[1] == "R" or r[2] in result.jobs] == []
    assert result.stop_code == 0
    assert "Traceback" not in logs and "failed unexpectedly" not in logs
    if scenario == "boot-timeout":
        # The instance that never joined counts against its cloud even though the daemon died
        # in the middle of terminating it: the restarted daemon did not launch it again.
        assert result.notes["launched before the job was deleted"] == 1
        health = result.notes["health"]["local"]
        assert health["failures"] >= 1 and health["backoff_until"] > result.notes["checked at"]
    if scenario == "stalled-request":
        assert result.notes["desired after the cancel"] == 0


def test_a_crash_point_kills_on_the_chosen_pass_and_a_wrong_name_is_reported():
    code = ("from phorque.act.crashpoints import crashpoint\n"
            "crashpoint('launch.before'); print('first', flush=True)\n"
            "crashpoint('launch.after'); crashpoint('launch.before'); print('second', flush=True)\n")

    def run(spec: str) -> subprocess.CompletedProcess:
        env = {**daemon_env(), ENV: spec}
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30,
                              env=env)

    second = run("launch.before:2")
    assert second.returncode == -9 and second.stdout == "first\n"
    assert "crash point launch.before (pass 2): SIGKILL" in second.stderr
    first = run("launch.before")
    assert first.returncode == -9 and first.stdout == ""
    typo = run("lunch.before")
    assert typo.returncode == 0 and typo.stdout == "first\nsecond\n"
    assert "names no crash point" in typo.stderr
    unset = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30,
                           env=daemon_env())
    assert unset.returncode == 0 and unset.stderr == ""
