"""Hostile input to the qstat, pbsnodes and accounting parsers: only their own errors, in bounded
time and memory, and nothing in the input is ever expanded or obeyed."""

from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ET

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from phorque.adapters.cloud.phantom_repair import repair_phantom_reply
from phorque.adapters.torque.accounting import AccountingFormatError, AccountingParser, parse_line
from phorque.adapters.torque.tailer import AccountingTailer
from phorque.adapters.torque.xmlparse import (
    XMLFormatError,
    jobs_from_bytes,
    nodes_from_bytes,
    parse_jobs,
    parse_node_jobs,
    parse_nodes,
)
from phorque.core.model import Job, Node
from tests.hostile.bounds import assert_bounded, measured
from tests.hostile.strategies import (
    accounting_files,
    accounting_line,
    hostile_bytes,
    pbsnodes_documents,
    qstat_documents,
)
from tests.pipes import Trickle

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffe\uffff]")


def _outcome(parse, data: bytes):
    try:
        return list(parse(data))
    except XMLFormatError as exc:
        return type(exc)


# -- qstat -f -x and pbsnodes -x -------------------------------------------------------------------

@FUZZ
@given(qstat_documents)
def test_hostile_qstat_output_gives_jobs_or_a_format_error(data):
    outcome = measured(lambda: jobs_from_bytes(data), (XMLFormatError,))
    assert_bounded(outcome, len(data), "qstat")
    for job in outcome.value or []:
        assert isinstance(job, Job) and job.id and job.cores >= 1
        for text in (job.id, job.name, job.queue, job.owner, job.state, *job.exec_hosts):
            assert not CONTROL.search(text), f"control character kept in {text!r}"
        assert all(c.count > 0 and c.ppn > 0 for c in job.chunks)


@FUZZ
@given(pbsnodes_documents)
def test_hostile_pbsnodes_output_gives_nodes_or_a_format_error(data):
    outcome = measured(lambda: nodes_from_bytes(data), (XMLFormatError,))
    assert_bounded(outcome, len(data), "pbsnodes")
    for node in outcome.value or []:
        assert isinstance(node, Node) and node.name and isinstance(node.np, int)
        assert node.used_slots >= 0 and node.state
        for text in (node.name, node.note, *node.jobs, *node.properties, *node.state):
            assert not CONTROL.search(text), f"control character kept in {text!r}"


def mxml(value: bytes) -> bytes:
    """A value as Torque's MXML writer prints it: "<" becomes byte 14, nothing is escaped."""
    return value.replace(b"<", b"\x0e")


def expected_text(value: bytes) -> str:
    return CONTROL.sub("", value.decode("utf-8", "replace")).replace("\x0e", "").strip()


@FUZZ
@given(hostile_bytes, hostile_bytes, hostile_bytes)
def test_no_value_a_user_controls_makes_qstat_unreadable(name, variables, note):
    # A job's name and variables are any user's; the note is an administrator's. One of them
    # once made the whole answer unreadable ("x]]>", "&#0;"), so nothing could be decided.
    jobs = jobs_from_bytes(
        b'<?xml version="1.0"?>\n<Data><Job><Job_Id>1.srv</Job_Id><Job_Name>' + mxml(name)
        + b"</Job_Name><Variable_List>" + mxml(variables) + b"</Variable_List><job_state>Q</job_state>"
        + b"<Resource_List><nodes>1:ppn=2</nodes></Resource_List></Job><Job><Job_Id>2.srv</Job_Id>"
        + b"<comment>" + mxml(note) + b"</comment></Job></Data>")
    assert [j.id for j in jobs] == ["1.srv", "2.srv"] and jobs[0].cores == 2
    if b"&" not in name and b"\r" not in name:
        assert jobs[0].name == expected_text(mxml(name))
    (node,) = nodes_from_bytes(b"<Data><Node><name>n1</name><np>4</np><note>" + mxml(note)
                               + b"</note></Node></Data>")
    if b"&" not in note and b"\r" not in note:
        assert node.note == expected_text(mxml(note))


@pytest.mark.parametrize("name", [b"x]]>", b"]]]]>>", b"&#0;", b"&#xD800;", b"&#1114112;", b"]]\x01>",
                                  b"<![CDATA[", b"&#x0;&amp;&", b"]"])
