"""The sandbox's pure parts: requests, placement, qmgr parsing and output formatting."""

from __future__ import annotations

import re

import pytest

from phorque.adapters.torque.resources import count_slots
from phorque_testbed.sandbox import acct, render
from phorque_testbed.sandbox.nodeadmin import nodes_file_text
from phorque_testbed.sandbox.placement import (
    FreeNode,
    exec_host,
    node_jobs,
    parse_exec_host,
    parse_parts,
    place,
    slot_ranges,
)
from phorque_testbed.sandbox.qmgrparse import QmgrSyntaxError, parse
from phorque_testbed.sandbox.request import (
    RequestError,
    array_indices,
    decode_resources,
    encode_resources,
    pbs_directives,
    resource_list,
    sandbox_directive,
    split_resources,
    valid_job_name,
)


# -- requests -------------------------------------------------------------------------------
@pytest.mark.parametrize("requested, expected, walltime", [
    # the order of a real S record: vmem nodes walltime (as asked) nodect neednodes (server)
    ([("vmem", "4224531456b"), ("nodes", "1:ppn=1"), ("walltime", "00:10:00")],
     [("vmem", "4224531456b"), ("nodes", "1:ppn=1"), ("walltime", "00:10:00"),
      ("nodect", "1"), ("neednodes", "1:ppn=1")], 600),
    ([("nodes", "2:ppn=4")],
     [("nodes", "2:ppn=4"), ("nodect", "2"), ("neednodes", "2:ppn=4"), ("walltime", "01:00:00")],
     3600),
    ([("nodes", "1:ppn=2+2:ppn=3"), ("walltime", "90")],
     [("nodes", "1:ppn=2+2:ppn=3"), ("walltime", "00:01:30"), ("nodect", "3"),
      ("neednodes", "1:ppn=2+2:ppn=3")], 90),
    ([("procs", "3")], [("procs", "3"), ("walltime", "01:00:00")], 3600),
    ([], [("walltime", "01:00:00"), ("nodes", "1"), ("nodect", "1"), ("neednodes", "1")], 3600),
], ids=["real-order", "nodes", "plus-parts", "procs", "defaults"])
def test_resource_list_follows_pbs_server_order(requested, expected, walltime):
    assert resource_list(requested) == (expected, walltime)


@pytest.mark.parametrize("requested, message", [
    ([("bogus", "1")], "Unknown resource type  Resource_List.bogus"),
    ([("nodect", "3")], "Unknown resource type  Resource_List.nodect"),
    ([("walltime", "soon")], "Illegal attribute or resource value for Resource_List.walltime"),
    ([("procs", "0")], "Illegal attribute or resource value for Resource_List.procs"),
    ([("nodes", "2:ppn=0")], "Illegal attribute or resource value for Resource_List.nodes"),
    # as a real 6.1.3 answered qsub -l mem=1.5gb (exit 168)
    ([("mem", "1.5gb")], "qsub: submit error (Illegal attribute or resource value for"
                         " Resource_List.mem)"),
])
def test_resource_list_rejects_what_pbs_server_rejects(requested, message):
    with pytest.raises(RequestError, match=re.escape(message)):
        resource_list(requested)


def test_resources_encode_round_trip():
    pairs = [("nodes", "2:ppn=4"), ("mem", "4gb"), ("walltime", "01:00:00")]
    assert decode_resources(encode_resources(pairs)) == pairs


def test_split_resources():
    assert split_resources("nodes=2:ppn=4,walltime=1:00:00") == [
        ("nodes", "2:ppn=4"), ("walltime", "1:00:00")]
    with pytest.raises(RequestError):
        split_resources("nodes")


def test_array_indices():
    assert array_indices("0-3,7") == ([0, 1, 2, 3, 7], None)
    assert array_indices("1-10%2") == (list(range(1, 11)), 2)
    for bad in ("3-1", "a", "1-", "0-5%0", ""):
        with pytest.raises(RequestError):
            array_indices(bad)


def test_job_names_as_qsub_checks_them():
    assert valid_job_name("run_1/part-2")
    assert not valid_job_name("two words")
    assert not valid_job_name("x" * 231)
    assert not valid_job_name("")


def test_pbs_directives_stop_at_the_first_command():
    script = "#!/bin/sh\n#PBS -N named\n\n#PBS -l nodes=2:ppn=4\n# comment\necho hi\n#PBS -q late\n"
    assert pbs_directives(script) == ["-N", "named", "-l", "nodes=2:ppn=4"]


def test_sandbox_directive():
    assert sandbox_directive("#!/bin/sh\necho\n") == (None, 0)
    assert sandbox_directive("#SANDBOX runtime=1:30 exit=3\n") == (90.0, 3)
    with pytest.raises(RequestError):
        sandbox_directive("#SANDBOX runtime=later\n")


# -- placement ------------------------------------------------------------------------------
def _nodes(*specs):
    return [FreeNode(name, props, free) for name, props, free in specs]


def test_nodes_request_takes_distinct_nodes_with_enough_free_slots():
    nodes = _nodes(("n1", [], [0, 1, 2]), ("n2", [], [0, 1, 2, 3]), ("n3", [], [0, 1, 2, 3]))
    alloc = place(parse_parts("2:ppn=4"), 0, nodes).slots
    assert alloc == {"n2": [0, 1, 2, 3], "n3": [0, 1, 2, 3]}
    assert exec_host(alloc) == "n2/0-3+n3/0-3"
    assert place(parse_parts("3:ppn=4"), 0, nodes) is None


