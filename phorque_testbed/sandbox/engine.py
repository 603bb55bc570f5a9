"""The sandbox's pbs_server: time, the FIFO scheduler and the life of every job.

An :class:`Engine` works inside one locked :class:`~phorque_testbed.sandbox.store.Session`.
:meth:`Engine.advance` brings the cluster up to a moment: it takes the due events (a job's run
time is over, a booting node's mom reports in, a completed job's ``keep_completed`` expires) in
time order, each at its own due time, and runs a scheduling pass after each, as pbs_server runs
its scheduler whenever resources free up. Because events carry their own times, the outcome is
the same whether a server tick or a command's request happens to process them.

Time: timestamps are real wall-clock seconds. Durations the user gives (a job's run time, the
boot delay, ``keep_completed``) are sandbox seconds, which pass ``speed`` times faster than
real ones; a job records the speed it started with, so changing the speed affects what starts
afterwards.

The scheduler (:mod:`phorque_testbed.sandbox.scheduler`) runs after each event, as pbs_sched does.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from sqlite3 import Row

from phorque_testbed.sandbox import acct, jobfiles, scheduler
from phorque_testbed.sandbox.jobattrs import array_summary_state, job_attributes, ran_until
from phorque_testbed.sandbox.placement import Placement, exec_gpus, exec_host
from phorque_testbed.sandbox.rows import Record
from phorque_testbed.sandbox.store import Session

SIGTERM_EXIT = 271  # 256 + SIGTERM: a running job deleted with qdel
WALLTIME_EXIT = -11  # JOB_EXEC_OVERLIMIT_WT


class TorqueError(Exception):
    """A request pbs_server rejects. ``code`` is the PBSE number, ``text`` its message."""

    def __init__(self, code: int, text: str):
        super().__init__(text)
        self.code = code
        self.text = text


PBSE_UNKJOBID = 15001
PBSE_BADSTATE = 15018
#: pbs_sched deletes, as root, a job that the node list can never hold (fifo.c).
SCHED_REQUESTOR = "root@localhost"


class Engine:
    """pbs_server's job and scheduling logic on a sandbox cluster's state."""

    def __init__(self, session: Session):
        assert session.db is not None
        self.session = session
        self.db = session.db
        self.layout = session.layout
        self.server_name = session.get("server_name")

    # -- helpers ---------------------------------------------------------------------------
    @property
    def speed(self) -> float:
        return max(1e-9, self.session.get_float("speed"))

    def real(self, sandbox_seconds: float) -> float:
        """Real seconds that ``sandbox_seconds`` take at the current speed."""
        return sandbox_seconds / self.speed

    def job(self, job_id: str) -> Row | None:
        return self.db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()

    def mark_dirty(self) -> None:
        self.session.set("sched_dirty", 1)

    def status_every(self) -> float | None:
        """Real seconds between two mom status reports (``resources_used``), None for never."""
        interval = self.session.get_float("mom_status_interval")
        return self.real(interval) if interval > 0 else None

    def _update(self, job_id: str, **fields: object) -> None:
        names = ", ".join(f"{k} = ?" for k in fields)
        self.db.execute(f"UPDATE jobs SET {names} WHERE id = ?", (*fields.values(), job_id))

    def save(self, job_id: str, now: float, new: bool = False) -> None:
        """Queue a fresh image of the job's file (``.JB``, or ``.TA`` for a template)."""
        job = self.job(job_id)
        if job is None:
            return
        state = self.template_state(job) if job["kind"] == "template" else job["state"]
        image = jobfiles.job_xml(job, state, job_attributes(job, now, self.server_name, state,
                                                           self.status_every()))
        row = dict(job)
        self.session.on_commit(lambda: jobfiles.save(self.layout, row, image, new))

    def template_state(self, template: Record) -> str:
        states = [r[0] for r in self.db.execute(
            "SELECT state FROM jobs WHERE seq = ? AND kind = 'sub'", (template["seq"],))]
        return array_summary_state(states) if states else template["state"]

    # -- time ------------------------------------------------------------------------------
    def advance(self, now: float, schedule: bool = True) -> float:
        """Process every event due up to ``now``; returns the time reached.

        With ``schedule=False`` (the server coming back after being down) jobs end and nodes
        boot, but nothing new starts until ``now``.
        """
        clock = self.session.get_float("clock")
        now = max(now, clock)  # the sandbox's time never runs backwards
        cycle = self.real(self.session.get_float("sched_cycle"))
        if cycle > 0 and self.session.get_float("next_cycle") < now - cycle:
            # cycles missed while nobody asked (a new cluster, a server that was down) are not
            # caught up one by one: the next one is now
            self.session.set("next_cycle", repr(now))
        while True:
            due = self._next_event(now)
            if due is None:
                break
            self._events_at(due)
            if schedule:
                self.schedule(due)
        if schedule:
            self.schedule(now)
        self.session.set("clock", repr(now))
        return now

    def _next_event(self, now: float) -> float | None:
        candidates = [
            # a job's end is seen only while every mom it runs on is up
            self.db.execute(
                "SELECT MIN(ends_at) FROM jobs WHERE state = 'R' AND ends_at <= ? AND NOT EXISTS"
                " (SELECT 1 FROM alloc a JOIN nodes n ON n.name = a.node"
                "  WHERE a.job = jobs.id AND n.up = 0)", (now,)).fetchone()[0],
            self.db.execute(
                "SELECT MIN(ready_at) FROM nodes WHERE boot = 'fixed' AND up = 0 AND ready_at <= ?",
                (now,)).fetchone()[0],
            self.db.execute(
                "SELECT MIN(purge_at) FROM jobs WHERE state = 'C' AND purge_at <= ?",
                (now,)).fetchone()[0],
            self._cycle_due(now),
        ]
        found = [c for c in candidates if c is not None]
        return min(found) if found else None

    def _events_at(self, when: float) -> None:
        ending = self.db.execute(
            "SELECT * FROM jobs WHERE state = 'R' AND ends_at <= ? AND NOT EXISTS"
            " (SELECT 1 FROM alloc a JOIN nodes n ON n.name = a.node"
            "  WHERE a.job = jobs.id AND n.up = 0) ORDER BY ends_at, seq, idx", (when,)).fetchall()
        for job in ending:
            self.finish(job, when, job["exit_status"], job["ran"])
        booted = self.db.execute(
            "SELECT name FROM nodes WHERE boot = 'fixed' AND up = 0 AND ready_at <= ?",
            (when,)).fetchall()
        for (name,) in booted:
            self.mom_state(name, True, when)
        for job in self.db.execute(
                "SELECT * FROM jobs WHERE state = 'C' AND purge_at <= ? ORDER BY seq, idx",
                (when,)).fetchall():
            self.purge(job)
        if self._cycle_due(when) is not None:
            self._periodic_cycle(when)

    def _cycle_due(self, now: float) -> float | None:
        """When pbs_sched's periodic cycle is due, if it is by ``now``."""
        if self.session.get_float("sched_cycle") <= 0 or self.session.get("scheduling") != "1":
            return None
        due = self.session.get_float("next_cycle")
        return due if due <= now else None

    def _periodic_cycle(self, when: float) -> None:
        """pbs_sched's cycle on its timer: it looks at every queued job again, and pbs_server
        saves each one's file anew (85 times in 25 min for one job on a real 6.1.3)."""
        self.session.set("next_cycle", repr(when + self.real(self.session.get_float("sched_cycle"))))
        for (job_id,) in self.db.execute(
                "SELECT id FROM jobs WHERE state = 'Q' AND kind != 'template' ORDER BY seq, idx"
        ).fetchall():
            self.save(job_id, when)
        self.mark_dirty()

    # -- scheduling ------------------------------------------------------------------------
    def schedule(self, when: float) -> None:
        """One pbs_sched cycle at ``when`` (only when something changed since the last)."""
        scheduler.cycle(self, when)

    # -- the life of a job -----------------------------------------------------------------
    def enqueue(self, spec: Mapping[str, object], script: str, when: float,
                indices: list[int] | None = None, slot_limit: int | None = None,
                array_request: str | None = None) -> str:
        """Queue a job (or an array) submitted by qsub; returns the id qsub prints.

        As pbs_server does: the job file is created, then the script, then the Q record
        (Torque 6: one per sub-job, none for the ``[]`` template). ``spec["hold"]`` is ``u``
        for ``qsub -h`` (state H); an array's sub-jobs beyond its ``%limit`` are held ``l``
        until earlier ones are done.
        """
        seq = self.session.next_number("next_job_id")
        server = self.server_name
        hold = str(spec.get("hold") or "")
        base = {**spec, "seq": seq, "ctime": when, "qtime": when, "etime": when, "mtime": when,
                "hold": hold, "state": "H" if hold else "Q", "start_count": 0}
        if indices is None:
            job_id = f"{seq}.{server}"
            self._insert({**base, "id": job_id, "kind": "job", **self._rank(),
                          **self._paths(spec, f"{seq}")})
            self._queue_files(job_id, script, when)
            self.session.record(when, acct.QUEUE, job_id, f"queue={spec['queue']}")
        else:
            job_id = f"{seq}[].{server}"
            self._insert({**base, "id": job_id, "kind": "template", "slot_limit": slot_limit,
                          "array_request": array_request, **self._rank(),
                          **self._paths(spec, f"{seq}")})
            self._queue_files(job_id, script, when)
            self.session.on_commit(lambda: jobfiles.write_array(
                self.layout, job_id, len(indices), slot_limit, array_request or ""))
            for n, idx in enumerate(indices):
                sub_id = f"{seq}[{idx}].{server}"
                sub_hold = hold or ("l" if slot_limit is not None and n >= slot_limit else "")
                self._insert({**base, "id": sub_id, "kind": "sub", "idx": idx, "hold": sub_hold,
                              "state": "H" if sub_hold else "Q", **self._rank(),
                              "name": f"{spec['name']}-{idx}", **self._paths(spec, f"{seq}-{idx}")})
                self.save(sub_id, when)  # job_clone's job_save: through .JC, no empty file first
                self.session.record(when, acct.QUEUE, sub_id, f"queue={spec['queue']}")
        self.mark_dirty()
        return job_id

    def _queue_files(self, job_id: str, script: str, when: float) -> None:
        """A new job's files in pbs_server's order: the job file created empty (req_quejob),
        the script (req_jobscript), then the first save through ``.JC`` (req_commit)."""
        row = {"id": job_id, "kind": "template" if "[]" in job_id else "job"}
        self.session.on_commit(lambda: jobfiles.create_empty(self.layout, row))
        self.session.on_commit(lambda: jobfiles.write_script(self.layout, job_id, script))
        self.save(job_id, when)

    def _rank(self) -> dict[str, object]:
        """``queue_rank``: the order in which pbs_server queued its jobs (templates count)."""
        return {"queue_rank": self.session.next_number("next_queue_rank")}

    @staticmethod
    def _paths(spec: Mapping[str, object], number: str) -> dict[str, object]:
        """Output_Path/Error_Path: ``host:dir/NAME.oN`` unless given (``-o``/``-e``)."""
        where = f"{spec['submit_host']}:{spec['init_work_dir']}/{spec['name']}"
        return {"output_path": spec.get("output_path") or f"{where}.o{number}",
                "error_path": spec.get("error_path") or f"{where}.e{number}"}

    def _insert(self, row: Mapping[str, object]) -> None:
        names = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        self.db.execute(f"INSERT INTO jobs ({names}) VALUES ({marks})", tuple(row.values()))

    def start(self, job: Row, placement: Placement, when: float,
              gpu_flags: int | None = None) -> None:
        """Start a job on the given slots and GPUs: S record, job file saved."""
        alloc = placement.slots
        slots = sum(len(s) for s in alloc.values())
        speed = self.speed
        run = min(job["runtime"], job["walltime"])
        status = job["exit_code"] if job["runtime"] <= job["walltime"] else WALLTIME_EXIT
        session_id = self.session.next_number("next_session")
        # pbs_server hears of the end with the mom's obit, obit_delay after the process ends.
        obit = self.session.get_float("obit_delay") / speed
        self._update(
            job["id"], state="R", start=when, speed=speed, ends_at=when + run / speed + obit,
            ran=run, deleted_at=None,
            exec_host=exec_host(alloc), exec_gpus=exec_gpus(placement),
            gpu_flags=gpu_flags if placement.gpus else None,
            slots=slots, hosts=len(alloc), session=session_id,
            start_count=job["start_count"] + 1, exit_status=status, mtime=when,
            comment=time.strftime("Job started on %a %b %d at %H:%M", time.localtime(when)))
        self.db.executemany("INSERT INTO alloc (node, slot, job) VALUES (?, ?, ?)",
                            [(node, s, job["id"]) for node, ss in alloc.items() for s in ss])
        started = self.job(job["id"])
        assert started is not None
        self.session.record(when, acct.START, job["id"], acct.start_text(started))
        self.save(job["id"], when)

    def finish(self, job: Row, when: float, exit_status: int, ran: float) -> None:
        """A running job ends (its time is over, or it was killed): E record, slots freed."""
        self._update(job["id"], state="C", comp_time=when, exit_status=exit_status,
                     used_walltime=ran, mtime=when, ends_at=None,
                     purge_at=when + self.real(self.session.get_float("keep_completed")))
        self.db.execute("DELETE FROM alloc WHERE job = ?", (job["id"],))
        ended = self.job(job["id"])
        assert ended is not None
        self.session.record(when, acct.END, job["id"], acct.end_text(ended))
        self.save(job["id"], when)
        self.after_subjob(job, when)
        self.mark_dirty()

    def _complete_unstarted(self, job: Row, when: float) -> None:
        """A queued job leaves the queue without running (qdel): state C, no E record."""
        self._update(job["id"], state="C", comp_time=when, mtime=when, exit_status=None,
                     purge_at=when + self.real(self.session.get_float("keep_completed")))
        self.save(job["id"], when)
        self.after_subjob(job, when)

    def after_subjob(self, job: Row, when: float) -> None:
        if job["kind"] != "sub":
            return
        self._release_slot(job["seq"], when)
        left = self.db.execute("SELECT COUNT(*) FROM jobs WHERE seq = ? AND kind = 'sub'"
                               " AND state != 'C'", (job["seq"],)).fetchone()[0]
        if left == 0:
            template = self.db.execute("SELECT id FROM jobs WHERE seq = ? AND kind = 'template'",
                                       (job["seq"],)).fetchone()
            if template is not None:
                self._update(template[0], state="C", comp_time=when, mtime=when)
                self.save(template[0], when)

    def delete_never_runs(self, job: Row, when: float) -> None:
        """pbs_sched deletes a queued job no node of the current list could ever run (down and
        offline nodes count): a D record from root, no E."""
        self.session.record(when, acct.DELETE, job["id"], f"requestor={SCHED_REQUESTOR}")
        self._complete_unstarted(job, when)

    def _release_slot(self, seq: int, when: float) -> None:
        """A sub-job is done: the array's next sub-job held by its %limit may queue."""
        limit = self.db.execute("SELECT slot_limit FROM jobs WHERE seq = ? AND kind = 'template'",
                                (seq,)).fetchone()
        if limit is None or limit[0] is None:
            return
        active = self.db.execute("SELECT COUNT(*) FROM jobs WHERE seq = ? AND kind = 'sub' AND"
                                 " state IN ('Q', 'R')", (seq,)).fetchone()[0]
        for (sub_id,) in self.db.execute(
                "SELECT id FROM jobs WHERE seq = ? AND kind = 'sub' AND hold = 'l' ORDER BY idx"
                " LIMIT ?", (seq, max(0, limit[0] - active))).fetchall():
            self._update(sub_id, hold="", state="Q", mtime=when)
            self.save(sub_id, when)
            self.mark_dirty()

    def delete(self, job_id: str, requestor: str, when: float) -> None:
        """qdel of one job or sub-job: D record; a running job is killed (then E)."""
        job = self.job(job_id)
        if job is None:
            raise TorqueError(PBSE_UNKJOBID, "Unknown Job Id Error")
        if job["kind"] == "template":
            self.delete_array(job, when)
            return
        if job["state"] == "C":
            raise TorqueError(PBSE_BADSTATE, "Request invalid for state of job MSG=invalid state"
                                             " for job - COMPLETE")
        if job["state"] == "R" and job["deleted_at"] is not None:
            return  # already being deleted: the mom's obit is on its way
        self.session.record(when, acct.DELETE, job_id, f"requestor={requestor}")
        if job["state"] == "R":
            self.kill(job, when)
        else:
            self._complete_unstarted(job, when)

    def kill(self, job: Row, when: float) -> None:
        """The mom kills a running job (qdel): it ends with Exit_status=271 when the obit
        reaches pbs_server, obit_delay later (real: D, then E 8 s later)."""
        obit = when + self.real(self.session.get_float("obit_delay"))
        self._update(job["id"], exit_status=SIGTERM_EXIT, ran=ran_until(job, when),
                     deleted_at=when, ends_at=min(job["ends_at"] or obit, obit))

    def delete_array(self, template: Row, when: float, indices: set[int] | None = None) -> None:
        """qdel of ``N[]`` (req_deletearray), or of some of its indices (``qdel -t``): queued
        sub-jobs complete silently, running ones are signalled and end with an E record; no D
        records."""
        for job in self.db.execute("SELECT * FROM jobs WHERE seq = ? AND kind = 'sub'"
                                   " AND state != 'C' ORDER BY idx", (template["seq"],)).fetchall():
            if indices is not None and job["idx"] not in indices:
                continue
            if job["state"] == "R":
                if job["deleted_at"] is None:
                    self.kill(job, when)
            else:
                self._complete_unstarted(job, when)

    def requeue(self, job: Row, when: float) -> None:
        """qrerun (a node deleted under a rerunnable job): R record, back to queued, no new Q."""
        self.db.execute("DELETE FROM alloc WHERE job = ?", (job["id"],))
        self._update(job["id"], state="Q", exec_host=None, exec_gpus=None, gpu_flags=None,
                     slots=None, hosts=None, ends_at=None,
                     session=None, exit_status=None, comment=None, mtime=when, ran=None,
                     deleted_at=None)
        self.session.record(when, acct.RERUN, job["id"], "")
        self.save(job["id"], when)
        self.mark_dirty()

    def purge(self, job: Row) -> None:
        """``keep_completed`` is over: the job and its files go (a template with its last
        sub-job)."""
        self.db.execute("DELETE FROM jobs WHERE id = ?", (job["id"],))
        row = dict(job)
        self.session.on_commit(lambda: jobfiles.purge(self.layout, row))
        if job["kind"] == "sub":
            left = self.db.execute("SELECT COUNT(*) FROM jobs WHERE seq = ? AND kind = 'sub'",
                                   (job["seq"],)).fetchone()[0]
            if left == 0:
                template = self.db.execute("SELECT * FROM jobs WHERE seq = ? AND kind = 'template'",
                                           (job["seq"],)).fetchone()
                if template is not None:
                    self.purge(template)

    # -- nodes -----------------------------------------------------------------------------
    def mom_state(self, name: str, up: bool, when: float) -> None:
        """A node's pbs_mom reports in (up) or stops answering (down)."""
        row = self.db.execute("SELECT up, listed_at FROM nodes WHERE name = ?", (name,)).fetchone()
        if row is None or bool(row["up"]) == up:
            return
        if up and row["listed_at"] is not None and when < row["listed_at"]:
            return  # a mom cannot report to a server whose node list it has not received
        # A mom stopped by hand stays down: it no longer waits for a boot delay.
        self.db.execute("UPDATE nodes SET up = ?, up_since = ?, ready_at = CASE WHEN ? THEN"
                        " ready_at ELSE NULL END WHERE name = ?",
                        (1 if up else 0, when if up else None, 1 if up else 0, name))
        if up:
            # Jobs whose time ran out while their mom was away end now, when it is heard again.
            self.db.execute(
                "UPDATE jobs SET ends_at = ? WHERE state = 'R' AND ends_at < ? AND id IN"
                " (SELECT job FROM alloc WHERE node = ?)", (when, when, name))
        self.mark_dirty()
