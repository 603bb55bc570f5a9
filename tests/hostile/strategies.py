"""Hostile inputs for Phorque's parsers: structured enough to get past the first check, then wrong.

Random bytes rarely look like a qstat document or an accounting line, so they exercise only the
first ``if``. These strategies build real layouts (``<Data><Job>...``, ``MM/DD/YYYY HH:MM:SS;E;
id;key=value ...``, ``[Cloud-x]`` sections) and fill them with what an attacker, a broken server
or a careless administrator would put there: shell metacharacters, quotes, XML fragments and
entity tricks, control and terminal escape bytes, invalid UTF-8, huge values, deep nesting,
pathological ``Resource_Request_2.0`` requests, truncation at any byte.

Shared by the property tests and by ``bench/fuzz.py``, which runs them for minutes.
"""

from __future__ import annotations

from hypothesis import strategies as st

#: The file a hostile value would create if any part of Phorque ran it through a shell.
MARK = "phorque-hostile-mark"

SHELL = [f"$(touch {MARK})", f"`touch {MARK}`", f";touch {MARK}", f"|touch {MARK}", f"&&touch {MARK}",
         f"\ntouch {MARK}\n", "'", '"', "${IFS}", "\\", "*", "~", "!", "#", "$HOME", "%(x)s", "%s",
         "{0}", "-c", "--", "-o"]
XML_BITS = ["</Job>", "</Data>", "<Job>", "<Data>", "</Node>", "<Node>", "<![CDATA[", "]]>", "<!--",
            "-->", "<?xml version='1.0'?>", "<!DOCTYPE x [<!ENTITY e 'ee'>]>", "&e;", "&lol9;",
            "&amp;", "&lt;", "&#0;", "&#x1b;", "&#xD800;", "&#1114112;", "&#65;", "&", "<", ">",
            "\x0e", "<a>", "</a>", "<x:y>", "xmlns='urn:x'"]
CONTROL = [chr(c) for c in range(32)] + ["\x7f", "\x1b[2J", "\x1b]0;title\x07", "\x9b", "\u2028",
                                         "\u202e", "\ufeff", "\ufffe", "\uffff"]
BAD_UTF8 = [b"\xff", b"\xfe", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe2\x82",
            b"\x80", b"\xf0\x9f"]

_PIECES = [s.encode() for s in SHELL + XML_BITS + CONTROL] + BAD_UTF8


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")  # lone surrogates become invalid UTF-8


hostile_piece = st.one_of(
    st.sampled_from(_PIECES),
    st.binary(max_size=6),
    st.text(max_size=6).map(_encode),
    st.sampled_from([b"node01", b"1:ppn=4", b"0-3", b"12.srv", b"Q", b"R", b"batch", b"01:00:00"]),
)


#: The longest value generated: enough for every quadratic path to show, small enough to be fast.
LONGEST = 200_000


@st.composite
def repeated(draw, pieces=hostile_piece, most: int = 20_000) -> bytes:
    """One piece repeated many times: huge values, long runs of one character."""
    piece = draw(pieces)
    return piece * min(draw(st.integers(1, most)), LONGEST // max(1, len(piece)))


#: A value: a few hostile pieces, or a huge repetition of one.
hostile_bytes = st.one_of(
    st.lists(hostile_piece, max_size=10).map(b"".join),
    repeated(),
)


def _tag(name: str, value: bytes) -> bytes:
    return b"<%s>%s</%s>" % (name.encode(), value, name.encode())


def _numberish() -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.integers(-10**30, 10**30).map(lambda n: str(n).encode()),
        st.sampled_from([b"", b"-", b"1e999", b"nan", b"0x10", b"\xd9\xa3", b"\xc2\xb2", b" 7 "]),
        st.integers(1, 6000).map(lambda n: b"9" * n),
        hostile_bytes,
    )


def _nodes_spec() -> st.SearchStrategy[bytes]:
    part = st.one_of(
        st.builds(lambda n, p: b"%s:ppn=%s" % (n, p), _numberish(), _numberish()),
        st.sampled_from([b"node01:ppn=2", b"2:gpus=1:ppn=8", b"+", b":", b"#excl", b"ppn=", b"=:="]),
        hostile_bytes,
    )
    return st.one_of(st.lists(part, max_size=6).map(b"+".join), repeated(part, 5_000))


