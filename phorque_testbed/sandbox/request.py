"""What qsub is asked for: resource lists, array ranges, job names, the run-time directive.

``Resource_List`` is built the way pbs_server builds it, so that accounting and qstat show the
same keys in the same order as Torque: the resources the user asked for, in the order given
(qsub sends ``gpus=N`` as ``gres=gpus:N``; sizes such as ``mem`` are normalised to
``<number><unit>b``, ``64GB`` -> ``64gb``; ``ncpus=N:gpus=M`` adds ``gpus=M`` before ``ncpus``);
then ``nodect`` and ``neednodes`` when ``nodes`` was given (``set_node_ct`` in
resc_def_all.c); then the queue's ``resources_default`` values that were not asked for
(``walltime=01:00:00`` and ``nodes=1``, as ``torque.setup`` configures the ``batch`` queue;
``nodes=1`` only when none of ``nodes``, ``procs`` and ``ncpus`` was asked for, as a real 6.1.3
does), followed again by ``nodect``/``neednodes`` when ``nodes`` came from the defaults.

The sandbox-only directive ``#SANDBOX runtime=<duration> [exit=<status>]`` in a job script says
how long the job really runs (in sandbox seconds, scaled by the speed factor) and with what
exit status it ends. Torque itself reads it as a comment.
"""

from __future__ import annotations

#: Resource names pbs_server knows (svr_resc_def in resc_def_all.c); others are rejected.
KNOWN_RESOURCES = frozenset("""
arch cpupercent cput file mem pmem ncpus vmem pvmem nice pcput walltime nodemask host nodes
procct mpplabel other software taskspn gpus mics pf ppf sds psds procs mppe mppt pmppt mppmem
size mppwidth mppdepth mppnppn mppnodes mpplabels mpptime mpphost mpparch mppnodect advres
deadline depend ddisk dmem epilogue feature flags gattr geometry gmetric gres hostlist image
jgroup jobflags latency loglevel minprocspeed minpreempttime minwclimit naccesspolicy
nallocpolicy nodeset opsys os partition pref procs_bitmap prologue qos queuejob reqattr
retrycount retrycc rmtype select sid signal stagein spriority subnode subnode_list
taskdistpolicy template termsig termtime tid tpn trig trl var vcores wcrequeue cpuclock
""".split())

#: Set by the server, not by the user.
SERVER_SET = frozenset({"nodect", "neednodes", "procct", "energy_used", "maxmem"})

#: Resources of type size (``decode_size``): stored as a number and a unit, printed back as
#: ``<number><k|m|g|t|p>b`` (or ``w`` for words) whatever case or spelling was given.
SIZE_RESOURCES = frozenset({"file", "mem", "pmem", "vmem", "pvmem", "pf", "ppf", "sds", "psds",
                            "mppmem"})
#: Resources of type long (``decode_l``): an optional sign and digits, printed as a number.
LONG_RESOURCES = frozenset({"cpupercent", "ncpus", "nice", "nodemask", "taskspn", "gpus",
                            "mics", "size", "mppe", "mppwidth", "mppdepth", "mppnppn",
                            "mppnodect"})
_SHIFTS = {"k": 10, "m": 20, "g": 30, "t": 40, "p": 50, "e": 60}
#: ``from_size`` has a letter for these shifts only (an ``e`` value prints without one).
_SHIFT_LETTERS = {10: "k", 20: "m", 30: "g", 40: "t", 50: "p"}

#: The ``batch`` queue's resources_default, as torque.setup creates it.
QUEUE_DEFAULTS: tuple[tuple[str, str], ...] = (("walltime", "01:00:00"), ("nodes", "1"))
DEFAULT_WALLTIME = 3600

PBSE_BADATVAL = 15016
PBSE_UNKRESC = 15037

MAX_JOB_NAME = 230
MAX_ARRAY_INDEX = 99999  # PBS_MAXJOBARRAY


