"""``server_priv/jobs``: the files pbs_server keeps per job, created and removed when Torque does.

- ``<id>.JB`` (XML, root ``<job>``, as ``saveJobToXML`` writes in 5.1+) is created when the job
  is queued and saved again on every state change: the new image is written to ``<id>.JC``,
  the old ``.JB`` unlinked and the copy linked into place (``job_save``).
- ``<id>.SC`` holds the script. Array sub-jobs have no ``.SC`` of their own; they share the
  template's.
- An array template is saved as ``<id>.TA`` instead of ``.JB``.
- ``svr_job_purge`` removes ``.SC`` (not for sub-jobs) and then ``.JB``/``.TA``, when a completed
  job's ``keep_completed`` time has passed.

Base names are the job id truncated to 61 characters (``determine_job_file_name``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from phorque.sandbox.layout import Layout
from phorque.sandbox.render import grouped

STATE_NUMBERS = {"T": 0, "Q": 1, "H": 2, "W": 3, "R": 4, "E": 5, "C": 6}
SUBSTATE_NUMBERS = {"T": 0, "Q": 10, "H": 20, "W": 30, "R": 42, "E": 50, "C": 59}
QS_VERSION = "768"  # PBS_QS_VERSION of Torque 6.1


def base_name(job_id: str) -> str:
    return job_id[:61]


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def job_xml(job: Mapping, state: str, attrs: Sequence[tuple[str, str | None, str]]) -> str:
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


def _suffix(job: Mapping) -> str:
    return ".TA" if job["kind"] == "template" else ".JB"


def save(layout: Layout, job: Mapping, image: str, new: bool) -> None:
    """Write a job's image: created in place when new, else through ``.JC`` as job_save does."""
    base = os.path.join(layout.jobs, base_name(job["id"]))
    target = base + _suffix(job)
    data = image.encode("utf-8", "replace")
    if new:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        return
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


def purge(layout: Layout, job: Mapping) -> None:
    """Remove a job's files (``svr_job_purge``): its script unless it is a sub-job, then its
    image."""
    base = os.path.join(layout.jobs, base_name(job["id"]))
    names = [base + _suffix(job)]
    if job["kind"] != "sub":
        names.insert(0, base + ".SC")
    for name in names:
        try:
            os.unlink(name)
        except FileNotFoundError:
            pass
