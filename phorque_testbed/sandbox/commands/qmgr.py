"""``qmgr``: server and node administration, as Torque 6.1's qmgr.

Supported directives (``-c DIRECTIVE``, or one per line on standard input):

- ``create node NAME [np=N][,gpus=G][,properties="a,b"][,note=TEXT]``: the node is ``down``
  until its pbs_mom reports in (see :mod:`phorque_testbed.sandbox.nodeadmin`);
- ``delete node NAME``: jobs on it are requeued or deleted as Torque 6 does;
- ``set node NAME np=N | gpus=G | properties[+|-]=P | note=TEXT`` (``gpus`` below 1 is refused,
  as ``node_gpus_action`` does);
- ``set server scheduling=true|false`` (true also runs a scheduling cycle), ``keep_completed=N``;
- ``create|delete queue NAME``, ``set queue NAME queue_type|enabled|started|is_transit|
  resources_default.R = V``, ``unset queue NAME ATTR[, ATTR]`` (see
  :mod:`phorque_testbed.sandbox.queues`);
- ``print node NAME``, ``print server``, ``list node NAME``.

Errors are printed as ``qmgr obj=NAME svr=default: MESSAGE`` and exit with status 2, as qmgr
does for a failed ``-c`` directive. A node or queue directive that names none acts on qmgr's
active nodes or queues, and a ``-c`` run has none: it says ``No Active Nodes, nothing done.``
(or ``Queues``) on standard error and exits 0, as Torque 6.1.3's qmgr does.
"""

from __future__ import annotations

import time

from phorque_testbed.sandbox import nodeadmin, queues
from phorque_testbed.sandbox.engine import Engine, TorqueError
from phorque_testbed.sandbox.invocation import Reply, Request, getopt
from phorque_testbed.sandbox.layout import Layout
from phorque_testbed.sandbox.nodeattrs import node_attributes
from phorque_testbed.sandbox.qmgrparse import Directive, QmgrSyntaxError, parse
from phorque_testbed.sandbox.store import Session
from phorque_testbed.sandbox.wire import QMGR_OPTIONS

USAGE = "Usage: qmgr [-a] [-c command] [-e] [-n] [-z] [server...]\n"
PBSE_NOATTR = 15002
PBSE_BADATVAL = 15016
PBSE_UNKNODEATR = 15065
PBSE_BADNDATVAL = 15069
TRUE_WORDS = ("true", "t", "1", "y", "yes")
FALSE_WORDS = ("false", "f", "0", "n", "no")


class NothingDone(Exception):
    """The directive names no object and qmgr has none active: said, and not an error."""


class Failed(Exception):
    """A directive pbs_server rejected: ``(object name, message)``."""


def _gpus(value: str) -> int:
    """``gpus = N``: ``decode_l`` (an optional sign, digits), then ``node_gpus_action``, which
    refuses anything below 1."""
    digits = value[1:] if value[:1] in "+-" else value
    if not digits.isdigit() or int(value) < 1:
        # a real 6.1.3 names no attribute here: "... svr=default: Illegal attribute or
        # resource value for", exit 2
        raise TorqueError(PBSE_BADATVAL, "Illegal attribute or resource value for")
    return int(value)


def _node_values(attributes: list[tuple[str, str, str]], current: list[str] | None = None):
    """``np``, ``gpus``, ``properties`` and ``note`` from a create/set attribute list."""
    np = None
    gpus = None
    props = list(current or [])
    note = None
    for attr, op, value in attributes:
        if attr == "np":
            if op != "=" or not value.isdigit() or int(value) < 1:
                raise TorqueError(PBSE_BADNDATVAL, "Illegal value for  np")
            np = int(value)
        elif attr == "gpus":
            gpus = _gpus(value)
        elif attr == "properties":
            given = [p.strip() for p in value.split(",") if p.strip()]
            if op == "=":
                props = given
            elif op == "+=":
                props += [p for p in given if p not in props]
            else:
                props = [p for p in props if p not in given]
        elif attr == "note":
            note = value
        elif attr in ("ntype", "mom_service_port", "mom_manager_port"):
            continue
        else:
            raise TorqueError(PBSE_UNKNODEATR, f"Unknown node-attribute  {attr}")
    return np, gpus, props, note


def _print_node(engine: Engine, name: str) -> str:
    row = nodeadmin.require(engine, name)
    out = ["#", "# Create nodes and set their properties.", "#", "#",
           f"# Create and define node {name}", "#", f"create node {name}"]
    out.append(f"set node {name} state = {'offline' if row['offline'] else 'free'}")
    out.append(f"set node {name} np = {row['np']}")
    props = [p for p in row["properties"].split(",") if p]
    for i, prop in enumerate(props):
        out.append(f"set node {name} properties {'=' if i == 0 else '+='} {prop}")
    out.append(f"set node {name} ntype = cluster")
    if row["note"]:
        out.append(f'set node {name} note = "{row["note"]}"')
    if row["gpus"]:
        out.append(f"set node {name} gpus = {row['gpus']}")
    return "\n".join(out) + "\n"


def _list_node(engine: Engine, name: str, now: float) -> str:
    row = nodeadmin.require(engine, name)
    alloc: dict[str, list[int]] = {}
    for slot, job in engine.db.execute("SELECT slot, job FROM alloc WHERE node = ? ORDER BY rowid",
                                       (name,)):
        alloc.setdefault(job, []).append(slot)
    attrs = node_attributes(row, list(alloc.items()), [], now)
    return f"Node {name}\n" + "".join(f"\t{a} = {v}\n" for a, _r, v in attrs) + "\n"