class RequestError(ValueError):
    """A request pbs_server (or qsub) refuses; the message is what Torque prints and
    ``code`` the error number qsub exits with (2 for qsub's own usage errors)."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code


def duration(text: str) -> int:
    """Seconds from ``S``, ``MM:SS``, ``HH:MM:SS`` or ``D:HH:MM:SS``."""
    text = text.strip()
    if text.isdigit():  # the common case, without importing the resource arithmetic
        return int(text)
    from phorque.adapters.torque.resources import (
        parse_duration,  # costs ~20 ms of start-up; only when needed
    )
    return parse_duration(text)


def hms(seconds: float) -> str:
    """``HH:MM:SS`` (hours may exceed 99), as Torque encodes times.

    The same as :func:`phorque.adapters.torque.resources.format_hms`, which the command path does not import:
    importing it costs every command ~20 ms of start-up.
    """
    secs = max(0, int(seconds))
    return f"{secs // 3600:02d}:{secs % 3600 // 60:02d}:{secs % 60:02d}"


def encode_resources(pairs: list[tuple[str, str]]) -> str:
    """A Resource_List as stored: one ``name=value`` per line (values hold no newline)."""
    return "\n".join(f"{k}={v}" for k, v in pairs)


def decode_resources(text: str) -> list[tuple[str, str]]:
    pairs = []
    for line in text.split("\n"):
        if line:
            name, _, value = line.partition("=")
            pairs.append((name, value))
    return pairs


def split_resources(text: str) -> list[tuple[str, str]]:
    """``-l a=1,b=2`` as ``[(a, 1), (b, 2)]``; raises RequestError for malformed input."""
    pairs = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        name, eq, value = item.partition("=")
        name = name.strip()
        if not eq or not name or not value.strip() or "\n" in value:
            raise RequestError("qsub: illegal -l value")
        pairs.append((name, value.strip()))
    if not pairs:
        raise RequestError("qsub: illegal -l value")
    return pairs


def _strtol(text: str) -> tuple[int, str] | None:
    """C's ``strtol(text, &end, 0)``: the number (wrapped to an unsigned long, as a size keeps
    it) and the rest, or None when no digit starts the text."""
    i = 0
    while i < len(text) and text[i] in " \t\n\v\f\r":
        i += 1
    sign = 1
    if i < len(text) and text[i] in "+-":
        sign = -1 if text[i] == "-" else 1
        i += 1
    base, digits = 10, "0123456789"
    after = text[i + 2:i + 3].lower()
    if text[i:i + 2].lower() == "0x" and after and after in "0123456789abcdef":
        base, digits, i = 16, "0123456789abcdef", i + 2
    elif text[i:i + 1] == "0":
        base, digits = 8, "01234567"
    start = i
    while i < len(text) and text[i].lower() in digits:
        i += 1
    if i == start:
        return None
    number = min(int(text[start:i], base), 2 ** 63 - 1)  # strtol saturates at LONG_MAX
    return (sign * number) % 2 ** 64, text[i:]


def size_value(text: str) -> str | None:
    """A size as pbs_server stores and prints it (``to_size`` then ``from_size``): ``64GB`` ->
    ``64gb``, ``512m`` -> ``512mb``, ``4096`` -> ``4096b``, ``2kw`` -> ``2kw``; None when
    ``decode_size`` refuses it (``1.5gb``, ``4gib``)."""
    parsed = _strtol(text)
    if parsed is None:
        return None
    number, rest = parsed
    shift, words = 0, False
    unit = rest[:1].lower()
    if unit in _SHIFTS:
        shift = _SHIFTS[unit]
        rest = rest[1:]
        if rest:
            if rest.lower() not in ("b", "w"):
                return None
            words = rest.lower() == "w"
    elif unit in ("b", "w"):
        words = unit == "w"
        if rest[1:]:
            return None
    elif rest:
        return None
    return f"{number}{_SHIFT_LETTERS.get(shift, '')}{'w' if words else 'b'}"


def long_value(text: str) -> str | None:
    """A long as ``decode_l`` takes it and ``encode_l`` prints it (``+2`` -> ``2``, ``007`` ->
    ``7``); None when refused."""
    digits = text[1:] if text[:1] in "+-" else text
    if not digits.isdigit() or not digits.isascii():
        return None
    return str(int(text))


def client_resources(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """What qsub sends for ``-l`` pairs (``add_verify_resources``): a resource whose name starts
    with ``gpus`` is sent as ``gres``, ``gpus=2`` as ``gres=gpus:2``; a name given again
    replaces the earlier value and moves to the end (qsub keeps them in an insertion-ordered
    map that re-inserts on replace)."""
    sent: dict[str, str] = {}
    for name, value in pairs:
        if name.startswith("gpus"):
            name, value = "gres", (name + ":" + value)[:len(value) + 5]
        sent.pop(name, None)
        sent[name] = value
    return list(sent.items())


def _check_value(name: str, value: str) -> str:
    """A resource value as pbs_server stores it; RequestError when it would be rejected."""
    # reply_badattr: the message (no trailing space), one space, the attribute (a real 6.1.3)
    bad = RequestError("qsub: submit error (Illegal attribute or resource value for"
                       f" Resource_List.{name})", PBSE_BADATVAL)
    if name in ("walltime", "cput", "pcput"):
        try:
            return hms(duration(value))
        except ValueError:
            raise bad from None
    if name == "procs":
        if not value.isdigit() or int(value) < 1:
            raise bad
        return str(int(value))
    if name in SIZE_RESOURCES:
        size = size_value(value)
        if size is None:
            raise bad
        return size
    if name in LONG_RESOURCES:
        number = long_value(value)
        if number is None:
            raise bad
        return number
    if name == "nodes":
        from phorque.adapters.torque.resources import (
            parse_nodes,  # only for jobs that ask for nodes=
        )
        try:
            chunks = parse_nodes(value)
        except ValueError:
            raise bad from None
        if not chunks or any(c.count < 1 or c.ppn < 1 for c in chunks):
            raise bad
        return value
    return value


#: Walltime of a job that asks for none in a queue without a default: no limit.
NO_WALLTIME = 10 ** 9


def resource_list(requested: list[tuple[str, str]],
                  defaults: tuple[tuple[str, str], ...] | list[tuple[str, str]] = QUEUE_DEFAULTS,
                  ) -> tuple[list[tuple[str, str]], int]:
    """The job's ``Resource_List`` in Torque's order (see the module docstring), with the
    queue's ``defaults``, and its walltime in seconds."""
    user: dict[str, str] = {}
    walltime = NO_WALLTIME
    for name, value in requested:
        if name in SERVER_SET or name not in KNOWN_RESOURCES:
            raise RequestError(f"qsub: submit error (Unknown resource type  Resource_List.{name})",
                               PBSE_UNKRESC)
        if name == "ncpus" and ":gpus=" in value:
            # decode_attributes_into_job's special case: ncpus=N:gpus=M also sets gpus=M,
            # ahead of ncpus
            value, _, gpus = value.partition(":gpus=")
            user["gpus"] = _check_value("gpus", gpus)
        user[name] = _check_value(name, value)  # a later value replaces an earlier one
        if name == "walltime":
            walltime = duration(value)
    result = list(user.items())
    if "nodes" in user:
        result += _node_counts(user["nodes"])
    for name, value in defaults:
        if name in user:
            continue
        if name == "nodes":
            if "procs" in user or "ncpus" in user:
                continue
            result.append((name, value))
            result += _node_counts(value)
        else:
            result.append((name, value))
            if name == "walltime":
                walltime = duration(value)
    return result, walltime


