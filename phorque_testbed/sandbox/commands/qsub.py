"""``qsub``: submit a job script (a file, or standard input) and print its id.

Supported: ``-l`` (``nodes=X:ppn=Y[:gpus=G][:property][+...]``, ``procs=N``, ``walltime=``,
``mem``/``pmem``/``vmem``/``pvmem`` in any unit, ``gpus=N`` (sent as ``gres=gpus:N``, as qsub
does), ``gres`` and every other resource pbs_server knows), ``-N``, ``-q``, ``-t`` (arrays, with ``%limit``), ``-r y|n``,
``-j``, ``-k``, ``-m``, ``-M``, ``-o``, ``-e``, ``-d``/``-D``, ``-p``, ``-A``, ``-v``,
``-V``, ``-S``, ``-W`` (accepted, ignored), ``-z``, and ``#PBS`` directives at the top of the
script (the command line wins), ``-h`` (held: state H, ``Hold_Types u``) and ``-q QUEUE`` (any
enabled queue; the cluster's ``default_queue`` otherwise). Interactive (``-I``), deferred
(``-a``) and ``-L`` jobs are refused with a message.

As pbs_server does, a job whose ``nodes`` request no node of the list could hold (counting down
and offline nodes, but GPUs only on nodes up and online; an empty list holds nothing) is refused with exit 190 (``Job exceeds queue
resource limits MSG=cannot locate feasible nodes ...``), unless its queue is ``is_transit``.
Quotes in ``-v``/``-V`` values are backslash-escaped, as qsub sends them.

How long the job really runs comes from the sandbox-only directive
``#SANDBOX runtime=<duration> [exit=<status>]`` (default: the cluster's ``default_runtime``).
"""

from __future__ import annotations

import os
import time

from phorque_testbed.sandbox import queues
from phorque_testbed.sandbox.engine import Engine
from phorque_testbed.sandbox.invocation import Reply, Request, getopt
from phorque_testbed.sandbox.layout import Layout
from phorque_testbed.sandbox.request import (
    RequestError,
    array_indices,
    client_resources,
    encode_resources,
    pbs_directives,
    resource_list,
    sandbox_directive,
    split_resources,
    valid_job_name,
)
from phorque_testbed.sandbox.store import Session
from phorque_testbed.sandbox.wire import QSUB_OPTIONS as OPTIONS

UNSUPPORTED = {"I": "interactive jobs", "a": "deferred jobs",
               "L": "-L resource requests", "x": "interactive jobs", "X": "X11 forwarding",
               "F": "job arguments", "P": "proxy users", "T": "job types"}
PBSE_UNKQUE = 15020
PBSE_QUNOENB = 15026
TOO_WIDE = ("qsub: submit error (Job exceeds queue resource limits MSG=cannot locate feasible"
            " nodes (nodes file is empty, all systems are busy, or no nodes have the requested"
            " feature))")
TOO_WIDE_EXIT = 190


def _quoted(value: str) -> str:
    """qsub backslash-escapes quotes in the values it sends in Variable_List."""
    return value.replace("'", "\\'").replace('"', '\\"')


def _variables(env: dict[str, str], workdir: str, host: str, server: str, queue: str,
               extra: list[str], everything: bool) -> str:
    """``Variable_List``: the ``PBS_O_*`` values qsub sends, then ``-v``/``-V`` ones."""
    pairs = [("PBS_O_QUEUE", queue)]
    for name, key in (("PBS_O_HOME", "HOME"), ("PBS_O_LOGNAME", "LOGNAME"), ("PBS_O_PATH", "PATH"),
                      ("PBS_O_MAIL", "MAIL"), ("PBS_O_SHELL", "SHELL"), ("PBS_O_LANG", "LANG")):
        if key in env:
            pairs.append((name, env[key]))
    # -V and -v values come before PBS_O_WORKDIR, PBS_O_HOST and PBS_O_SERVER (a real 6.1.3)
    if everything:
        pairs += [(k, _quoted(v)) for k, v in sorted(env.items())]
    for item in extra:
        for piece in item.split(","):
            name, eq, value = piece.partition("=")
            if name:
                pairs.append((name, _quoted(value if eq else env.get(name, ""))))
    pairs += [("PBS_O_WORKDIR", workdir), ("PBS_O_HOST", host), ("PBS_O_SERVER", server)]
    return ",".join(f"{k}={v}" for k, v in pairs)


def _feasible(engine: Engine, resources: str, now: float) -> bool:
    """Could the node list hold the job's ``nodes`` request (req_quejob's check)? A job without
    one is not checked."""
    from phorque_testbed.sandbox.request import decode_resources
    from phorque_testbed.sandbox.scheduler import could_ever_run, every_node, shape

    spec = dict(decode_resources(resources)).get("nodes")
    if spec is None:
        return True
    return could_ever_run(shape(spec), every_node(engine, now))


def _path(value: str, host: str, workdir: str) -> str:
    if ":" in value:
        return value
    return f"{host}:{value if value.startswith('/') else os.path.join(workdir, value)}"