def _request2() -> st.SearchStrategy[bytes]:
    part = st.one_of(
        st.builds(lambda t, p: b"-L tasks=%s:lprocs=%s" % (t, p), _numberish(), _numberish()),
        st.sampled_from([b"-L", b"-L tasks=", b"tasks=1:tasks=2", b"lprocs=all", b"-L-L-L", b"= = ="]),
        hostile_bytes,
    )
    return st.one_of(st.lists(part, max_size=6).map(b" ".join), repeated(part, 5_000))


def _nested(depth: int, inner: bytes) -> bytes:
    return b"<a>" * depth + inner + b"</a>" * depth


_JOB_TAGS = ["Job_Name", "Job_Owner", "job_state", "queue", "exec_host", "qtime", "start_time",
             "Variable_List", "comment", "Output_Path", "euser", "submit_args"]


@st.composite
def job_element(draw) -> bytes:
    """A ``<Job>`` with real attributes holding hostile values."""
    children: list[bytes] = []
    if draw(st.integers(0, 9)):
        children.append(_tag("Job_Id", draw(st.one_of(st.just(b"1.srv"), hostile_bytes))))
    for name in draw(st.lists(st.sampled_from(_JOB_TAGS), max_size=6)):
        children.append(_tag(name, draw(hostile_bytes)))
    resources = draw(st.lists(st.one_of(
        st.builds(lambda v: _tag("nodes", v), _nodes_spec()),
        st.builds(lambda v: _tag("procs", v), _numberish()),
        st.builds(lambda v: _tag("walltime", v), st.one_of(_numberish(), st.sampled_from(
            [b"99:99:99:99", b"1:2:3:4:5", b"::", b"01:00:00.5"])))), max_size=4))
    if resources:
        children.append(_tag("Resource_List", b"".join(resources)))
    if draw(st.booleans()):
        children.append(_tag("Resource_Request_2.0", draw(_request2())))
    if draw(st.integers(0, 4)) == 0:
        count = draw(st.integers(0, 3_000))
        children.append(_tag("req_information", b"".join(
            b"<task_count.%d>%s</task_count.%d><lprocs.%d>2</lprocs.%d>" % (i, b"9" * (i % 40 + 1), i, i, i)
            for i in range(count))))
    if draw(st.booleans()):
        children.append(_tag("Walltime", _tag("Remaining", draw(_numberish()))))
    if draw(st.integers(0, 5)) == 0:
        children.append(_nested(draw(st.integers(1, 20_000)), draw(hostile_bytes)))
    if draw(st.integers(0, 5)) == 0:
        children.insert(draw(st.integers(0, len(children))), draw(hostile_bytes))  # stray text
    return b"<Job>" + b"".join(draw(st.permutations(children))) + b"</Job>"


@st.composite
def node_element(draw) -> bytes:
    """A ``<Node>`` with real attributes holding hostile values."""
    jobs = st.one_of(
        st.lists(st.builds(lambda r, j: b"%s/%s" % (r, j),
                           st.sampled_from([b"0", b"0-3", b"0,3", b"1-3,5-7", b"", b"-", b",,"]) | _numberish(),
                           st.sampled_from([b"12.srv", b"5[3].srv", b""]) | hostile_bytes), max_size=8)
        .map(b",".join),
        repeated(st.sampled_from([b",", b"0", b"0-", b"/", b"0,", b"9" * 20]), 200_000),
        hostile_bytes)
    children = []
    if draw(st.integers(0, 9)):
        children.append(_tag("name", draw(st.one_of(st.just(b"node01"), hostile_bytes))))
    children.append(_tag("state", draw(st.one_of(
        st.lists(st.sampled_from([b"free", b"down", b"offline", b"job-exclusive", b"", b" "]), max_size=5)
        .map(b",".join), hostile_bytes))))
    children.append(_tag("np", draw(_numberish())))
    children.append(_tag("jobs", draw(jobs)))
    for name in draw(st.lists(st.sampled_from(["note", "properties", "status", "ntype", "gpus"]), max_size=4)):
        children.append(_tag(name, draw(hostile_bytes)))
    return b"<Node>" + b"".join(draw(st.permutations(children))) + b"</Node>"


