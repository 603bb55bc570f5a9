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
import hashlib
import io
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import IO

from phorque.adapters.torque.resources import (
    count_slot_spec,
    duration_or_none,
    job_request,
    size_mb,
)
from phorque.core.errors import TorqueError
from phorque.core.model import FREE, Job, JobId, Node, NodeName

# A reference is at most 10 characters ("&#1114111;", "&#x10FFFF;"), so a piece of the stream
# that ends within 12 characters of a "&" can hold it back whole (_sanitized_chunks); anything
# longer is text, escaped alike however the stream was cut.
_RAW_AMP = re.compile(r"&(?!(?:amp|lt|gt|quot|apos|#\d{1,7}|#x[0-9a-fA-F]{1,6});)")
_CHAR_REF = re.compile(r"&#(?:(\d{1,7})|x([0-9a-fA-F]{1,6}));")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffe\uffff]")
CHUNK = 1 << 16


class XMLFormatError(TorqueError):
    """Torque printed XML that cannot be read, even after repair."""


def _is_xml_char(code: int) -> bool:
    return (code in (0x9, 0xA, 0xD) or 0x20 <= code <= 0xD7FF or 0xE000 <= code <= 0xFFFD
            or 0x10000 <= code <= 0x10FFFF)


def _char_ref(match: re.Match[str]) -> str:
    decimal, hexadecimal = match.groups()
    code = int(decimal) if decimal is not None else int(hexadecimal, 16)
    return match.group(0) if _is_xml_char(code) else "&amp;" + match.group(0)[1:]


def _repair(text: str) -> str:
    """:func:`sanitize` for text whose control characters are already gone."""
    text = _RAW_AMP.sub("&amp;", text)
    if "&#" in text:
        text = _CHAR_REF.sub(_char_ref, text)
    return text.replace("]]>", "]]&gt;")


def sanitize(text: str) -> str:
    """Repair what Torque's writer leaves: drop control characters, escape a raw ``&`` and a
    reference to a character XML forbids, and ``]]>``, which XML forbids in text.

    A job's name and variables are the user's: whatever they hold, they must not make the whole
    ``qstat`` answer unreadable (``-N 'x]]>'`` or ``-v 'A=&#0;'`` once did).
    """
    return _repair(_CONTROL.sub("", text))