def build(request: Request, script: str, script_name: str, server: str,
          queues: dict[str, list[tuple[str, str]]] | None = None, default_queue: str = "batch",
          ) -> tuple[dict, list[int] | None, int | None, str | None]:
    """The job qsub submits: ``(fields, array indices, slot limit, array request)``.

    ``fields["runtime"]`` is None when the script does not say (the cluster's default
    applies). ``queues``: the enabled queues and their ``resources_default``. Raises
    RequestError with qsub's message for anything it or pbs_server refuses.
    """
    if queues is None:
        from phorque_testbed.sandbox.request import QUEUE_DEFAULTS
        queues = {default_queue: list(QUEUE_DEFAULTS)}
    try:
        command_line, _ = getopt(request.argv, OPTIONS)
        directives, _ = getopt(pbs_directives(script), OPTIONS)
    except ValueError:
        raise RequestError("qsub: invalid option or missing value\n" + USAGE) from None
    given = {letter for letter, _ in command_line}
    options = command_line + [(k, v) for k, v in directives if k not in given or k == "l"]
    for letter, _ in options:
        if letter in UNSUPPORTED:
            raise RequestError(f"qsub: the Torque sandbox does not run {UNSUPPORTED[letter]} (-{letter})")
    # Resources: the command line's, then those only the script asks for.
    requested = client_resources([pair for k, v in command_line if k == "l"
                                  for pair in split_resources(v)])
    asked = {name for name, _ in requested}
    requested += [(n, v) for n, v in client_resources(
        [pair for k, text in directives if k == "l" for pair in split_resources(text)])
        if n not in asked]
    values = {k: v for k, v in options if k not in ("l", "v")}
    extra_vars = [v for k, v in options if k == "v"]
    user, group, host = request.user, request.group, request.host
    workdir = request.path(values.get("d") or values.get("D") or request.cwd)
    name = values.get("N", script_name)
    if not valid_job_name(name):
        raise RequestError("qsub: illegal -N value" if "N" in values
                           else "qsub: cannot form a valid job name from the script name")
    queue = values.get("q", default_queue).split("@", 1)[0] or default_queue
    if queue not in queues:
        raise RequestError("qsub: submit error (Unknown queue MSG=requested queue not found)",
                           PBSE_UNKQUE)
    rerun = values.get("r", "y")
    if rerun not in ("y", "n"):
        raise RequestError("qsub: illegal -r value")
    try:
        priority = int(values.get("p", "0"))
    except ValueError:
        raise RequestError("qsub: illegal -p value") from None
    resources, walltime = resource_list(requested, queues[queue])
    runtime, exit_code = sandbox_directive(script)
    indices = limit = None
    array_request = values.get("t")
    if array_request is not None:
        indices, limit = array_indices(array_request)
    fields = {
        "name": name, "owner": f"{user}@{host}", "euser": user, "egroup": group,
        "account": values.get("A"), "queue": queue, "resources": encode_resources(resources),
        "submit_args": " ".join(request.argv), "runtime": runtime, "walltime": walltime,
        "exit_code": exit_code, "rerunable": 1 if rerun == "y" else 0,
        "variables": _variables(request.env, workdir, host, server, queue, extra_vars,
                                "V" in values),
        "join_path": values.get("j", "n"), "keep_files": values.get("k", "n"),
        "mail_points": values.get("m", "a"), "priority": priority,
        "output_path": _path(values["o"], host, workdir) if "o" in values else None,
        "error_path": _path(values["e"], host, workdir) if "e" in values else None,
        "init_work_dir": workdir, "submit_host": host,
        "hold": "u" if "h" in values else "",
    }
    return fields, indices, limit, array_request


USAGE = ("usage: qsub [-a date_time] [-A account_string] [-c interval] [-C directive_prefix]\n"
         "[-d path] [-D path] [-e path] [-h] [-j oe|eo|n] [-k {oe}] [-l resource_list]\n"
         "[-m n|{abe}] [-M user_list] [-N jobname] [-o path] [-p priority] [-q queue]\n"
         "[-r y|n] [-S path] [-t number_to_submit] [-v env] [-V] [-W otherattributes=value...]\n"
         "[-z] [script]\n")


def work(layout: Layout, request: Request) -> Reply:
    try:
        options, operands = getopt(request.argv, OPTIONS)
    except ValueError:
        return Reply(err=USAGE, code=2)
    if len(operands) > 1:
        return Reply(err=USAGE, code=2)
    if operands:
        path = operands[0]
        try:
            with open(request.path(path), encoding="utf-8", errors="replace") as handle:
                script = handle.read()
        except OSError as exc:
            return Reply(err=f"qsub: script file '{path}' cannot be loaded - {exc.strerror}\n",
                         code=1)
        script_name = os.path.basename(path)
    else:
        script = request.text()
        script_name = "STDIN"
    with Session(layout) as session:
        engine = Engine(session)
        now = engine.advance(time.time())
        rows = engine.db.execute("SELECT * FROM queues").fetchall()
        known = {r["name"]: queues.defaults(r) for r in rows}
        try:
            fields, indices, limit, array = build(request, script, script_name, engine.server_name,
                                                  known, session.get("default_queue"))
        except RequestError as exc:
            return Reply(err=f"{exc}\n", code=exc.code & 0xFF or 1)
        queue = next(r for r in rows if r["name"] == fields["queue"])
        if not queue["enabled"] or not queue["queue_type"]:
            return Reply(err=f"qsub: submit error (Queue is not enabled MSG=queue is disabled:"
                             f" {queue['name']})\n", code=PBSE_QUNOENB & 0xFF)
        if not queue["is_transit"] and not _feasible(engine, fields["resources"], now):
            return Reply(err=TOO_WIDE + "\n", code=TOO_WIDE_EXIT)
        if fields["runtime"] is None:
            fields["runtime"] = session.get_float("default_runtime")
        job_id = engine.enqueue(fields, script, now, indices, limit, array)
    quiet = any(letter == "z" for letter, _ in options)
    return Reply("" if quiet else f"{job_id}\n")

