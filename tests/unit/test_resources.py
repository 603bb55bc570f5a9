"""Torque's resource arithmetic (resc_def_all.c) on the reference's examples."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from phorque.adapters.torque.resources import (
    WORD_BYTES,
    Asks,
    count_gpus,
    count_nodes,
    count_proc,
    count_slots,
    format_hms,
    gres_gpus,
    job_asks,
    job_chunks,
    job_cores,
    parse_duration,
    parse_size_mb,
    request2_cores,
    size_mb,
)
from phorque.core.model import Chunk

MIB = 1 << 20


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


# -- sizes -----------------------------------------------------------------------------------

@pytest.mark.parametrize("text,mib", [
    ("0", 0),
    ("1", 1),                      # one byte still needs a MiB: rounded up
    ("1048576", 1),                # no suffix: bytes
    ("1048577", 2),
    ("2048b", 1), ("2048B", 1),
    ("1536kb", 2), ("1536KB", 2), ("1536k", 2), ("1024kb", 1),
    ("1536mb", 1536), ("1536MB", 1536), ("1536m", 1536), ("1536Mb", 1536),
    ("64gb", 64 * 1024), ("64GB", 64 * 1024), ("64g", 64 * 1024),
    ("1tb", 1 << 20), ("2TB", 2 << 20),
    ("1pb", 1 << 30),
    ("1eb", 1 << 40),
    ("8w", 1), ("8W", 1),
    ("256kw", 1), ("512kw", 2),    # words are 4 bytes, as Torque 6.1.3 counts them
    ("1mw", WORD_BYTES), ("2MW", 2 * WORD_BYTES),
    ("1gw", 1024 * WORD_BYTES), ("1tw", WORD_BYTES << 20), ("1pw", WORD_BYTES << 30),
    ("1ew", WORD_BYTES << 40),
    ("0x10gb", 16 * 1024),         # strtol(..., 0): hexadecimal
    ("010gb", 8 * 1024),           # and a leading zero is octal
    (" 64gb ", 64 * 1024),
])
def test_every_size_unit_torque_accepts(text, mib):
    assert parse_size_mb(text) == mib
    assert size_mb(text) == mib


@pytest.mark.parametrize("bad", ["", "gb", "64xb", "64gbb", "64bw", "-1gb", "1.5gb", "08gb",
                                 "64 gb", "64kbw", "1zb"])
def test_sizes_torque_refuses_are_errors_and_read_as_none_asked(bad):
    with pytest.raises(ValueError):
        parse_size_mb(bad)
    assert size_mb(bad) == 0
    assert size_mb(None) == 0


def test_word_size_is_torques():
    # pbs_server's normalize_size and the mom's mm_getsize multiply words by sizeof(int).
    assert WORD_BYTES == 4
    assert parse_size_mb(f"{MIB // WORD_BYTES}w") == 1


# -- shapes: memory per node -------------------------------------------------------------------

@pytest.mark.parametrize("resources,chunks", [
    ({"mem": "64gb"}, (Chunk(1, 1, spread=True, mem_mb=65536),)),
    ({"mem": "64gb", "nodes": "1"}, (Chunk(1, 1, mem_mb=65536),)),
    ({"pmem": "4gb", "nodes": "2:ppn=4"}, (Chunk(2, 4, mem_mb=16384),)),
    # mem is the job's: each node gets its share of the job's cores
    ({"mem": "12gb", "nodes": "2:ppn=4+1:ppn=4"}, (Chunk(2, 4, mem_mb=4096), Chunk(1, 4, mem_mb=4096))),
    ({"mem": "12gb", "nodes": "1:ppn=2+1:ppn=4"}, (Chunk(1, 2, mem_mb=4096), Chunk(1, 4, mem_mb=8192))),
    ({"mem": "10mb", "nodes": "3"}, (Chunk(3, 1, mem_mb=4),)),  # shares round up
    # the larger of the job's share and pmem x ppn
    ({"mem": "8gb", "pmem": "3gb", "nodes": "2:ppn=2"}, (Chunk(2, 2, mem_mb=6144),)),
    ({"mem": "16gb", "pmem": "1gb", "nodes": "2:ppn=2"}, (Chunk(2, 2, mem_mb=8192),)),
    ({"vmem": "16gb", "pvmem": "2gb", "nodes": "1:ppn=4"}, (Chunk(1, 4, mem_mb=16384),)),
    ({"vmem": "4gb", "pvmem": "3gb", "nodes": "1:ppn=4"}, (Chunk(1, 4, mem_mb=12288),)),
    ({"mem": "2gb", "vmem": "6gb", "nodes": "2"}, (Chunk(2, 1, mem_mb=3072),)),
    # spread parts carry per-core values
    ({"procs": "4", "mem": "8gb"}, (Chunk(4, 1, spread=True, mem_mb=2048),)),
    ({"procs": "4", "pmem": "1gb"}, (Chunk(4, 1, spread=True, mem_mb=1024),)),
    ({"nodes": "1:ppn=2", "procs": "2", "mem": "4gb"},
     (Chunk(1, 2, mem_mb=2048), Chunk(2, 1, spread=True, mem_mb=1024))),
    ({"ncpus": "4", "mem": "8gb"}, (Chunk(1, 4, mem_mb=8192),)),
    ({"ncpus": "4", "pmem": "1gb"}, (Chunk(1, 4, mem_mb=4096),)),
    # missing or unreadable: none asked
    ({"nodes": "2:ppn=4"}, (Chunk(2, 4),)),
    ({"nodes": "2:ppn=4", "mem": "lots"}, (Chunk(2, 4),)),
])
def test_memory_per_node(resources, chunks):
    assert job_chunks(resources) == chunks


@pytest.mark.parametrize("spec,chunks", [
    ("2:ppn=4:ib+1:ppn=1:bigmem", (Chunk(2, 4, properties=("ib",)), Chunk(1, 1, properties=("bigmem",)))),
    ("1:bigmem:ppn=8", (Chunk(1, 8, properties=("bigmem",)),)),
    ("1:ppn=2:ib:fast", (Chunk(1, 2, properties=("ib", "fast")),)),
    ("2:ib", (Chunk(2, 1, properties=("ib",)),)),
    ("n1:ppn=2:ib", (Chunk(1, 2, host="n1", properties=("ib",)),)),
    ("n1:ppn=2", (Chunk(1, 2, host="n1"),)),
    ("1:ppn=8:gpus=2", (Chunk(1, 8, gpus=2),)),
    ("3:gpus=2:ppn=2", (Chunk(3, 2, gpus=2),)),
    # GPU modes and mics are not node properties
    ("2:ppn=1:gpus=1:exclusive_process", (Chunk(2, 1, gpus=1),)),
    ("1:ppn=1:gpus=1:shared:ib", (Chunk(1, 1, gpus=1, properties=("ib",)),)),
    ("1:ppn=4:mics=2", (Chunk(1, 4),)),
    ("2:ppn=4:ib#excl", (Chunk(2, 4, properties=("ib",)),)),
])
def test_properties_and_gpus_of_nodes_parts(spec, chunks):
    assert job_chunks({"nodes": spec}) == chunks


def test_gpus_and_properties_together_with_memory():
    (chunk,) = job_chunks({"nodes": "1:bigmem:ppn=8:gpus=2", "pmem": "4gb"})
    assert chunk == Chunk(1, 8, mem_mb=32768, gpus=2, properties=("bigmem",))
    assert count_gpus("2:ppn=4:gpus=2+1:ppn=1") == 4


@pytest.mark.parametrize("gres,gpus", [
    ("gpu:2", 2), ("gpus:2", 2), ("GPU:3", 3), ("gpu=2", 2), ("gpu", 1),
    ("tape:1+gpu:2", 2), ("gpu:1%gpu_k80:2", 3), ("matlab:2", 0), ("", 0), ("gpu:x", 0),
])
def test_gres_gpus(gres, gpus):
    assert gres_gpus(gres) == gpus


def test_gres_gpus_go_to_the_jobs_first_node():
    assert job_chunks({"gres": "gpu:2", "nodes": "1"}) == (Chunk(1, 1, gpus=2),)
    assert job_chunks({"gres": "gpus:2"}) == (Chunk(1, 1, spread=True, gpus=2),)
    # one node of a wider part gets them; the job as a whole still asks for 2
    assert job_chunks({"gres": "gpu:2", "nodes": "2:ppn=4"}) == (Chunk(1, 4, gpus=2), Chunk(1, 4))
    assert job_chunks({"gres": "gpu:1", "nodes": "1:ppn=1:gpus=1"}) == (Chunk(1, 1, gpus=2),)
    assert job_chunks({"gres": "matlab:1", "nodes": "1"}) == (Chunk(1, 1),)
    assert job_asks({"gres": "gpu:2", "nodes": "2:ppn=4"}).gpus == 2


@pytest.mark.parametrize("request2,chunks", [
    ("-L tasks=2:lprocs=4:memory=8gb", (Chunk(2, 4, spread=True, mem_mb=2048),)),
    ("-L tasks=2:lprocs=4:memory=8GB:usecores", (Chunk(2, 4, spread=True, mem_mb=2048),)),
    ("-L tasks=1:lprocs=2:memory=1gb -L tasks=3:lprocs=1:memory=512mb",
     (Chunk(1, 2, spread=True, mem_mb=512), Chunk(3, 1, spread=True, mem_mb=512))),
    # whole GPUs per core: still spread
    ("-L tasks=2:lprocs=1:gpus=2", (Chunk(2, 1, spread=True, gpus=2),)),
    ("-L tasks=2:lprocs=2:gpus=4", (Chunk(2, 2, spread=True, gpus=2),)),
    # a GPU shared by a task's cores: one task per node, with the task's memory and GPUs
    ("-L tasks=2:lprocs=4:memory=8gb:gpus=1", (Chunk(2, 4, mem_mb=8192, gpus=1),)),
    ("-L tasks=2:lprocs=4:gpus=1:exclusive_process", (Chunk(2, 4, gpus=1),)),
    # as rebuilt from qstat's req_information (memory in kb)
    ("-L tasks=2:lprocs=4:memory=8388608kb:gpus=1", (Chunk(2, 4, mem_mb=8192, gpus=1),)),
    ("-L tasks=1:lprocs=2:feature=bigmem", (Chunk(1, 2, spread=True, properties=("bigmem",)),)),
    ("-L tasks=3", (Chunk(3, 1, spread=True),)),
])
def test_request2_shapes(request2, chunks):
    assert job_chunks({}, request2) == chunks


def test_job_asks():
    assert job_asks({}) == Asks()
    assert job_asks({"nodes": "2:ppn=4", "walltime": "01:00:00"}) == Asks()
    assert job_asks({"mem": "64gb", "pmem": "4gb", "vmem": "1tb", "pvmem": "2mw",
                     "nodes": "2:ppn=4:gpus=2"}) == Asks(65536, 4096, 1 << 20, 8, 4)
    assert job_asks({"gres": "gpu:2", "nodes": "1:ppn=1:gpus=1"}).gpus == 3
    # -L memory is per task: the job's mem is tasks x memory
    assert job_asks({}, "-L tasks=2:lprocs=4:memory=8gb:gpus=1") == Asks(mem_mb=16384, gpus=2)
    assert job_asks({}, "-L tasks=1:lprocs=2:memory=1gb -L tasks=3:memory=512mb").mem_mb == 2560


@given(st.lists(st.tuples(st.integers(1, 4), st.integers(1, 16)), min_size=1, max_size=4),
       st.integers(0, 10**6), st.integers(0, 10**5), st.integers(0, 10**6), st.integers(0, 10**5))
def test_nodes_together_hold_at_least_what_the_job_asks(parts, mem, pmem, vmem, pvmem):
    spec = "+".join(f"{count}:ppn={ppn}" for count, ppn in parts)
    resources = {"nodes": spec, "mem": f"{mem}mb", "pmem": f"{pmem}mb", "vmem": f"{vmem}mb",
                 "pvmem": f"{pvmem}mb"}
    chunks = job_chunks(resources)
    assert [(c.count, c.ppn) for c in chunks] == parts
    assert sum(c.count * c.mem_mb for c in chunks) >= max(mem, vmem)
    for chunk in chunks:
        assert chunk.mem_mb >= max(pmem, pvmem) * chunk.ppn


@given(st.text(max_size=60))
def test_arbitrary_sizes_and_gres_never_crash(text):
    resources = {"nodes": text, "mem": text, "pmem": text, "gres": text, "procs": text}
    assert job_asks(resources, text).gpus >= 0
    assert all(c.count > 0 for c in job_chunks(resources, text))
    assert size_mb(text) >= 0
