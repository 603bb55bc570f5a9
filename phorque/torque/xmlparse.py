"""Parsing ``qstat -f -x`` and ``pbsnodes -x`` as real Torque prints them.

Torque writes one line of XML without escaping: a raw ``&`` or control bytes (``<`` inside a
value becomes byte 0x0e) can sit inside a value, and bytes need not be UTF-8. Torque 4.x prints
nothing when there are no jobs, 6.x prints ``<Data></Data>``. The parser repairs what it can
(raw ``&``, control bytes, bad UTF-8), streams the input so memory does not grow with the number
of jobs, and raises :class:`XMLFormatError` for anything still broken, such as truncated output:
an incomplete answer must never be mistaken for a complete one.
"""

from __future__ import annotations

import codecs
import io
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import IO

from phorque.errors import TorqueError
from phorque.model import FREE, Job, Node
from phorque.resources import count_slot_spec, duration_or_none, job_chunks, job_cores

_RAW_AMP = re.compile(r"&(?!(?:amp|lt|gt|quot|apos|#\d+|#x[0-9a-fA-F]+);)")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffe\uffff]")
_NODE_JOBS = re.compile(r"([\d,\-]+)/([^,]+)")
CHUNK = 1 << 16


class XMLFormatError(TorqueError):
    """Torque printed XML that cannot be read, even after repair."""


def sanitize(text: str) -> str:
    """Escape raw ``&`` and drop control characters, as Torque's writer does not."""
    return _CONTROL.sub("", _RAW_AMP.sub("&amp;", text))


