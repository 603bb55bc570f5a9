"""Torque's resource arithmetic (resc_def_all.c) on the reference's examples."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from phorque.model import Chunk
from phorque.resources import (
    count_nodes,
    count_proc,
    count_slots,
    format_hms,
    job_chunks,
    job_cores,
    parse_duration,
    request2_cores,
)


@pytest.mark.parametrize("spec,cores,nodect", [
    ("2:ppn=8", 16, 2),
    ("1:ppn=4+8:ppn=1", 12, 9),
    ("n1:ppn=2+n2:ppn=2", 4, 2),
    ("2:sb:ppn=8", 16, 2),
    ("1:ppn=2+2:ppn=3", 8, 3),
    ("4", 4, 4),
    ("node2801.somecluster.somedomain:ppn=2+node2803.somecluster.somedomain:ppn=2", 4, 2),
    ("2:ppn=4#excl", 8, 2),
    ("3:gpus=2:ppn=2", 6, 3),
    ("12node:ppn=2", 24, 12),  # Torque's atoi quirk: a host name starting with digits is a count
])
def test_count_proc_and_nodect(spec, cores, nodect):
    assert count_proc(spec) == cores
    assert count_nodes(spec) == nodect


@pytest.mark.parametrize("resources,request2,cores", [
    ({"nodes": "2:ppn=4"}, None, 8),
    ({"procs": "6"}, None, 6),
    ({"nodes": "1:ppn=2", "procs": "3"}, None, 5),
    ({}, None, 1),
    ({"ncpus": "2"}, None, 2),  # ncpus alone: N cores on one node, as the schedulers treat it
    ({"ncpus": "2", "nodes": "1"}, None, 1),
    ({"walltime": "01:00:00"}, "-L tasks=1:lprocs=1:usecores:memory=4GB -L tasks=1:lprocs=1:usecores:memory=4GB ", 2),
    ({}, "-L tasks=4:lprocs=2", 8),
])
def test_job_cores(resources, request2, cores):
    assert job_cores(resources, request2) == cores


def test_job_chunks_keep_the_node_shape():
    assert job_chunks({"nodes": "2:ppn=4"}) == (Chunk(2, 4),)
    assert job_chunks({"procs": "3"}) == (Chunk(3, 1, spread=True),)
    assert job_chunks({}) == (Chunk(1, 1, spread=True),)
    assert job_chunks({"nodes": "n1:ppn=2"}) == (Chunk(1, 2, host="n1"),)
    assert job_chunks({"ncpus": "4"}) == (Chunk(1, 4),)


@pytest.mark.parametrize("text,secs", [("12767", 12767), ("05:00", 300), ("01:00:00", 3600),
                                       ("335:34:49", 335 * 3600 + 34 * 60 + 49),
                                       ("1:02:00:00", 93600), ("00:10:00.5", 600)])
def test_durations(text, secs):
    assert parse_duration(text) == secs


@pytest.mark.parametrize("bad", ["", "abc", "1:2:3:4:5", "-5", "1h"])
def test_bad_durations(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_exec_host_slots_as_torque_counts_them():
    hosts = "+".join(f"{n}/0-31" for n in range(2, 11))
    assert count_slots(hosts) == (288, 9)
    assert count_slots("node2801/0-1+node2803/0-1") == (4, 2)
    assert count_slots("a/0+a/1+b/0") == (3, 2)
    assert count_slots("a/1-3,5-7") == (6, 1)
    assert request2_cores("-L tasks=2:lprocs=all") == 2


@given(st.integers(min_value=0, max_value=10**7))
def test_format_and_parse_round_trip(secs):
    assert parse_duration(format_hms(secs)) == secs


@given(st.text(max_size=60))
def test_arbitrary_specs_never_crash(spec):
    assert count_proc(spec) >= 0
    assert job_cores({"nodes": spec, "procs": spec}) >= 1
    assert request2_cores(spec) >= 0