_PROLOGS = [b"", b'<?xml version="1.0"?>\n', b"\n\n", b"<?xml version='1.0' encoding='latin-1'?>",
            b'<?xml version="1.0"?><!DOCTYPE Data [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]>',
            b'<!DOCTYPE Data [<!ENTITY e SYSTEM "file:///etc/passwd">]>', b"\xef\xbb\xbf", b"<?xml"]


@st.composite
def xml_document(draw, element) -> bytes:
    """``<Data>`` of hostile elements, perhaps truncated or with bytes inserted anywhere."""
    body = b"".join(draw(st.lists(element, max_size=4)))
    doc = draw(st.sampled_from(_PROLOGS)) + b"<Data>" + body + draw(st.sampled_from([b"</Data>", b"</Data>\n", b""]))
    mutation = draw(st.integers(0, 5))
    if mutation == 0 and doc:
        doc = doc[:draw(st.integers(0, len(doc)))]
    elif mutation == 1:
        at = draw(st.integers(0, len(doc)))
        doc = doc[:at] + draw(hostile_bytes) + doc[at:]
    return doc


qstat_documents = xml_document(job_element())
pbsnodes_documents = xml_document(node_element())

# -- accounting lines ------------------------------------------------------------------------------

_KEYS = ["user", "group", "jobname", "queue", "ctime", "qtime", "etime", "start", "owner", "exec_host",
         "session", "end", "Exit_status", "total_execution_slots", "unique_node_count", "requestor",
         "Resource_List.nodes", "Resource_List.procs", "Resource_List.walltime", "Resource_List.neednodes",
         "resources_used.walltime", "resources_used.cput", "Resource_Request_2.0", "x", "start_count"]


def _text(piece: st.SearchStrategy[bytes]) -> st.SearchStrategy[str]:
    return piece.map(lambda b: b.decode("utf-8", "surrogateescape"))


@st.composite
def accounting_line(draw) -> str:
    """One line: a (mostly) real header and ``key=value`` text with hostile values."""
    stamp = draw(st.one_of(
        st.just("11/25/2026 09:00:00"),
        st.builds(lambda m, d, y, h, mi, s: f"{m:02d}/{d:02d}/{y:04d} {h:02d}:{mi:02d}:{s:02d}",
                  st.integers(0, 13), st.integers(0, 32), st.integers(0, 10_000), st.integers(0, 25),
                  st.integers(0, 61), st.integers(0, 62)),
        _text(hostile_bytes)))
    rtype = draw(st.one_of(st.sampled_from(list("QSEDARCT")), _text(hostile_bytes)))
    job_id = draw(st.one_of(st.sampled_from(["1.srv", "12[3].srv", "7[].srv"]), _text(hostile_bytes)))
    pairs = []
    for key in draw(st.lists(st.sampled_from(_KEYS), max_size=10)):
        if key == "Resource_Request_2.0":
            value = draw(_text(_request2()))
        elif key in ("Resource_List.nodes", "Resource_List.neednodes"):
            value = draw(_text(_nodes_spec()))
        elif key == "exec_host":
            value = draw(_text(st.one_of(
                st.lists(st.builds(lambda h, s: b"%s/%s" % (h, s), hostile_bytes | st.just(b"n1"),
                                   _numberish() | st.just(b"0-31")), max_size=6).map(b"+".join),
                repeated(st.sampled_from([b"+", b"n/", b"/0-", b",", b"n/0-999999999+"]), 50_000))))
        else:
            value = draw(_text(st.one_of(_numberish(), hostile_bytes)))
        pairs.append(f"{key}={value}")
    text = " ".join(pairs)
    extra = draw(st.integers(0, 6))
    if extra == 0:
        text += "=" * draw(st.integers(1, 100_000))
    elif extra == 1:
        text += " " * draw(st.integers(1, 100_000)) + "a="
    elif extra == 2:
        text = "a=" * draw(st.integers(1, 50_000))
    elif extra == 3:
        text += ";" * draw(st.integers(1, 1_000))
    parts = [stamp, rtype, job_id, text]
    if draw(st.integers(0, 9)) == 0:
        del parts[draw(st.integers(0, 3))]
    return ";".join(parts)


#: A whole log file: hostile lines and raw bytes, perhaps without a final newline.
accounting_files = st.builds(
    lambda lines, junk, end: b"\n".join(_encode(line) for line in lines) + junk + end,
    st.lists(accounting_line(), max_size=8), st.one_of(st.just(b""), hostile_bytes),
    st.sampled_from([b"", b"\n", b"\r\n"]))