def _sanitized_chunks(stream: IO[bytes]) -> Iterator[str]:
    """Decoded, repaired text in pieces; a ``&...;`` split across pieces is kept together."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    carry = ""
    while True:
        data = stream.read(CHUNK)
        final = not data
        text = carry + decoder.decode(data, final=final)
        carry = ""
        if not final:
            amp = text.rfind("&")
            if amp != -1 and len(text) - amp < 12 and ";" not in text[amp:]:
                text, carry = text[:amp], text[amp:]
        if text:
            yield sanitize(text)
        if final:
            return


_SPACE = re.compile(r"\s*")
_DATA_OPEN = re.compile(r"\s*(?:<\?xml[^>]*\?>)?\s*<Data\s*>")
#: A single element larger than this is refused rather than buffered.
ELEMENT_LIMIT = 64 << 20


def iter_elements(stream: IO[bytes], tag: str, what: str) -> Iterator[ET.Element]:
    """Each complete ``<tag>`` element inside ``<Data>``, parsed one at a time.

    Torque never nests these elements and cannot print ``</Job>`` inside a value (a ``<`` in a
    value becomes byte 0x0e), so the stream is cut at each closing tag and every piece is parsed
    on its own: memory holds one element at a time, and the C parser does the work. The
    ``<Data>`` wrapper must open and close; anything else between elements is an error.
    """
    opening, closing = f"<{tag}>", f"</{tag}>"
    buf = ""
    started = finished = False
    seen_any = False
    for text in _sanitized_chunks(stream):
        buf += text
        if not seen_any:
            if not buf.strip():
                buf = ""
                continue
            seen_any = True
        pos = 0
        if not started:
            match = _DATA_OPEN.match(buf)
            if match is None:
                if len(buf) < 256 and "<" not in buf.lstrip()[1:]:
                    continue  # the prolog may still be arriving
                raise XMLFormatError(f"{what}: output does not start with <Data>")
            started, pos = True, match.end()
        while not finished:
            pos = _SPACE.match(buf, pos).end()
            if buf.startswith("</Data>", pos):
                finished, pos = True, pos + len("</Data>")
                break
            rest = len(buf) - pos
            if rest == 0 or (rest < len(opening) and (opening.startswith(buf[pos:])
                                                      or "</Data>".startswith(buf[pos:]))):
                break
            if not buf.startswith(opening, pos):
                raise XMLFormatError(f"{what}: unexpected {buf[pos:pos + 20]!r} inside <Data>")
            end = buf.find(closing, pos)
            if end == -1:
                if rest > ELEMENT_LIMIT:
                    raise XMLFormatError(f"{what}: a <{tag}> element larger than {ELEMENT_LIMIT >> 20} MB")
                break
            end += len(closing)
            try:
                yield ET.fromstring(buf[pos:end])
            except ET.ParseError as exc:
                raise XMLFormatError(f"{what}: invalid XML in a <{tag}> ({exc})") from None
            pos = end
        buf = buf[pos:]
        if finished and buf.strip():
            raise XMLFormatError(f"{what}: unexpected {buf.strip()[:20]!r} after </Data>")
    if not seen_any:
        return  # Torque 4.x prints nothing at all when there is nothing to show
    if not started:
        raise XMLFormatError(f"{what}: output does not start with <Data>")
    if not finished:
        raise XMLFormatError(f"{what}: truncated output (no closing </Data>)")


def _text(elem: ET.Element, path: str) -> str | None:
    found = elem.find(path)
    if found is None or found.text is None:
        return None
    return found.text.strip()


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None


def _float(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value.strip())
    except ValueError:
        return None


def _children(elem: ET.Element, path: str) -> dict[str, str]:
    group = elem.find(path)
    if group is None:
        return {}
    return {child.tag: (child.text or "").strip() for child in group}


def _request2(elem: ET.Element) -> str | None:
    """Torque 6 ``-L`` request, from ``Resource_Request_2.0`` or ``req_information``."""
    text = _text(elem, "Resource_Request_2.0")
    if text:
        return text
    info = _children(elem, "req_information")
    parts = []
    for key, value in info.items():
        if key.startswith("task_count."):
            index = key.split(".", 1)[1]
            lprocs = info.get(f"lprocs.{index}", "1")
            parts.append(f"-L tasks={value}:lprocs={lprocs}")
    return " ".join(parts) or None


def exec_hosts(value: str | None) -> tuple[str, ...]:
    """Distinct hosts of an ``exec_host`` value, in order."""
    if not value:
        return ()
    hosts: list[str] = []
    for entry in value.split("+"):
        host = entry.strip().partition("/")[0]
        if host and host not in hosts:
            hosts.append(host)
    return tuple(hosts)


def job_from_element(elem: ET.Element) -> Job:
    fields = {child.tag: child for child in elem}

    def text(tag: str) -> str | None:
        found = fields.get(tag)
        return None if found is None or found.text is None else found.text.strip()

    job_id = text("Job_Id")
    if not job_id:
        raise XMLFormatError("qstat: a <Job> without <Job_Id>")
    listed = fields.get("Resource_List")
    resources = {} if listed is None else {c.tag: (c.text or "").strip() for c in listed}
    request2 = _request2(elem) if ("Resource_Request_2.0" in fields or "req_information" in fields) else None
    remaining = None
    walltime_elem = fields.get("Walltime")
    if walltime_elem is not None:
        remaining = _int(_text(walltime_elem, "Remaining"))
    return Job(
        id=job_id,
        state=(text("job_state") or "?")[:1],
        queue=text("queue") or "",
        cores=job_cores(resources, request2),
        chunks=job_chunks(resources, request2),
        walltime_secs=duration_or_none(resources.get("walltime")),
        remaining_secs=remaining,
        name=text("Job_Name") or "",
        owner=text("Job_Owner") or "",
        exec_hosts=exec_hosts(text("exec_host")),
        queued_at=_float(text("qtime")),
        started_at=_float(text("start_time")),
    )


def parse_node_jobs(value: str | None) -> tuple[tuple[str, ...], int]:
    """``(job ids, slots in use)`` from a node's ``jobs`` attribute, in any Torque format.

    6.x: ``0-35/63779.srv`` and ``0,3/138.srv,4/139.srv``; 4.2: one ``slot/id`` per slot;
    2.x: ``0/id, 1/id``.
    """
    if not value:
        return (), 0
    ids: list[str] = []
    slots = 0
    for spec, job_id in _NODE_JOBS.findall(value):
        job_id = job_id.strip()
        slots += count_slot_spec(spec.strip(","))
        if job_id and job_id not in ids:
            ids.append(job_id)
    return tuple(ids), slots


def parse_state(value: str | None) -> frozenset[str]:
    words = frozenset(w.strip() for w in (value or "").split(",") if w.strip())
    return words or frozenset({FREE})


def node_from_element(elem: ET.Element) -> Node:
    name = _text(elem, "name")
    if not name:
        raise XMLFormatError("pbsnodes: a <Node> without <name>")
    jobs, slots = parse_node_jobs(_text(elem, "jobs"))
    props = _text(elem, "properties") or ""
    return Node(
        name=name,
        np=_int(_text(elem, "np")) or 1,
        state=parse_state(_text(elem, "state")),
        jobs=jobs,
        used_slots=slots,
        properties=tuple(p.strip() for p in props.split(",") if p.strip()),
        note=_text(elem, "note") or "",
    )


def parse_jobs(stream: IO[bytes], what: str = "qstat") -> Iterator[Job]:
    for elem in iter_elements(stream, "Job", what):
        yield job_from_element(elem)


def parse_nodes(stream: IO[bytes], what: str = "pbsnodes") -> Iterator[Node]:
    for elem in iter_elements(stream, "Node", what):
        yield node_from_element(elem)


def jobs_from_bytes(data: bytes) -> list[Job]:
    return list(parse_jobs(io.BytesIO(data)))


def nodes_from_bytes(data: bytes) -> list[Node]:
    return list(parse_nodes(io.BytesIO(data)))