def _sanitized_chunks(stream: IO[bytes]) -> Iterator[str]:
    """Decoded, repaired text in pieces; a ``&...;`` or ``]]>`` split across pieces is kept
    together, so the answer does not depend on where the pipe cut the output."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    carry = ""
    while True:
        data = stream.read(CHUNK)
        final = not data
        text = carry + _CONTROL.sub("", decoder.decode(data, final=final))
        carry = ""
        if not final:
            amp = text.rfind("&")
            if amp != -1 and len(text) - amp < 12 and ";" not in text[amp:]:
                text, carry = text[:amp], text[amp:]
            elif text.endswith("]"):
                keep = 2 if text.endswith("]]") else 1
                text, carry = text[:-keep], text[-keep:]
        if text:
            yield _repair(text)
        if final:
            return


_SPACE = re.compile(r"\s*")
#: Output that does not open with ``<Data>`` within this many characters is not Torque's.
OPENING_LIMIT = 256
# Bounded so that every opening it accepts is shorter than OPENING_LIMIT: the answer is then
# the same however the stream is cut (leading white space is dropped before matching).
_DATA_OPEN = re.compile(r"(?:<\?xml[^>]{0,180}\?>)?\s{0,50}<Data\s{0,8}>")
#: A single element larger than this is refused rather than buffered.
ELEMENT_LIMIT = 64 << 20


def iter_elements(stream: IO[bytes], tag: str, what: str, documents: bool = False) -> Iterator[ET.Element]:
    """Each complete ``<tag>`` element inside ``<Data>``, in order (see :func:`_element_texts`)."""
    for texts in _element_texts(stream, tag, what, documents):
        yield from _parse_texts(texts, tag, what)


def _element_texts(stream: IO[bytes], tag: str, what: str, documents: bool) -> Iterator[list[str]]:
    """The repaired text of each complete ``<tag>`` element inside ``<Data>``, in lists of
    those that arrived together.

    With ``documents``, several ``<Data>`` documents may follow each other: ``qstat -x`` given
    several job ids prints one document per id (``run_job_mode`` in qstat.c), each with its
    own ``<?xml?>`` declaration.

    Torque never nests these elements and cannot print ``</Job>`` inside a value (a ``<`` in a
    value becomes byte 0x0e), so the stream is cut at each closing tag and every piece is parsed
    on its own: memory holds a piece of the stream at a time, and the C parser does the work. The
    ``<Data>`` wrapper must open and close; anything else between elements is an error.
    """
    opening, closing = f"<{tag}>", f"</{tag}>"
    buf = ""
    # buf[:scan] is known not to hold the closing tag of the element at hand: a large element
    # arriving in many pieces is searched once, not once per piece.
    scan = 0
    started = finished = False
    seen_any = False
    for text in _sanitized_chunks(stream):
        buf += text
        if not seen_any:
            buf = buf.lstrip()
            if not buf:
                continue
            seen_any = True
        while True:
            pos = 0
            if not started:
                match = _DATA_OPEN.match(buf)
                if match is None:
                    if len(buf) < OPENING_LIMIT:
                        break  # the prolog may still be arriving, in pieces of any size
                    raise XMLFormatError(f"{what}: output does not start with <Data>")
                started, pos = True, match.end()
            spans: list[tuple[int, int]] = []  # complete elements, parsed together below
            while not finished:
                space = _SPACE.match(buf, pos)
                assert space is not None  # \s* matches, if only the empty string
                pos = space.end()
                if buf.startswith("</Data>", pos):
                    finished, pos = True, pos + len("</Data>")
                    break
                rest = len(buf) - pos
                # A piece may end anywhere, also inside "<Job>" or "</Data>": wait for the rest.
                if rest == 0 or (rest < len(opening) and opening.startswith(buf[pos:])) or (
                        rest < len("</Data>") and "</Data>".startswith(buf[pos:])):
                    break
                if not buf.startswith(opening, pos):
                    if spans:
                        yield [buf[a:b] for a, b in spans]
                    raise XMLFormatError(f"{what}: unexpected {buf[pos:pos + 20]!r} inside <Data>")
                end = buf.find(closing, max(pos, scan))
                if end == -1:
                    if rest > ELEMENT_LIMIT:
                        if spans:
                            yield [buf[a:b] for a, b in spans]
                        raise XMLFormatError(f"{what}: a <{tag}> element larger than {ELEMENT_LIMIT >> 20} MB")
                    scan = max(pos, len(buf) - len(closing) + 1)
                    break
                end += len(closing)
                spans.append((pos, end))
                pos = end
            if spans:
                yield [buf[a:b] for a, b in spans]
            buf = buf[pos:]
            scan = max(0, scan - pos)
            if finished and documents and buf.strip():
                buf, scan = buf.lstrip(), 0
                started = finished = False  # the next document follows
                continue
            break
        if finished and buf.strip():
            raise XMLFormatError(f"{what}: unexpected {buf.strip()[:20]!r} after </Data>")
    if not seen_any:
        return  # Torque 4.x prints nothing at all when there is nothing to show
    if not started:
        raise XMLFormatError(f"{what}: output does not start with <Data>")
    if not finished:
        raise XMLFormatError(f"{what}: truncated output (no closing </Data>)")


def _parse_texts(texts: list[str], tag: str, what: str) -> Iterator[ET.Element]:
    """The elements of ``texts``, parsed in one go inside a wrapper (one parser for a few
    hundred jobs, not one each). Should that fail, or give other than one ``<tag>`` per text,
    each is parsed alone, for the error it makes."""
    if not texts:
        return
    try:
        batch = ET.fromstring("<_>" + "".join(texts) + "</_>")
    except ET.ParseError:
        batch = None
    if batch is not None and len(batch) == len(texts) and all(e.tag == tag for e in batch):
        yield from batch
        return
    for text in texts:
        try:
            yield ET.fromstring(text)
        except ET.ParseError as exc:
            raise XMLFormatError(f"{what}: invalid XML in a <{tag}> ({exc})") from None


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


#: Elements that hold a Torque 6 ``-L`` request.
REQUEST2_TAGS = ("L_Request", "Resource_Request_2.0", "req_information")
#: ``req_information.KEY.N`` values carried over into a rebuilt ``-L`` part (``memory.N`` is in
#: kb there, per task; ``total_memory.N`` is tasks x memory and not needed).
_REQ_INFO_KEYS = (("lprocs", "lprocs"), ("memory", "memory"), ("gpus", "gpus"))


def _request2(elem: ET.Element) -> str | None:
    """Torque 6 ``-L`` request: 6.1.3 prints it as given in ``L_Request`` beside its parsed
    ``req_information`` (``task_count.0``, ``lprocs.0``, ``memory.0`` in kb, ``gpus.0``, ...);
    other builds print ``Resource_Request_2.0``; the parts are rebuilt from
    ``req_information`` when neither text is there."""
    for tag in ("L_Request", "Resource_Request_2.0"):
        text = _text(elem, tag)
        if text:
            return text
    info = _children(elem, "req_information")
    parts = []
    for key, value in info.items():
        if key.startswith("task_count."):
            index = key.split(".", 1)[1]
            part = f"-L tasks={value}"
            for name, option in _REQ_INFO_KEYS:
                found = info.get(f"{name}.{index}")
                if found:
                    part += f":{option}={found}"
            parts.append(part)
    return " ".join(parts) or None


def _rerunnable(value: str | None) -> bool | None:
    if value is None:
        return None
    lowered = value.strip().lower()
    return True if lowered == "true" else False if lowered == "false" else None


def exec_hosts(value: str | None) -> tuple[NodeName, ...]:
    """Distinct hosts of an ``exec_host`` value, in order."""
    if not value:
        return ()
    hosts: list[NodeName] = []
    for entry in value.split("+"):
        host = NodeName(entry.strip().partition("/")[0])
        if host and host not in hosts:
            hosts.append(host)
    return tuple(hosts)


def job_from_element(elem: ET.Element) -> Job:
    fields = {child.tag: child for child in elem}
    # Every value at once (a dictionary look-up each, below): this runs once per job of a
    # queue that may hold 100,000.
    texts = {tag: child.text.strip() for tag, child in fields.items() if child.text is not None}
    text = texts.get
    job_id = text("Job_Id")
    if not job_id:
        raise XMLFormatError("qstat: a <Job> without <Job_Id>")
    listed = fields.get("Resource_List")
    resources = {} if listed is None else {c.tag: (c.text or "").strip() for c in listed}
    request2 = None if fields.keys().isdisjoint(REQUEST2_TAGS) else _request2(elem)
    request = job_request(resources, request2)
    asks = request.asks
    remaining = None
    walltime_elem = fields.get("Walltime")
    if walltime_elem is not None:
        remaining = _int(_text(walltime_elem, "Remaining"))
    return Job(
        id=JobId(job_id),
        state=(text("job_state") or "?")[:1],
        queue=text("queue") or "",
        cores=request.cores,
        chunks=request.chunks,
        request2=request2 is not None,
        walltime_secs=duration_or_none(resources.get("walltime")),
        remaining_secs=remaining,
        name=text("Job_Name") or "",
        owner=text("Job_Owner") or "",
        exec_hosts=exec_hosts(text("exec_host")),
        queued_at=_float(text("qtime")),
        started_at=_float(text("start_time")),
        comment=text("comment") or "",
        gpus=asks.gpus,
        mem_mb=asks.mem_mb,
        pmem_mb=asks.pmem_mb,
        vmem_mb=asks.vmem_mb,
        pvmem_mb=asks.pvmem_mb,
        rerunnable=_rerunnable(text("Rerunable")),
    )


def _is_slot_char(ch: str) -> bool:
    return ch in ",-" or ch.isdecimal()


def _node_job_entries(value: str) -> list[tuple[str, str]]:
    """``(slots, job id)`` pairs: what ``re.findall(r"([\\d,\\-]+)/([^,]+)", value)`` finds.

    Written out because that pattern backtracks over every long run of digits and commas not
    followed by ``/``, which takes time quadratic in the length of the value.
    """
    found: list[tuple[str, str]] = []
    start, end = 0, len(value)
    while True:
        slash = value.find("/", start)
        if slash == -1:
            return found
        first = slash
        while first > start and _is_slot_char(value[first - 1]):
            first -= 1
        stop = value.find(",", slash + 1)
        if stop == -1:
            stop = end
        if first == slash or stop == slash + 1:
            start = slash + 1  # no slots before the slash, or no job id after it
            continue
        found.append((value[first:slash], value[slash + 1:stop]))
        start = stop


def parse_node_jobs(value: str | None) -> tuple[tuple[str, ...], int]:
    """``(job ids, slots in use)`` from a node's ``jobs`` attribute, in any Torque format.

    6.x: ``0-35/63779.srv`` and ``0,3/138.srv,4/139.srv``; 4.2: one ``slot/id`` per slot;
    2.x: ``0/id, 1/id``.
    """
    if not value:
        return (), 0
    ids: list[str] = []
    slots = 0
    for spec, job_id in _node_job_entries(value):
        job_id = job_id.strip()
        slots += count_slot_spec(spec.strip(","))
        if job_id and job_id not in ids:
            ids.append(job_id)
    return tuple(ids), slots


def status_value(status: str | None, key: str) -> str | None:
    """One ``key=value`` of a mom's ``status`` (a comma list: ``...,physmem=24683568kb,...``).

    Values hold no commas, but may hold spaces and ``=`` (``uname=Linux vm ...``)."""
    if not status:
        return None
    prefix = key + "="
    for item in status.split(","):
        if item.startswith(prefix):
            return item[len(prefix):].strip()
    return None


def parse_state(value: str | None) -> frozenset[str]:
    words = frozenset(w.strip() for w in (value or "").split(",") if w.strip())
    return words or frozenset({FREE})


def node_from_element(elem: ET.Element) -> Node:
    name = _text(elem, "name")
    if not name:
        raise XMLFormatError("pbsnodes: a <Node> without <name>")
    jobs, slots = parse_node_jobs(_text(elem, "jobs"))
    # Torque 6 built with NUMA support places -L jobs on whole cores or threads and says so in
    # dedicated_cores / dedicated_threads; where they say more than the job list, they are right.
    slots = max(slots, _int(_text(elem, "dedicated_cores")) or 0, _int(_text(elem, "dedicated_threads")) or 0)
    props = _text(elem, "properties") or ""
    return Node(
        name=NodeName(name),
        np=_int(_text(elem, "np")) or 1,
        state=parse_state(_text(elem, "state")),
        jobs=tuple(JobId(j) for j in jobs),
        used_slots=slots,
        properties=tuple(p.strip() for p in props.split(",") if p.strip()),
        note=_text(elem, "note") or "",
        # physmem: what the mom measured; 0 (unknown) until the mom has reported.
        mem_mb=size_mb(status_value(_text(elem, "status"), "physmem")),
        gpus=_int(_text(elem, "gpus")) or 0,
    )


class JobMemo:
    """The jobs of the last whole-queue read, by a digest of their element's text.

    A reconciliation reads the whole queue again, and most of it is as it was: a job whose
    element is the same text, byte for byte, is the same job (:func:`job_from_element` depends
    on nothing else), so it is taken from here instead of parsed again. Only a read that
    completes replaces what is kept, and only the jobs it saw are kept.
    """

    def __init__(self) -> None:
        self.kept: dict[bytes, Job] = {}

    @staticmethod
    def key(text: str) -> bytes:
        # A digest, not the text: the texts of a large queue are tens of megabytes.
        return hashlib.blake2b(text.encode(), digest_size=16).digest()


def parse_jobs(stream: IO[bytes], what: str = "qstat", documents: bool = False,
               memo: JobMemo | None = None) -> Iterator[Job]:
    """The jobs of a ``qstat -f -x`` answer, in order; with ``memo``, the jobs whose element is
    as it was at the last complete read are not parsed again."""
    if memo is None:
        for elem in iter_elements(stream, "Job", what, documents):
            yield job_from_element(elem)
        return
    kept = memo.kept
    seen: dict[bytes, Job] = {}
    for texts in _element_texts(stream, "Job", what, documents):
        keys = [memo.key(text) for text in texts]
        new = {key: text for key, text in zip(keys, texts, strict=True) if key not in kept and key not in seen}
        # Parsed in the order the new elements first appear, which is the order asked below.
        parsed = _parse_texts(list(new.values()), "Job", what)
        for key in keys:
            job = seen.get(key)
            if job is None:
                job = kept.get(key)
                if job is None:
                    job = job_from_element(next(parsed))
                seen[key] = job
            yield job
    memo.kept = seen


def parse_nodes(stream: IO[bytes], what: str = "pbsnodes") -> Iterator[Node]:
    for elem in iter_elements(stream, "Node", what):
        yield node_from_element(elem)


def jobs_from_bytes(data: bytes) -> list[Job]:
    return list(parse_jobs(io.BytesIO(data)))


def nodes_from_bytes(data: bytes) -> list[Node]:
    return list(parse_nodes(io.BytesIO(data)))