def test_values_that_once_broke_qstat_are_read(name):
    (job,) = jobs_from_bytes(b"<Data><Job><Job_Id>1.srv</Job_Id><Job_Name>" + mxml(name)
                             + b"</Job_Name></Job></Data>")
    assert job.id == "1.srv"
    for size in (1, 2, 3, 5):  # and cut anywhere by the pipe
        (cut,) = parse_jobs(Trickle(b"<Data><Job><Job_Id>1.srv</Job_Id><Job_Name>" + mxml(name)
                                    + b"</Job_Name></Job></Data>", size))
        assert cut == job


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.one_of(qstat_documents.filter(lambda d: len(d) < 30_000)), st.integers(1, 300))
def test_a_slow_pipe_reads_the_same_as_a_fast_one(data, size):
    # Pieces split entities, tags and UTF-8 sequences anywhere: the answer must not change.
    whole = _outcome(lambda d: parse_jobs(io.BytesIO(d)), data)
    trickled = _outcome(lambda d: parse_jobs(Trickle(d, size)), data)
    assert trickled == whole


@pytest.mark.parametrize("doc", [
    b'<?xml version="1.0"?>\n<Data></Data>',
    b'<?xml version="1.0"?>\n<Data><Job><Job_Id>1.s</Job_Id></Job></Data>',
    b"<Data><Node><name>n1</name></Node></Data>",
    b"<Data><Job><Job_Id>1.s</Job_Id><Job_Name>&#x00000000041;&#65;&amp;&#1114111;</Job_Name></Job></Data>",
])
def test_any_cut_of_the_stream_reads_the_same(doc):
    # Cuts inside the prolog, "<Data>", "</Data>" and long character references once gave
    # "does not start with <Data>", "unexpected '</Dat'" or another name.
    parse = parse_nodes if b"<Node>" in doc else parse_jobs
    whole = _outcome(lambda d: parse(io.BytesIO(d)), doc)
    assert whole != XMLFormatError
    for size in range(1, len(doc) + 1):
        assert _outcome(lambda d, n=size: parse(Trickle(d, n)), doc) == whole, size


BILLION_LAUGHS = (b'<?xml version="1.0"?><!DOCTYPE Data [<!ENTITY lol "lol">'
                  + b"".join(b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10)
                             for i in range(1, 10)) + b"]>")


@pytest.mark.parametrize("data", [
    BILLION_LAUGHS + b"<Data><Job><Job_Id>1.s</Job_Id><Job_Name>&lol9;</Job_Name></Job></Data>",
    b'<!DOCTYPE Data [<!ENTITY e SYSTEM "file:///etc/passwd">]><Data><Job><Job_Id>1.s</Job_Id>'
    b"<Job_Name>&e;</Job_Name></Job></Data>",
    b"<Data><Job><!DOCTYPE Job [<!ENTITY e 'expanded'>]><Job_Id>1.s</Job_Id><Job_Name>&e;</Job_Name></Job></Data>",
])
def test_entity_declarations_are_refused_never_expanded(data):
    outcome = measured(lambda: jobs_from_bytes(data), (XMLFormatError,))
    assert isinstance(outcome.error, XMLFormatError)
    assert outcome.peak < 16 << 20  # refused, not expanded (the laughs expand to 1 GB)


def test_undeclared_entity_references_stay_literal_text():
    # Torque writes "&" raw, so "&lol9;" or "&e;" in a value is the user's text, not a reference.
    data = (b"<Data><Job><Job_Id>1.s</Job_Id><Job_Name>&lol9;&e;&amp;&#65;</Job_Name>"
            b"<Variable_List>PATH=/bin&HOME=/root;a=$(touch x)</Variable_List></Job></Data>")
    (job,) = jobs_from_bytes(data)
    assert job.name == "&lol9;&e;&A"


def test_deep_nesting_and_huge_values_are_bounded():
    deep = b"<Data><Job><Job_Id>1.s</Job_Id>" + b"<a>" * 200_000 + b"</a>" * 200_000 + b"</Job></Data>"
    outcome = measured(lambda: jobs_from_bytes(deep), (XMLFormatError,))
    assert outcome.value and outcome.value[0].id == "1.s"
    assert outcome.peak < 200 << 20


def test_an_element_that_never_ends_is_refused_in_linear_time():
    # 70 MB without a closing tag, read in 64 KiB pieces: each piece is searched once (a search
    # of the whole buffer per piece took 16 s here), and the element is refused past 64 MB.
    # (The time is a figure of `bench fuzz --only linear`; here: refused, never accepted.)
    data = b"<Data><Job><Job_Id>1.s</Job_Id><Job_Name>" + b"y" * 70_000_000
    with pytest.raises(XMLFormatError, match="larger than"):
        list(parse_jobs(io.BytesIO(data)))