def _print_server(engine: Engine) -> str:
    s = engine.session
    queue_lines = [line for row in engine.db.execute("SELECT * FROM queues ORDER BY seq")
                   for line in queues.print_queue(row)]
    return "\n".join([
        "#", "# Create queues and set their attributes.", "#", *queue_lines,
        "#", "# Set server attributes.", "#",
        f"set server scheduling = {'True' if s.get('scheduling') == '1' else 'False'}",
        f"set server default_queue = {s.get('default_queue')}",
        f"set server keep_completed = {s.get_int('keep_completed')}",
        "set server log_events = 511", "set server mail_from = adm",
        "set server node_check_rate = 150", "set server tcp_timeout = 300",
        "set server job_stat_rate = 300", "set server poll_jobs = True",
        "set server next_job_number = " + s.get("next_job_id"), "",
    ])


def _queue(engine: Engine, directive: Directive) -> str:
    """create/delete/set/unset/print/list queue NAME."""
    name, command = directive.name, directive.command
    if name is None:  # "active queue", which the sandbox does not keep
        raise TorqueError(15004, "Invalid request")
    if command == "create":
        queues.create(engine, name, directive.attributes)
    elif command == "delete":
        queues.delete(engine, name)
    elif command == "set":
        queues.set_attributes(engine, name, directive.attributes)
    elif command == "unset":
        queues.unset_attributes(engine, name, [a for a, _o, _v in directive.attributes])
    elif command in ("print", "list"):
        return "\n".join(queues.print_queue(queues.require(engine, name))) + "\n"
    else:
        raise TorqueError(15004, "Invalid request")
    return ""


def execute(engine: Engine, directive: Directive, requestor: str, now: float) -> str:
    """Carry out one directive; returns what qmgr prints. Raises Failed, or NothingDone."""
    name = directive.name
    if name is None and directive.object in ("node", "queue") and directive.command != "active":
        # qmgr acts on its active objects when none is named, and a -c run has none.
        raise NothingDone(f"No Active {'Nodes' if directive.object == 'node' else 'Queues'}, nothing done.")
    try:
        if directive.object == "node":
            if name is None:  # "active node", which the sandbox does not keep
                raise TorqueError(15004, "Invalid request")
            if directive.command == "create":
                np, gpus, props, note = _node_values(directive.attributes)
                nodeadmin.create_node(engine, name, np or 1, props, now, note or "",
                                      gpus=gpus or 0)
            elif directive.command == "delete":
                nodeadmin.delete_node(engine, name, requestor, now)
            elif directive.command == "set":
                row = nodeadmin.require(engine, name)
                np, gpus, props, note = _node_values(
                    directive.attributes, [p for p in row["properties"].split(",") if p])
                if np is not None:
                    nodeadmin.set_np(engine, name, np)
                if gpus is not None:
                    nodeadmin.set_gpus(engine, name, gpus)
                if any(a == "properties" for a, _o, _v in directive.attributes):
                    nodeadmin.set_properties(engine, name, props)
                if note is not None:
                    nodeadmin.set_note(engine, name, note)
            elif directive.command == "print":
                return _print_node(engine, name)
            elif directive.command == "list":
                return _list_node(engine, name, now)
            else:
                raise TorqueError(15004, "Invalid request")
        elif directive.object == "queue":
            return _queue(engine, directive)
        elif directive.object == "server":
            if directive.command == "set":
                for attr, _op, value in directive.attributes:
                    if attr == "scheduling" and value.lower() in TRUE_WORDS + FALSE_WORDS:
                        engine.session.set("scheduling", 1 if value.lower() in TRUE_WORDS else 0)
                        engine.mark_dirty()
                    elif attr == "keep_completed" and value.isdigit():
                        engine.session.set("keep_completed", int(value))
                    else:
                        raise TorqueError(PBSE_NOATTR, "Undefined attribute ")
                engine.schedule(now)
            elif directive.command in ("print", "list"):
                return _print_server(engine)
            else:
                raise TorqueError(15004, "Invalid request")
        else:
            raise TorqueError(15004, "Invalid request")
    except TorqueError as exc:
        raise Failed(name or engine.server_name, exc.text) from None
    return ""


def work(layout: Layout, request: Request) -> Reply:
    try:
        options, _servers = getopt(request.argv, QMGR_OPTIONS)
    except ValueError:
        return Reply(err=USAGE, code=1)
    flags = dict(options)
    lines = [flags["c"]] if "c" in flags else request.text().splitlines()
    requestor = request.requestor
    out, err, code = [], [], 0
    with Session(layout) as session:
        engine = Engine(session)
        now = engine.advance(time.time())
        for text in lines:
            if not text.strip() or text.strip().startswith("#"):
                continue
            if "e" in flags:
                out.append(text + "\n")
            try:
                directive = parse(text)
            except QmgrSyntaxError as exc:
                if "z" not in flags:
                    err.append(f"{exc}\n")
                code = 2
                if "a" in flags:
                    break
                continue
            if directive.command in ("quit", "exit"):
                break
            if directive.command == "help" or "n" in flags:
                continue
            try:
                out.append(execute(engine, directive, requestor, now))
            except NothingDone as exc:
                if "z" not in flags:
                    err.append(f"{exc}\n")
            except Failed as exc:
                obj, message = exc.args
                if "z" not in flags:
                    err.append(f"qmgr obj={obj} svr=default: {message}\n")
                code = 2
                if "a" in flags:
                    break
        engine.schedule(now)
    return Reply("".join(out), "".join(err), code)