def test_procs_fill_nodes_in_order():
    nodes = _nodes(("n1", [], [1, 3]), ("n2", [], [0, 1, 2, 3]))
    alloc = place([], 4, nodes).slots
    assert alloc == {"n1": [1, 3], "n2": [0, 1]}
    assert exec_host(alloc) == "n1/1,3+n2/0-1"
    assert count_slots(exec_host(alloc)) == (4, 2)


def test_properties_and_named_hosts():
    nodes = _nodes(("n1", [], [0, 1]), ("n2", ["bigmem"], [0, 1]), ("n3", [], [0, 1]))
    assert place(parse_parts("1:bigmem:ppn=2"), 0, nodes).slots == {"n2": [0, 1]}
    assert place(parse_parts("n3:ppn=1"), 0, nodes).slots == {"n3": [0]}
    assert place(parse_parts("bigmem"), 0, nodes).slots == {"n2": [0]}
    assert place(parse_parts("2:bigmem:ppn=1"), 0, nodes) is None


def test_larger_parts_are_placed_first_but_listed_in_request_order():
    nodes = _nodes(("n1", [], [0, 1]), ("n2", [], [0, 1, 2, 3]))
    alloc = place(parse_parts("1:ppn=1+1:ppn=4"), 0, nodes).slots
    assert list(alloc) == ["n1", "n2"] and alloc["n2"] == [0, 1, 2, 3]


def test_slot_text_forms():
    assert slot_ranges([5, 0, 1, 2, 3]) == "0-3,5"
    assert node_jobs([("1.srv", [1]), ("2.srv", [2]), ("3.srv", [0, 3])]) == "1/1.srv,2/2.srv,0,3/3.srv"
    assert parse_exec_host("a/0-2,5+b/1") == {"a": [0, 1, 2, 5], "b": [1]}


# -- qmgr -----------------------------------------------------------------------------------
def test_qmgr_directives():
    d = parse('create node ip-10-0-1-5.ec2.internal np=4,properties="gpu,bigmem"')
    assert (d.command, d.object, d.name) == ("create", "node", "ip-10-0-1-5.ec2.internal")
    assert d.attributes == [("np", "=", "4"), ("properties", "=", "gpu,bigmem")]
    d = parse("set server scheduling=true")
    assert (d.command, d.object, d.name, d.attributes) == ("set", "server", None,
                                                           [("scheduling", "=", "true")])
    assert parse("s n n1 properties += b").attributes == [("properties", "+=", "b")]
    assert parse("delete node n1").name == "n1"
    # Naming no node is no syntax error: qmgr then looks for its active nodes (it has none).
    assert (parse("create node").name, parse("delete node np=2").name) == (None, None)
    for bad in ("frobnicate node n1", "create", "create widget x",
                "delete node n1 np=2", 'set node n1 note="open'):
        with pytest.raises(QmgrSyntaxError):
            parse(bad)


# -- formats --------------------------------------------------------------------------------
def test_mxml_escapes_nothing_but_hides_less_than():
    assert render.mxml_value("a<b&c>d") == "a\x0eb&c>d"
    assert render.jobs_xml([]) == '<?xml version="1.0"?>\n<Data></Data>\n'
    assert render.nodes_xml([]) == "<Data></Data>\n"


def test_prt_attr_wraps_on_commas_at_77_columns():
    assert render.prt_attr("Job_Name", None, "STDIN") == "    Job_Name = STDIN"
    assert render.prt_attr("Resource_List", "nodes", "1:ppn=2") == "    Resource_List.nodes = 1:ppn=2"
    value = ",".join(f"PBS_O_VAR{i}=/some/long/value/number/{i}" for i in range(6))
    text = render.prt_attr("Variable_List", None, value)
    lines = text.split("\n")
    assert lines[0].startswith("    Variable_List = PBS_O_VAR0=")
    assert all(line.startswith("\t") for line in lines[1:]) and len(lines) > 2
    assert all(len(line.expandtabs(8)) <= 79 for line in lines)
    assert text.replace("\n\t", "").split(" = ", 1)[1] == value
    assert "\n" not in render.prt_attr("Variable_List", None, value, linesize=65536)


def test_accounting_line_and_file_name():
    when = 1497950689.0
    line = acct.line(when, "Q", "80.srv", "queue=default")
    match = re.fullmatch(r"(\d\d)/(\d\d)/(\d{4}) \d\d:\d\d:\d\d;Q;80\.srv;queue=default\n", line)
    assert match
    month, day, year = match.groups()
    assert acct.file_name(when) == f"{year}{month}{day}"  # the file is named by the record's date


def test_nodes_file_omits_np_of_one_and_gpus_of_none():
    rows = [{"name": "node01", "np": 16, "gpus": 0, "properties": "bigmem,ib"},
            {"name": "node02", "np": 1, "gpus": 0, "properties": ""},
            {"name": "gpu01", "np": 8, "gpus": 2, "properties": "ib"}]
    # write_to_nodes_file: name, np when above 1, gpus when above 0, then the properties
    assert nodes_file_text(rows) == "node01 np=16 bigmem ib\nnode02\ngpu01 np=8 gpus=2 ib\n"
