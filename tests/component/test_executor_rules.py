"""The executor's safety rules, one table row each, against in-memory Torque and clouds.

Each row sets up what happens around a scale-in (a job landing on the node between Phorque's
offline and its re-read, an administrator's note, a failing cloud) and says what must follow:
the outcome of every action, whether the instance still runs, and what the node looks like.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from phorque.act.executor import (
    ADMIN_CHANGED,
    AT_CAPACITY,
    PICKED_UP_A_JOB,
    TERMINATE_FAILED,
    Executor,
    Outcome,
)
from phorque.core.errors import CloudError, CommandError
from phorque.core.model import OFFLINE, Owned, Stage
from phorque.core.plan import Action, Kind, Plan
from phorque.policy.view import drain_note, is_drain_note, join_note
from tests.component.bed import Bed

CLOUD = "hotel"


@pytest.fixture
def bed(tmp_path) -> Bed:
    bed = Bed(tmp_path)
    bed.configure({CLOUD: {"max_instances": 4}, "sierra": {"price": 0.2}})
    return bed


def joined(bed: Bed, count: int = 1) -> list[tuple[str, str]]:
    """``count`` instances of hotel booted, joined as nodes and recorded idle: (id, node)."""
    cloud = bed.clouds[CLOUD]
    cloud.set_desired(len(cloud.live()) + count)
    bed.clock.advance(cloud.boot_secs)
    out = []
    for iid in cloud.live()[-count:]:
        name = cloud.dns_of(iid)
        bed.torque.with_node(name, np=4, note=join_note(CLOUD, iid))
        bed.state.save([Owned(iid, CLOUD, Stage.IDLE, node=name, first_seen=bed.clock(),
                              launch_time=bed.clock(), joined_at=bed.clock())], bed.clock())
        out.append((iid, name))
    bed.clock.advance(600)
    cloud.calls.clear()
    bed.torque.calls.clear()
    return out


def booted(bed: Bed) -> tuple[str, str]:
    """One instance of hotel booted and not yet a node: (id, its DNS name)."""
    cloud = bed.clouds[CLOUD]
    cloud.set_desired(1)
    bed.clock.advance(cloud.boot_secs)
    (iid,) = cloud.live()
    return iid, cloud.dns_of(iid)


@dataclass
class Run:
    outcomes: list[Outcome]
    reports: list[tuple[str, str | None]]
    executor: Executor

    def status(self, kind: Kind) -> list[str]:
        return [o.status for o in self.outcomes if o.action.kind == kind]

    def detail(self, kind: Kind) -> str:
        return next(o.detail for o in self.outcomes if o.action.kind == kind)


def apply(bed: Bed, *actions: Action) -> Run:
    assert bed.config is not None
    reports: list[tuple[str, str | None]] = []
    executor = Executor(bed.torque, bed.clouds, {c.name: c for c in bed.config.clouds}, bed.state,
                        bed.clock(), lambda cloud, error: reports.append((cloud, error)))
    outcomes = executor.apply(Plan(actions=actions), bed.snapshot())
    return Run(outcomes, reports, executor)


def scale_in(iid: str, name: str, fault: bool = False) -> tuple[Action, ...]:
    """What a policy plans for an idle cloud node at its charge boundary."""
    return (Action(Kind.DRAIN, "idle", cloud=CLOUD, instance=iid, node=name),
            Action(Kind.TERMINATE, "idle", cloud=CLOUD, instance=iid, node=name, fault=fault),
            Action(Kind.REMOVE, "idle", cloud=CLOUD, instance=iid, node=name))


# -- scale-in ----------------------------------------------------------------------------------


def _job_lands_after_offline(bed: Bed, name: str) -> None:
    bed.torque.submit("7.server", cores=2)
    bed.torque.after("offline", lambda node, note: bed.torque.start("7.server", node))


def _node_missing_after_offline(bed: Bed, name: str) -> None:
    bed.torque.after("offline", lambda node, note: bed.torque.nodes_by_name.pop(node))


def _admin_offline_before(bed: Bed, name: str) -> None:
    bed.torque.offline(name, "disk replaced, testing")
    bed.torque.calls.clear()


def _admin_note_during(bed: Bed, name: str) -> None:
    def admin_writes(node: str, note: str) -> None:
        bed.torque.nodes_by_name[node] = dataclasses.replace(
            bed.torque.nodes_by_name[node], state=frozenset({OFFLINE}), note="memory errors: keep offline")
    bed.torque.after("offline", admin_writes)


def _admin_clears_offline_during(bed: Bed, name: str) -> None:
    bed.torque.after("offline", lambda node, note: bed.torque.clear_offline(node, ""))


def _terminate_fails(bed: Bed, name: str) -> None:
    bed.clouds[CLOUD].fail("terminate")


def _torque_unreadable(bed: Bed, name: str) -> None:
    bed.torque.fail("node", times=10)


@dataclass(frozen=True)
class ScaleIn:
    what: str
    setup: Callable[[Bed, str], None] | None
    drain: str
    terminate: str
    remove: str
    instance_runs: bool
    node_listed: bool
    backs_off: bool = False


SCALE_IN = [
    ScaleIn("an empty node", None, "done", "done", "done", False, False),
    ScaleIn("a job lands between offline and re-read", _job_lands_after_offline,
            "skipped", "skipped", "skipped", True, True),
    ScaleIn("the re-read does not list the node", _node_missing_after_offline,
            "skipped", "skipped", "skipped", True, False),
    ScaleIn("an administrator's offline before", _admin_offline_before,
            "skipped", "skipped", "skipped", True, True),
    ScaleIn("an administrator's note written meanwhile", _admin_note_during,
            "skipped", "skipped", "skipped", True, True),
    ScaleIn("an administrator clears the offline meanwhile", _admin_clears_offline_during,
            "skipped", "skipped", "skipped", True, True),
    ScaleIn("the terminate fails", _terminate_fails, "done", "failed", "skipped", True, True,
            backs_off=True),
    ScaleIn("Torque cannot be read at all", _torque_unreadable,
            "failed", "failed", "skipped", True, True),
]


@pytest.mark.parametrize("row", SCALE_IN, ids=[r.what for r in SCALE_IN])
def test_scale_in_safety(bed, row):
    ((iid, name),) = joined(bed)
    if row.setup is not None:
        row.setup(bed, name)
    run = apply(bed, *scale_in(iid, name))

    assert (run.status(Kind.DRAIN), run.status(Kind.TERMINATE), run.status(Kind.REMOVE)) == \
        ([row.drain], [row.terminate], [row.remove])
    assert (iid in bed.clouds[CLOUD].live()) is row.instance_runs
    assert (name in bed.torque.nodes_by_name) is row.node_listed
    assert [c for c, e in run.reports if e is not None] == ([CLOUD] if row.backs_off else [])
    if not row.instance_runs:
        assert bed.state.get(iid).stage == Stage.TERMINATING


def test_a_node_that_picked_up_a_job_is_put_back_in_service_with_phorques_join_note(bed):
    ((iid, name),) = joined(bed)
    _job_lands_after_offline(bed, name)
    run = apply(bed, *scale_in(iid, name))

    node = bed.torque.nodes_by_name[name]
    assert not node.is_offline and node.note == join_note(CLOUD, iid)
    assert node.jobs == ("7.server",)
    assert bed.state.get(iid).stage == Stage.BUSY
    assert run.detail(Kind.TERMINATE) == PICKED_UP_A_JOB
    assert bed.clouds[CLOUD].called("terminate") == []


def test_an_administrators_offline_is_never_written_over(bed):
    ((iid, name),) = joined(bed)
    _admin_offline_before(bed, name)
    apply(bed, *scale_in(iid, name))

    node = bed.torque.nodes_by_name[name]
    assert node.is_offline and node.note == "disk replaced, testing"
    assert bed.torque.called("offline") == [] and bed.torque.called("clear_offline") == []


def test_an_administrators_note_written_between_read_and_write_wins(bed):
    ((iid, name),) = joined(bed)
    _admin_note_during(bed, name)
    run = apply(bed, *scale_in(iid, name))

    assert bed.torque.nodes_by_name[name].note == "memory errors: keep offline"
    assert run.detail(Kind.TERMINATE) == ADMIN_CHANGED
    assert bed.torque.called("clear_offline") == []


def test_a_failed_terminate_keeps_its_node_and_backs_the_cloud_off(bed):
    (first, second) = joined(bed, 2)
    bed.clouds[CLOUD].fail("terminate")
    run = apply(bed, *scale_in(*first), *scale_in(*second))
    # The first terminate failed: its node stays, the cloud is backed off, and the rest of the
    # plan still runs (the second instance goes: a terminate is no launch).
    assert run.status(Kind.TERMINATE) == ["failed", "done"]
    assert first[1] in bed.torque.nodes_by_name and second[1] not in bed.torque.nodes_by_name
    assert run.detail(Kind.REMOVE) == TERMINATE_FAILED
    assert CLOUD in run.executor.failed_clouds


def test_a_torque_read_failing_during_a_termination_does_not_back_the_cloud_off(bed):
    ((iid, name),) = joined(bed)
    bed.torque.fail("node", CommandError(["pbsnodes"], None, "", "timed out after 30 s"), times=2)
    run = apply(bed, *scale_in(iid, name))
    assert run.status(Kind.TERMINATE) == ["failed"]
    assert run.reports == [] and run.executor.failed_clouds == set()


# -- terminating an instance planned without a node --------------------------------------------


def test_an_instance_planned_without_a_node_is_spared_when_torque_lists_one_now(bed):
    cloud = bed.clouds[CLOUD]
    cloud.set_desired(2)
    bed.clock.advance(cloud.boot_secs)
    spared, gone = cloud.live()
    bed.torque.with_node(cloud.dns_of(spared), note=join_note(CLOUD, spared))
    run = apply(bed, Action(Kind.TERMINATE, "never joined", cloud=CLOUD, instance=spared),
                Action(Kind.TERMINATE, "never joined", cloud=CLOUD, instance=gone))

    assert run.status(Kind.TERMINATE) == ["skipped", "done"]
    assert run.detail(Kind.TERMINATE) == f"Torque lists node {cloud.dns_of(spared)} now"
    assert cloud.live() == [spared]


def test_a_fault_is_reported_before_the_instance_is_terminated(bed):
    """A crash right after the terminate must not lose the fault (a restarted daemon would
    launch on that cloud again at once)."""
    cloud = bed.clouds[CLOUD]
    cloud.set_desired(1)
    (iid,) = cloud.live()
    reported_at_terminate: list[list[tuple[str, str | None]]] = []
    reports: list[tuple[str, str | None]] = []
    cloud.after("terminate", lambda instance: reported_at_terminate.append(list(reports)))
    assert bed.config is not None
    executor = Executor(bed.torque, bed.clouds, {c.name: c for c in bed.config.clouds}, bed.state,
                        bed.clock(), lambda c, e: reports.append((c, e)))
    executor.apply(Plan(actions=(Action(Kind.TERMINATE, "did not join within 900 s", cloud=CLOUD,
                                        instance=iid, fault=True),)), bed.snapshot())

    assert reported_at_terminate == [[(CLOUD, "did not join within 900 s")]]


# -- launching ---------------------------------------------------------------------------------


def test_a_cloud_that_fails_during_the_plan_gets_no_launch_from_the_rest_of_it(bed):
    ((iid, name),) = joined(bed)
    bed.clouds[CLOUD].fail("terminate", CloudError(CLOUD, "TerminateInstanceInAutoScalingGroup", "throttled"))
    run = apply(bed, *scale_in(iid, name),
                Action(Kind.LAUNCH, "queued", cloud=CLOUD, count=2, current=1),
                Action(Kind.LAUNCH, "queued", cloud="sierra", count=1, current=0))

    assert run.status(Kind.LAUNCH) == ["skipped", "done"]
    assert bed.clouds[CLOUD].called("set_desired") == []
    assert bed.clouds["sierra"].desired == 1


def test_a_launch_records_the_capacity_before_it_asks_and_never_lowers_it(bed):
    cloud = bed.clouds[CLOUD]
    cloud.fail("set_desired", CloudError(CLOUD, "SetDesiredCapacity", "read timeout"))
    run = apply(bed, Action(Kind.LAUNCH, "queued", cloud=CLOUD, count=3, current=0))
    # The reply may have been lost after the change was made: the capacity asked for counts
    # against the budget from now on, although the call failed.
    assert run.status(Kind.LAUNCH) == ["failed"]
    assert bed.state.capacities()[CLOUD] == 3

    cloud.set_desired(2)
    run = apply(bed, Action(Kind.LAUNCH, "queued", cloud=CLOUD, count=9, current=2))
    assert run.status(Kind.LAUNCH) == ["done"]
    assert cloud.desired == 4, "capped at max_instances"
    run = apply(bed, Action(Kind.LAUNCH, "queued", cloud=CLOUD, count=1, current=4))
    assert run.status(Kind.LAUNCH) == ["skipped"] and run.detail(Kind.LAUNCH) == AT_CAPACITY


# -- joining, undraining, removing -------------------------------------------------------------


def test_a_join_records_the_intent_first_creates_the_node_and_asks_for_a_cycle(bed):
    iid, name = booted(bed)
    seen_at_create: list[Stage | None] = []
    bed.torque.after("add_node", lambda node, np: seen_at_create.append(
        rec.stage if (rec := bed.state.get(iid)) else None))
    run = apply(bed, Action(Kind.JOIN, "booted", cloud=CLOUD, instance=iid, node=name, np=4))

    assert run.status(Kind.JOIN) == ["done"]
    assert seen_at_create == [Stage.BOOTING]
    assert bed.torque.nodes_by_name[name].note == join_note(CLOUD, iid)
    assert bed.torque.cycles == 1
    assert run.reports == [(CLOUD, None)], "a join is the cloud's success"


def test_a_launch_is_asked_for_before_a_join_runs_its_torque_commands(bed):
    iid, name = booted(bed)
    desired_at_create: list[int] = []
    bed.torque.after("add_node", lambda node, np: desired_at_create.append(bed.clouds[CLOUD].desired))
    # Planned join first: applied launch first (the queued job does not wait for qmgr).
    run = apply(bed, Action(Kind.JOIN, "booted", cloud=CLOUD, instance=iid, node=name, np=4),
                Action(Kind.LAUNCH, "queued", cloud=CLOUD, count=1, current=1))
    assert run.status(Kind.LAUNCH) == ["done"] and run.status(Kind.JOIN) == ["done"]
    assert desired_at_create == [2], "the node was created before the launch was asked for"
    assert [o.action.kind for o in run.outcomes] == [Kind.LAUNCH, Kind.JOIN]


def test_a_failed_join_asks_for_no_cycle_and_keeps_its_first_try(bed):
    iid, name = booted(bed)
    first_try = bed.clock()
    bed.torque.fail("add_node")
    run = apply(bed, Action(Kind.JOIN, "booted", cloud=CLOUD, instance=iid, node=name, np=4))
    assert run.status(Kind.JOIN) == ["failed"] and bed.torque.cycles == 0

    bed.clock.advance(30)
    apply(bed, Action(Kind.JOIN, "booted", cloud=CLOUD, instance=iid, node=name, np=4))
    # The boot clock runs from the first try, so a join that keeps failing is given up in time.
    assert bed.state.get(iid).down_since == first_try
    assert name in bed.torque.nodes_by_name


@pytest.mark.parametrize(("note", "expected"), [
    (drain_note("idle"), "done"),
    ("hardware check", "skipped"),
])
def test_undrain_clears_only_phorques_own_offline(bed, note, expected):
    ((iid, name),) = joined(bed)
    bed.torque.offline(name, note)
    run = apply(bed, Action(Kind.UNDRAIN, "wanted again", cloud=CLOUD, instance=iid, node=name))

    assert run.status(Kind.UNDRAIN) == [expected]
    assert bed.torque.nodes_by_name[name].is_offline is (expected == "skipped")


def test_remove_deletes_only_an_empty_node(bed):
    (busy, empty) = joined(bed, 2)
    bed.torque.submit("9.server")
    bed.torque.start("9.server", busy[1])
    run = apply(bed, Action(Kind.REMOVE, "gone", node=busy[1]), Action(Kind.REMOVE, "gone", node=empty[1]),
                Action(Kind.REMOVE, "gone", node="never-existed"))

    assert run.status(Kind.REMOVE) == ["skipped", "done", "done"]
    assert busy[1] in bed.torque.nodes_by_name and empty[1] not in bed.torque.nodes_by_name
    assert "9.server" in bed.torque.jobs_by_id, "no job was purged"


# -- an instance the cloud took back -----------------------------------------------------------


def test_a_taken_back_instances_jobs_are_requeued_and_its_node_removed(bed):
    ((iid, name),) = joined(bed)
    bed.torque.submit("1.server", cores=1, rerunnable=True)
    bed.torque.submit("2.server", cores=1, rerunnable=False)
    bed.torque.start("1.server", name)
    bed.torque.start("2.server", name)
    bed.clouds[CLOUD].take_back(iid)
    run = apply(bed, Action(Kind.REQUEUE, "spot reclaim", cloud=CLOUD, instance=iid, node=name, fault=True),
                Action(Kind.REMOVE, "spot reclaim", cloud=CLOUD, instance=iid, node=name))

    assert run.status(Kind.REQUEUE) == ["done"] and run.status(Kind.REMOVE) == ["done"]
    assert bed.torque.jobs_by_id["1.server"].state == "Q"
    assert "2.server" not in bed.torque.jobs_by_id, "the job that cannot be requeued is purged"
    assert name not in bed.torque.nodes_by_name
    (row,) = bed.state.interruptions()
    assert row["requeued"] == ["1.server"] and list(row["lost"]) == ["2.server"]
    assert run.reports == [(CLOUD, "spot reclaim")]


def test_a_requeue_that_fails_keeps_the_node_so_its_jobs_are_not_purged(bed):
    ((iid, name),) = joined(bed)
    bed.torque.submit("1.server", rerunnable=True)
    bed.torque.start("1.server", name)
    bed.torque.fail("rerun", CommandError(["qrerun"], 15033, "qrerun: cannot connect to server"))
    run = apply(bed, Action(Kind.REQUEUE, "spot reclaim", cloud=CLOUD, instance=iid, node=name),
                Action(Kind.REMOVE, "spot reclaim", cloud=CLOUD, instance=iid, node=name))

    assert run.status(Kind.REMOVE) == ["skipped"]
    assert "could not requeue 1.server" in run.detail(Kind.REMOVE)
    assert bed.torque.jobs_by_id["1.server"].state == "R" and name in bed.torque.nodes_by_name
    assert is_drain_note(bed.torque.nodes_by_name[name].note) is False


def test_every_kind_of_action_has_a_handler_in_the_executor():
    from phorque.act import executor

    assert set(executor.HANDLERS) == set(Kind)
