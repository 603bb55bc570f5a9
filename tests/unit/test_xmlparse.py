"""qstat -f -x and pbsnodes -x parsing, on real layouts and on what real Torque gets wrong."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phorque.adapters.torque.xmlparse import (
    JobMemo,
    XMLFormatError,
    jobs_from_bytes,
    nodes_from_bytes,
    parse_jobs,
    parse_node_jobs,
    parse_state,
    status_value,
)
from phorque.core.model import Chunk, Job, Node
from tests.pipes import Trickle

FIXTURES = Path(__file__).parents[1] / "fixtures" / "torque"


def test_one_line_qstat_sample():
    jobs = jobs_from_bytes((FIXTURES / "qstat_one_line.xml").read_bytes())
    assert len(jobs) == 1
    job = jobs[0]
    assert job.id == "665199.superserver.stanford.edu"
    assert job.state == "R" and job.queue == "interactive" and job.name == "int_tmux"
    assert job.cores == 1
    assert job.exec_hosts == ("node01",)


def test_pretty_printed_qstat_with_arrays_and_plus_specs():
    jobs = {j.id: j for j in jobs_from_bytes((FIXTURES / "qstat_pretty.xml").read_bytes())}
    assert set(jobs) == {"149.master.example.org", "150.master.example.org", "151.master.example.org",
                         "152.master.example.org", "166[1].master.example.org"}
    assert jobs["149.master.example.org"].cores == 2
    assert jobs["149.master.example.org"].remaining_secs == 3207
    assert jobs["149.master.example.org"].walltime_secs == 3600
    assert jobs["149.master.example.org"].started_at == 1562156185
    assert jobs["150.master.example.org"].cores == 2
    assert jobs["150.master.example.org"].exec_hosts == ("node-b", "node-a")
    # ncpus alone is not expanded by pbs_server, but the schedulers treat it as N cores on a node.
    assert jobs["151.master.example.org"].cores == 2
    queued = jobs["152.master.example.org"]
    assert queued.cores == 8 and queued.is_queued
    assert queued.chunks == (Chunk(1, 2), Chunk(2, 3))
    assert jobs["166[1].master.example.org"].cores == 12


def test_empty_outputs_of_torque_4_and_6():
    assert jobs_from_bytes(b"") == []
    assert jobs_from_bytes(b"\n") == []
    assert jobs_from_bytes(b'<?xml version="1.0"?>\n<Data></Data>\n') == []
    assert nodes_from_bytes(b"<Data></Data>") == []


def test_raw_ampersand_and_control_bytes_inside_values_are_repaired():
    data = (b'<?xml version="1.0"?>\n<Data><Job><Job_Id>7.srv</Job_Id><job_state>Q</job_state>'
            b"<queue>batch</queue><Variable_List>A=1&B=2,C=a\x0eb</Variable_List>"
            b"<Job_Name>x&amp;y</Job_Name><Resource_List><procs>3</procs></Resource_List>"
            b"</Job></Data>")
    (job,) = jobs_from_bytes(data)
    assert job.id == "7.srv" and job.cores == 3 and job.name == "x&y"


def test_non_utf8_bytes_do_not_stop_the_parse():
    data = b"<Data><Job><Job_Id>8.srv</Job_Id><job_state>Q</job_state><Job_Name>\xff\xfe</Job_Name></Job></Data>"
    (job,) = jobs_from_bytes(data)
    assert job.id == "8.srv" and job.name == "\ufffd\ufffd"


@pytest.mark.parametrize("data", [
    b'<?xml version="1.0"?>\n<Data><Job><Job_Id>1.s</Job_Id><job_state>Q</job_state></Job><Job><Job_I',
    b"<Data><Job><Job_Id>1.s</Job_Id></Job>",
    b"qstat: cannot connect to server",
    b"<Other></Other>",
])
def test_truncated_or_invalid_output_is_an_error_not_a_partial_answer(data):
    with pytest.raises(XMLFormatError):
        jobs_from_bytes(data)


def test_split_entity_across_read_chunks():
    # An entity cut by the streaming reader must be kept whole.
    from phorque.adapters.torque import xmlparse

    filler = "x" * (xmlparse.CHUNK - len("<Data><Job><Job_Id>1.s</Job_Id><Job_Name>") - 2)
    text = f"<Data><Job><Job_Id>1.s</Job_Id><Job_Name>{filler}&amp;tail</Job_Name></Job></Data>"
    (job,) = list(parse_jobs(io.BytesIO(text.encode())))
    assert job.name.endswith("&tail")


def test_nodes_sample_with_comma_ranges_in_jobs():
    nodes = {n.name: n for n in nodes_from_bytes((FIXTURES / "pbsnodes_pretty.xml").read_bytes())}
    assert nodes["master"].state == frozenset({"down", "offline"})
    assert nodes["master"].np == 1000 and nodes["master"].note == "head node"
    assert nodes["node-a"].free_cores == 4 and nodes["node-a"].is_idle
    busy = nodes["node-b"]
    assert busy.jobs == ("136.master.example.org", "137.master.example.org", "138.master.example.org")
    assert busy.used_slots == 4
    assert busy.free_cores == 0


def test_one_line_pbsnodes_sample_state_is_a_set():
    (node,) = nodes_from_bytes((FIXTURES / "pbsnodes_one_line.xml").read_bytes())
    assert node.state == frozenset({"down", "offline", "MOM-list-not-sent"})
    assert node.is_down and node.is_offline and not node.is_usable


@pytest.mark.parametrize("value,ids,slots", [
    ("0-35/63779.master", ("63779.master",), 36),          # 6.x ranges
    ("0,3/138.srv,4/139.srv", ("138.srv", "139.srv"), 3),  # 6.x comma inside a range
    ("0/12.srv,1/12.srv,2/13.srv", ("12.srv", "13.srv"), 3),  # 4.2: one slot per entry
    ("0/12.srv, 1/12.srv", ("12.srv",), 2),                # 2.x
    ("0-1/5[3].srv", ("5[3].srv",), 2),                    # array sub-job
    ("", (), 0),
])
def test_jobs_attribute_of_every_torque_version(value, ids, slots):
    assert parse_node_jobs(value) == (ids, slots)


def test_state_words():
    assert parse_state("offline,job-exclusive") == frozenset({"offline", "job-exclusive"})
    assert parse_state(" down , offline ") == frozenset({"down", "offline"})
    assert parse_state("") == frozenset({"free"})


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_arbitrary_bytes_never_crash_the_parsers(data):
    for parse in (jobs_from_bytes, nodes_from_bytes):
        try:
            parse(data)
        except XMLFormatError:
            pass


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80), st.text(max_size=80))
def test_arbitrary_values_inside_a_job_never_crash(name, nodes):
    text = (f"<Data><Job><Job_Id>1.s</Job_Id><Job_Name>{name}</Job_Name><job_state>Q</job_state>"
            f"<Resource_List><nodes>{nodes}</nodes></Resource_List></Job></Data>")
    try:
        jobs = jobs_from_bytes(text.encode("utf-8", errors="surrogatepass"))
    except XMLFormatError:
        return
    assert len(jobs) == 1 and jobs[0].cores >= 1


# -- what jobs ask for besides cores, and what nodes offer ----------------------------------------

def _job(inner: str) -> Job:
    (job,) = jobs_from_bytes(f"<Data><Job><Job_Id>1.s</Job_Id><job_state>Q</job_state>{inner}"
                             "</Job></Data>".encode())
    return job


def _resources(**values: str) -> str:
    return "<Resource_List>" + "".join(f"<{k}>{v}</{k}>" for k, v in values.items()) + "</Resource_List>"


def test_memory_asks_in_every_unit_the_server_prints():
    job = _job(_resources(mem="64gb", pmem="1536mb", vmem="1048576b", pvmem="2mw", nodes="2:ppn=4",
                          walltime="01:00:00"))
    assert (job.mem_mb, job.pmem_mb, job.vmem_mb, job.pvmem_mb) == (65536, 1536, 1, 8)
    assert job.chunks == (Chunk(2, 4, mem_mb=32768),)  # 64gb shared by 2 nodes; more than 4 x pmem


def test_gpus_properties_and_gres():
    job = _job(_resources(nodes="2:ppn=4:ib:gpus=1+1:ppn=1:bigmem", gres="gpu:2"))
    assert job.gpus == 4
    assert job.chunks == (Chunk(1, 4, gpus=3, properties=("ib",)), Chunk(1, 4, gpus=1, properties=("ib",)),
                          Chunk(1, 1, properties=("bigmem",)))


@pytest.mark.parametrize("value,rerunnable", [("True", True), ("False", False), ("", None), (None, None)])
def test_rerunnable(value, rerunnable):
    inner = "" if value is None else f"<Rerunable>{value}</Rerunable>"
    assert _job(inner).rerunnable is rerunnable


def test_nothing_asked_reads_as_none_asked():
    job = _job(_resources(nodes="1", walltime="01:00:00"))
    assert (job.mem_mb, job.pmem_mb, job.vmem_mb, job.pvmem_mb, job.gpus) == (0, 0, 0, 0, 0)
    assert job.rerunnable is None
    assert job.chunks == (Chunk(1, 1),)


def test_request2_from_l_request_as_6_1_3_prints_it():
    # 6.1.3: no Resource_List at all, the -L text in L_Request, its parse in req_information.
    job = _job("<request_version>2</request_version><req_information><task_count.0>2</task_count.0>"
               "<lprocs.0>4</lprocs.0><total_memory.0>16777216kb</total_memory.0>"
               "<memory.0>8388608kb</memory.0><gpus.0>1</gpus.0></req_information>"
               "<L_Request>-L tasks=2:lprocs=4:memory=8gb:gpus=1</L_Request>")
    assert job.cores == 8 and job.mem_mb == 16384 and job.gpus == 2
    assert job.chunks == (Chunk(2, 4, mem_mb=8192, gpus=1),)


def test_request2_rebuilt_from_req_information_alone():
    job = _job("<req_information><task_count.0>1</task_count.0><lprocs.0>2</lprocs.0>"
               "<memory.0>1048576kb</memory.0><task_count.1>3</task_count.1><lprocs.1>1</lprocs.1>"
               "<memory.1>524288kb</memory.1></req_information>")
    assert job.cores == 5 and job.mem_mb == 1024 + 3 * 512
    assert job.chunks == (Chunk(1, 2, spread=True, mem_mb=512), Chunk(3, 1, spread=True, mem_mb=512))


def test_request2_from_resource_request_2_0():
    job = _job("<Resource_Request_2.0>-L tasks=2:lprocs=2:memory=4GB</Resource_Request_2.0>")
    assert job.cores == 4 and job.mem_mb == 8192


def _node(inner: str) -> Node:
    (node,) = nodes_from_bytes(f"<Data><Node><name>n1</name><state>free</state><np>8</np>{inner}"
                               "</Node></Data>".encode())
    return node


def test_node_memory_from_physmem_and_gpus():
    status = ("opsys=linux,uname=Linux vm 6.18 #1 SMP x86_64,totmem=24683568kb,"
              "availmem=23665564kb,physmem=24683568kb,ncpus=2,gres=,varattr= ,jobs=")
    node = _node(f"<status>{status}</status><gpus>2</gpus>")
    assert node.mem_mb == -(-24683568 // 1024) and node.gpus == 2
    unknown = _node("")
    assert unknown.mem_mb == 0 and unknown.gpus == 0
    assert _node("<status>physmem=lots</status>").mem_mb == 0


@pytest.mark.parametrize("status,key,value", [
    ("a=1,physmem=10kb,b=2", "physmem", "10kb"),
    ("uname=Linux x=y z,physmem=1", "uname", "Linux x=y z"),
    ("availmem=5kb", "physmem", None),
    ("", "physmem", None),
])
def test_status_values(status, key, value):
    assert status_value(status, key) == value


def _answer(jobs: list[tuple[str, str, str]]) -> bytes:
    body = "".join(f"<Job><Job_Id>{jid}</Job_Id><job_state>{state}</job_state><queue>batch</queue>"
                   f"<Resource_List><nodes>{nodes}</nodes></Resource_List></Job>" for jid, state, nodes in jobs)
    return f'<?xml version="1.0"?>\n<Data>{body}</Data>\n'.encode()


@settings(max_examples=60, deadline=None)
@given(reads=st.lists(st.lists(st.tuples(st.sampled_from(["1.s", "2.s", "3[1].s", "3[2].s", "40.s"]),
                                         st.sampled_from("QRHE"),
                                         st.sampled_from(["1:ppn=1", "2:ppn=4", "1:ppn=8+2:ppn=2"])),
                               max_size=12), min_size=1, max_size=5),
       size=st.integers(min_value=1, max_value=400))
def test_a_memo_gives_what_a_fresh_parse_gives_read_after_read(reads, size):
    """Whole-queue reads that keep, change, repeat, reorder and drop jobs, cut anywhere by the
    pipe: the memo's answer is the fresh parse's, and it keeps only the last read's jobs."""
    memo = JobMemo()
    for jobs in reads:
        data = _answer(jobs)
        remembered = list(parse_jobs(Trickle(data, size), memo=memo))
        assert remembered == jobs_from_bytes(data)
        assert set(memo.kept.values()) == set(remembered)