@pytest.mark.parametrize("value", [b"," * 1_000_000, b"0" * 1_000_000, b"0-" * 500_000, b"0,/" * 300_000])
def test_node_jobs_attribute_is_read_in_linear_time(value):
    # The pattern once used here backtracked over every run of digits and commas: minutes.
    # (Its time by length is a figure of `bench fuzz --only linear`; here: it is read.)
    data = b"<Data><Node><name>n1</name><np>4</np><jobs>" + value + b"</jobs></Node></Data>"
    (node,) = nodes_from_bytes(data)
    assert node.name == "n1"


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789,-/a. \u0663", max_size=40))
def test_node_jobs_reader_finds_what_the_documented_pattern_finds(value):
    expected_ids: list[str] = []
    for _spec, job_id in re.findall(r"([\d,\-]+)/([^,]+)", value):
        if job_id.strip() and job_id.strip() not in expected_ids:
            expected_ids.append(job_id.strip())
    assert list(parse_node_jobs(value)[0]) == expected_ids


def test_a_cloud_reply_with_entity_tricks_is_not_expanded():
    # Phantom replies are repaired with ElementTree before botocore parses them; expat refuses
    # the billion laughs (its amplification limit) and never loads an external entity.
    class Shape:
        type_name = "structure"
        members: dict = {}
        serialization = {"resultWrapper": "TerminateInstanceInAutoScalingGroupResult"}

    class Operation:
        output_shape = Shape()

    for body in (BILLION_LAUGHS + b"<R><A>&lol9;</A></R>",
                 b'<!DOCTYPE R [<!ENTITY e SYSTEM "file:///etc/passwd">]><R><A>&e;</A></R>'):
        reply = {"body": body, "status_code": 200}
        outcome = measured(lambda reply=reply: repair_phantom_reply(Operation(), reply), ())
        assert outcome.peak < 256 << 20  # stopped by expat's amplification limit: fully expanded, 1 GB
        assert reply["body"] == body  # left for botocore to refuse, not expanded
        with pytest.raises(ET.ParseError):
            ET.fromstring(body)


def test_streamed_parsers_accept_any_stream_of_pieces():
    nodes = b"<Data>" + b"<Node><name>n%d</name><np>2</np></Node>" * 3 % (1, 2, 3) + b"</Data>"
    assert [n.name for n in parse_nodes(Trickle(nodes, 1))] == ["n1", "n2", "n3"]


# -- the accounting log ----------------------------------------------------------------------------

@FUZZ
@given(accounting_line())
def test_hostile_accounting_lines_parse_or_are_refused(line):
    def parse_all():
        record = parse_line(line)
        # Every field accessor answers None for what it cannot read; none of them raises.
        return (record, dict(record.fields), record.cores, record.execution_slots,
                record.walltime_secs, record.used_walltime_secs, record.exit_status, record.start,
                record.end, record.qtime, record.resources, record.resources_used)

    outcome = measured(parse_all, (AccountingFormatError,))
    assert_bounded(outcome, len(line), "accounting line")
    if outcome.value is not None:
        record = outcome.value[0]
        assert record.type in "QSEDARCT" and record.job_id and " " not in record.job_id


@FUZZ
@given(accounting_files)
def test_hostile_accounting_files_read_the_same_whole_and_tailed(tmp_path_factory, data):
    directory = tmp_path_factory.mktemp("acct")
    (directory / "20261125").write_bytes(data)
    parser = AccountingParser()
    outcome = measured(lambda: list(parser.parse_file(directory / "20261125")), ())
    assert_bounded(outcome, len(data), "accounting file")
    lines = data.split(b"\n")
    complete = len(lines) - 1
    assert parser.parsed + parser.bad >= complete
    tailer = AccountingTailer(directory, from_start=True)
    tailed = []
    while batch := tailer.poll(limit=500):
        tailed.extend(batch)
    # The tailer holds back a last line without its newline; everything before matches.
    whole = outcome.value
    assert tailed == whole[:len(tailed)]
    assert len(whole) - len(tailed) <= (0 if data.endswith(b"\n") else 1)


def test_a_block_of_bad_lines_is_skipped_in_linear_time(tmp_path):
    # Each bad line's byte offset was computed (a scan from the block's start) even when the
    # line was not logged: a 64 KiB block of empty lines took minutes to tail.
    # (Its time by length is a figure of `bench fuzz --only linear`; here: all is read.)
    (tmp_path / "20261125").write_bytes(b"\n" * 300_000 + b"11/25/2026 09:00:00;E;1.s;a=b\n")
    tailer = AccountingTailer(tmp_path, from_start=True)
    records = tailer.poll()
    assert [r.job_id for r in records] == ["1.s"]
    assert tailer.parser.bad == 300_000