def _node_counts(nodes: str) -> list[tuple[str, str]]:
    if nodes == "1":
        return [("nodect", "1"), ("neednodes", "1")]
    from phorque.adapters.torque.resources import count_nodes
    return [("nodect", str(count_nodes(nodes))), ("neednodes", nodes)]


def array_indices(text: str) -> tuple[list[int], int | None]:
    """The indices of ``-t 0-9``, ``1,3,5-7`` or ``0-99%5``, and the slot limit after ``%``."""
    bad = RequestError("qsub: illegal -t value")
    spec, pct, limit_text = text.strip().partition("%")
    limit = None
    if pct:
        if not limit_text.isdigit() or int(limit_text) < 1:
            raise bad
        limit = int(limit_text)
    indices: set[int] = set()
    for piece in spec.split(","):
        low, dash, high = piece.strip().partition("-")
        if not low.isdigit() or (dash and not high.isdigit()):
            raise bad
        first, last = int(low), int(high) if dash else int(low)
        if last < first or last > MAX_ARRAY_INDEX:
            raise bad
        indices.update(range(first, last + 1))
    if not indices:
        raise bad
    return sorted(indices), limit


def valid_job_name(name: str) -> bool:
    """qsub's ``check_job_name``: printable, no white space, at most 230 characters."""
    return 0 < len(name) <= MAX_JOB_NAME and all(ch.isprintable() and not ch.isspace() for ch in name)


def sandbox_directive(script: str) -> tuple[float | None, int]:
    """``(runtime in sandbox seconds, exit status)`` from ``#SANDBOX`` lines of a script;
    the runtime is None when no line gives it."""
    runtime: float | None = None
    exit_code = 0
    for line in script.splitlines():
        if not line.startswith("#SANDBOX"):
            continue
        for word in line[len("#SANDBOX"):].split():
            key, _, value = word.partition("=")
            try:
                if key == "runtime":
                    runtime = float(duration(value))
                elif key == "exit":
                    exit_code = int(value)
                else:
                    raise ValueError(word)
            except ValueError:
                raise RequestError(f"qsub: bad #SANDBOX directive: {line.strip()}") from None
    return runtime, exit_code


def pbs_directives(script: str, prefix: str = "#PBS") -> list[str]:
    """qsub options from the directive lines at the top of a script.

    Like qsub, reading stops at the first line that is neither blank nor a comment.
    """
    args: list[str] = []
    for line in script.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if not stripped.startswith("#"):
            break
        if stripped.startswith(prefix + " ") or stripped.startswith(prefix + "\t"):
            text = stripped[len(prefix):]
            if '"' in text or "'" in text:
                import shlex
                args.extend(shlex.split(text))
            else:
                args.extend(text.split())
    return args