# -- configuration files -----------------------------------------------------------------------------

#: Credentials put in every generated configuration; no message may ever show them.
ACCESS_ID = "AKIDHOSTILEFUZZ0042"
SECRET_KEY = "hostile-fuzz-secret-Zx81"

BASE_CONFIG = f"""[Phorque]
state_dir = /nonexistent/phorque-fuzz
loop_sleep_secs = 120
command_timeout_secs = 30
trigger_address = 127.0.0.1:15099

[Policy]
name = CostAware
price_per_hour = 10

[Cloud-hotel]
cloud_uri = http://127.0.0.1:1
autoscale_uri = http://127.0.0.1:1
access_id = {ACCESS_ID}
secret_key = {SECRET_KEY}
image_id = ami-1
instance_type = t3.micro
instance_cores = 2
max_instances = 4
autoscale_group_name = g
"""

_OPTIONS = ["loop_sleep_secs", "command_timeout_secs", "event_delay_secs", "state_dir", "lock_file",
            "trigger_address", "queue_name", "log_file", "watch_files", "name", "price_per_hour",
            "multiplier", "scale_in_margin_secs", "cloud_type", "cloud_uri", "cloud_port", "region",
            "instance_cores", "max_instances", "price", "charge_time_secs", "security_groups",
            "node_properties", "launch_config_name", "connect_timeout_secs", "max_attempts",
            "verify_tls", "profile", "node_dns", "boot_secs", "access_id", "secret_key"]

_CONFIG_VALUES = ["%(x)s", "%%", "%(secret_key)s", "$", "$$", "$$x", "${", "${}", "$X", "${X}", "$1x",
                  "${UNSET_PHORQUE_VAR}", "inf", "-inf", "nan",
                  "1e308", "-0", "0x10", "9" * 5000, "1" * 17, "true", "yes", "", " ", "\t",
                  "http://", "file:///etc/passwd", "a@b", "[unknown]", "::", "127.0.0.1:99999",
                  "[Cloud-x]", "= =", "; comment", "# comment"]


#: In every value given to access_id or secret_key: no message may ever show it.
SECRET_TOKEN = "SeKr1tT0k3n"

_secret_values = st.builds(
    lambda before, after: before + SECRET_TOKEN + after,
    st.sampled_from(["", "$", "$$", "${", "$-", "%(", "'", " ", "\x1b", "9" * 30]),
    st.sampled_from(["", "}", "%(x)s", "\n  more", "\t", "-" * 5000, "\ufffd"]))


@st.composite
def config_file(draw) -> bytes:
    """The base configuration with hostile edits: values, duplicates, sections, encodings."""
    lines = BASE_CONFIG.splitlines()
    for _ in range(draw(st.integers(0, 5))):
        option = draw(st.sampled_from(_OPTIONS))
        if option in ("access_id", "secret_key"):
            value = draw(_secret_values)
        else:
            value = draw(st.one_of(st.sampled_from(_CONFIG_VALUES),
                                   _text(hostile_bytes).map(lambda t: t.replace("\n", "\n  ")),
                                   st.integers(1, 200_000).map(lambda n: "x" * n)))
        at = draw(st.integers(0, len(lines)))
        lines.insert(at, f"{option} = {value}" if draw(st.integers(0, 5)) else f"{option}: {value}")
    if draw(st.integers(0, 5)) == 0:
        lines.insert(draw(st.integers(0, len(lines))),
                     draw(st.sampled_from(["[Phorque]", "[Cloud-hotel]", "[Cloud-]", "[Cloud-\x1b[2J]",
                                           "[]", "[Policy", "  indented", "=", "[Cloud-a]\nimage_id=x"])))
    text = "\n".join(lines) + "\n"
    encoding = draw(st.integers(0, 9))
    if encoding == 0:
        return text.encode("utf-16", "surrogatepass")
    if encoding == 1:
        return b"\xef\xbb\xbf" + _encode(text)
    if encoding == 2:
        return _encode(text.replace("\n", "\r\n"))
    if encoding == 3:
        return text.encode("latin-1", "replace") + b"\xff\xfe"
    return _encode(text)


#: The environment the configuration files are loaded with.
CONFIG_ENV = {"X": "x-value", "SeKr1tT0k3n": "from-the-environment"}