def test_an_unchanged_job_is_not_parsed_again_and_a_changed_one_is():
    memo = JobMemo()
    first = list(parse_jobs(io.BytesIO(_answer([("1.s", "Q", "1:ppn=1"), ("2.s", "Q", "1:ppn=2")])), memo=memo))
    second = list(parse_jobs(io.BytesIO(_answer([("1.s", "Q", "1:ppn=1"), ("2.s", "R", "1:ppn=2")])), memo=memo))
    assert second[0] is first[0]
    assert second[1] is not first[1] and second[1].state == "R" and second[1].cores == 2


def test_a_read_that_fails_leaves_the_memo_as_it_was():
    memo = JobMemo()
    good = _answer([("1.s", "Q", "1:ppn=1")])
    list(parse_jobs(io.BytesIO(good), memo=memo))
    kept = dict(memo.kept)
    truncated = _answer([("1.s", "Q", "1:ppn=1"), ("2.s", "Q", "1:ppn=2")])[:-20]
    with pytest.raises(XMLFormatError):
        list(parse_jobs(io.BytesIO(truncated), memo=memo))
    assert memo.kept == kept
    broken = good.replace(b"<queue>batch</queue>", b"<queue>batch</queue><x>")
    with pytest.raises(XMLFormatError, match="invalid XML"):
        list(parse_jobs(io.BytesIO(broken), memo=memo))
    assert memo.kept == kept
