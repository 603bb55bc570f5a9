"""``server_priv/jobs``: the files pbs_server keeps per job, created and removed when Torque does.

- ``<prefix>.JB`` (XML, root ``<job>``, as ``saveJobToXML`` writes in 5.1+) is created empty
  when the job is queued, then written as every later save is (``job_save``): the image goes to
  ``<prefix>.JC``, the old ``.JB`` is unlinked and the copy linked into place. Saves come with
  every state change and, for a queued job, at each pbs_sched cycle.
- ``<prefix>.SC`` holds the script. Array sub-jobs have no ``.SC`` of their own; they share the
  template's.
- An array template is saved as ``<prefix>.TA`` instead of ``.JB``, and the array itself in
  ``server_priv/arrays/<prefix>.AR``.
- ``svr_job_purge`` removes ``.SC`` (not for sub-jobs) and then ``.JB``/``.TA`` (and ``.AR``),
  when a completed job's ``keep_completed`` time has passed.

The prefix is the job's ``hashname`` (``4.srv`` for ``4[].srv``, ``4-1.srv`` for ``4[1].srv``),
truncated to 61 characters, as a real 6.1.3 names them (``jobs_dir.txt`` of the captures).
``jobs/`` and ``arrays/`` also hold the empty subfolders ``0``..``9`` pbs_server creates.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from phorque_testbed.sandbox.jobattrs import hashname
from phorque_testbed.sandbox.layout import Layout
from phorque_testbed.sandbox.render import grouped
from phorque_testbed.sandbox.rows import Record

STATE_NUMBERS = {"T": 0, "Q": 1, "H": 2, "W": 3, "R": 4, "E": 5, "C": 6}
SUBSTATE_NUMBERS = {"T": 0, "Q": 10, "H": 20, "W": 30, "R": 42, "E": 50, "C": 59}
QS_VERSION = "768"  # PBS_QS_VERSION of Torque 6.1


def base_name(job_id: str) -> str:
    return hashname(job_id)[:61]


def make_folders(layout: Layout) -> None:
    """``jobs/`` and ``arrays/`` with the subfolders ``0``..``9`` pbs_server makes."""
    for top in (layout.jobs, layout.arrays):
        for digit in range(10):
            os.makedirs(os.path.join(top, str(digit)), exist_ok=True)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def job_xml(job: Record, state: str, attrs: Sequence[tuple[str, str | None, str]]) -> str:
    """The job image, in saveJobToXML's layout (libxml2, two-space indent)."""
    start = int(job["start"] or 0)
    lines = [
        '<?xml version="1.0"?>',
        "<job>",
        f"  <version>{QS_VERSION}</version>",
        f"  <state>{STATE_NUMBERS.get(state, 1)}</state>",
        f"  <substate>{SUBSTATE_NUMBERS.get(state, 10)}</substate>",
        "  <server_flags>1</server_flags>",
        f"  <start_time>{start}</start_time>",
        f"  <jobid>{_escape(job['id'])}</jobid>",
        f"  <fileprefix>{_escape(base_name(job['id']))}</fileprefix>",
        f"  <queue>{_escape(job['queue'])}</queue>",
        "  <destination_queue/>",
        f"  <record_type>{2 if state in ('R', 'E') else 1}</record_type>",
        "  <attributes>",
    ]
    for name, value in grouped(attrs):
        if isinstance(value, str):
            lines.append(f'    <{name} flags="1">{_escape(value)}</{name}>')
            continue
        lines.append(f"    <{name}>")
        lines += [f'      <{res} flags="1">{_escape(v)}</{res}>' for res, v in value]
        lines.append(f"    </{name}>")
    lines += ["  </attributes>", "</job>", ""]
    return "\n".join(lines)


def _suffix(job: Record) -> str:
    return ".TA" if job["kind"] == "template" else ".JB"


def create_empty(layout: Layout, job: Record) -> None:
    """req_quejob's first step: the job's file, empty, before its script and its first save."""
    target = os.path.join(layout.jobs, base_name(job["id"]) + _suffix(job))
    os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))


def save(layout: Layout, job: Record, image: str, new: bool = False) -> None:
    """Write a job's image through ``.JC`` as job_save does (``new``: create it empty first)."""
    base = os.path.join(layout.jobs, base_name(job["id"]))
    target = base + _suffix(job)
    data = image.encode("utf-8", "replace")
    if new:
        create_empty(layout, job)
    copy = base + ".JC"
    with open(copy, "wb") as handle:
        handle.write(data)
    try:
        os.unlink(target)
    except FileNotFoundError:
        pass
    os.link(copy, target)
    os.unlink(copy)


def write_script(layout: Layout, job_id: str, script: str) -> None:
    path = os.path.join(layout.jobs, base_name(job_id) + ".SC")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, script.encode("utf-8", "replace"))
    finally:
        os.close(fd)


def write_array(layout: Layout, job_id: str, count: int, slot_limit: int | None,
                request: str) -> None:
    """``server_priv/arrays/<prefix>.AR``: the array's own record (array_save)."""
    prefix = base_name(job_id)
    text = "\n".join([
        '<?xml version="1.0"?>', "<array>", "  <struct_version>4</struct_version>",
        f"  <array_size>{count}</array_size>", f"  <num_jobs>{count}</num_jobs>",
        f"  <slot_limit>{-1 if slot_limit is None else slot_limit}</slot_limit>",
        "  <jobs_recovered>0</jobs_recovered>", f"  <parent_id>{_escape(job_id)}</parent_id>",
        f"  <fileprefix>{_escape(prefix)}</fileprefix>",
        f"  <range_str>{_escape(request)}</range_str>", "</array>", ""])
    path = os.path.join(layout.arrays, prefix + ".AR")
    with open(path + ".tmp", "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(path + ".tmp", path)


def purge(layout: Layout, job: Record) -> None:
    """Remove a job's files (``svr_job_purge``): its script unless it is a sub-job, then its
    image (and an array's ``.AR``)."""
    base = os.path.join(layout.jobs, base_name(job["id"]))
    names = [base + _suffix(job)]
    if job["kind"] != "sub":
        names.insert(0, base + ".SC")
    if job["kind"] == "template":
        names.append(os.path.join(layout.arrays, base_name(job["id"]) + ".AR"))
    for name in names:
        try:
            os.unlink(name)
        except FileNotFoundError:
            pass
