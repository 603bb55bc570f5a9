"""A longer fuzz run of the qstat, pbsnodes and accounting parsers and the configuration loader.

Two generators share the time: the structured hostile strategies of ``tests/hostile/strategies.py``
driven by hypothesis (real layouts filled with shell metacharacters, XML and entity tricks,
control bytes, bad UTF-8, huge values, deep nesting, truncation), and random mutation of Torque's
real samples (bytes flipped, inserted, deleted, duplicated, truncated). Each example must end in a
result or in the parser's own error type, and must keep its properties (no control character in
a name, no credential in a configuration error, the tailer reading what the whole-file parser
reads, a value a user controls never making qstat unreadable). Printed per target: examples run,
outcomes by type, anything unexpected (with the first example), the slowest example and the peak
resident memory while the target ran.

    python3 dev.py bench fuzz [--minutes M] [--only TARGET ...] [--seed S]

The ``linear`` target (run first, under a minute) times the inputs whose cost once grew with the
square of their size (the accounting tokenizer on the hostile texts of ``tests/unit/test_accounting.py``,
a node's ``jobs`` attribute, an element that never ends, a block of blank accounting lines) at
128 KiB to 1 MiB and prints each time and the ratio to the previous size: about 2 for linear work,
about 4 for quadratic. (The test suite checks that such inputs are read; a time bound there failed
on a loaded machine, so the speed is a figure here.)
"""

from __future__ import annotations

import argparse
import io
import os
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import logging  # noqa: E402

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from phorque.adapters.config import load_config  # noqa: E402
from phorque.adapters.torque.accounting import AccountingFormatError, AccountingParser, parse_line  # noqa: E402
from phorque.adapters.torque.tailer import AccountingTailer  # noqa: E402
from phorque.adapters.torque.xmlparse import (  # noqa: E402
    XMLFormatError,
    jobs_from_bytes,
    nodes_from_bytes,
    parse_jobs,
)
from phorque.core.errors import ConfigError  # noqa: E402
from tests.hostile import strategies as hs  # noqa: E402
from tests.hostile.huge import peak_rss_mib  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures"
CONTROL = set(map(chr, [*range(0, 9), 11, 12, *range(14, 32), 127]))


class PropertyBroken(Exception):
    """An example ended without error but broke a property."""


@dataclass
class Tally:
    examples: int = 0
    outcomes: Counter = field(default_factory=Counter)
    unexpected: dict[str, str] = field(default_factory=dict)
    slowest: float = 0.0
    slowest_size: int = 0
    largest: int = 0
    peak_mib: float = 0.0

    def run(self, check: Callable[[Any], str], example: Any) -> None:
        parts = example if isinstance(example, tuple) else (example,)
        size = sum(len(p) for p in parts if isinstance(p, (bytes, str)))
        started = time.perf_counter()
        try:
            outcome = check(example)
        except (XMLFormatError, AccountingFormatError, ConfigError) as exc:
            outcome = type(exc).__name__
        except Exception as exc:  # what the bench is looking for: record it, keep going
            outcome = f"UNEXPECTED {type(exc).__name__}"
            self.unexpected.setdefault(outcome, f"{exc!s:.300} <- {example!r:.300}")
        took = time.perf_counter() - started
        self.examples += 1
        self.outcomes[outcome] += 1
        self.largest = max(self.largest, size)
        if took > self.slowest:
            self.slowest, self.slowest_size = took, size


def _clean(*texts: str) -> None:
    for text in texts:
        if CONTROL.intersection(text):
            raise PropertyBroken(f"control character kept in {text!r:.80}")


def check_qstat(data: bytes) -> str:
    jobs = jobs_from_bytes(data)
    for job in jobs:
        _clean(job.id, job.name, job.queue, job.owner, *job.exec_hosts)
        if not job.id or job.cores < 1:
            raise PropertyBroken(f"job {job!r:.100}")
    return f"{'no' if not jobs else 'some'} jobs"


def check_qstat_values(values: tuple[bytes, bytes]) -> str:
    name, variables = (v.replace(b"<", b"\x0e") for v in values)  # as MXML writes them
    jobs = jobs_from_bytes(b"<Data><Job><Job_Id>1.s</Job_Id><Job_Name>" + name + b"</Job_Name><Variable_List>"
                           + variables + b"</Variable_List></Job><Job><Job_Id>2.s</Job_Id></Job></Data>")
    if [j.id for j in jobs] != ["1.s", "2.s"]:
        raise PropertyBroken(f"jobs {jobs!r:.200}")
    return "read"


def check_pbsnodes(data: bytes) -> str:
    nodes = nodes_from_bytes(data)
    for node in nodes:
        _clean(node.name, node.note, *node.jobs, *node.properties, *node.state)
        if not node.name or node.used_slots < 0:
            raise PropertyBroken(f"node {node!r:.100}")
    return f"{'no' if not nodes else 'some'} nodes"


def check_accounting_line(line: str) -> str:
    record = parse_line(line)
    dict(record.fields)
    for value in (record.cores, record.execution_slots, record.walltime_secs, record.exit_status,
                  record.start, record.end):
        if value is not None and not isinstance(value, (int, float)):
            raise PropertyBroken(f"{value!r:.80}")
    return "record"


_TMP = Path(tempfile.mkdtemp(prefix="phorque-fuzz-"))


def check_accounting_file(data: bytes) -> str:
    directory = Path(tempfile.mkdtemp(dir=_TMP))
    path = directory / "20261125"
    path.write_bytes(data)
    parser = AccountingParser(log_limit=0)
    whole = list(parser.parse_file(path))
    tailer = AccountingTailer(directory, from_start=True, parser=AccountingParser(log_limit=0))
    tailed = []
    while batch := tailer.poll(limit=500):
        tailed.extend(batch)
    path.unlink()
    directory.rmdir()
    if tailed != whole[:len(tailed)] or len(whole) - len(tailed) > (0 if data.endswith(b"\n") else 1):
        raise PropertyBroken(f"tailer read {len(tailed)} records, the parser {len(whole)}")
    return "some records" if whole else "no records"


SECRETS = (hs.ACCESS_ID, hs.SECRET_KEY, hs.SECRET_TOKEN)


def _secrets_kept_secret(data: bytes) -> tuple[str, ...]:
    """The credentials that sit only in access_id/secret_key lines of the file.

    A mutation may move a credential's text into another option (``image_id = <it>``); there it
    is an ordinary value and may be shown.
    """
    lines = data.decode("utf-8", "replace").splitlines()
    return tuple(s for s in SECRETS if not any(
        s in line and not line.lstrip().startswith(("access_id", "secret_key")) for line in lines))


def check_config(data: bytes) -> str:
    path = _TMP / "phorque.conf"
    path.write_bytes(data)
    secrets = _secrets_kept_secret(data)
    try:
        config = load_config(path, environ=dict(hs.CONFIG_ENV))
    except ConfigError as exc:
        text = f"{exc} {exc!r}"
        if any(s in text for s in secrets) or str(path) not in text or len(str(exc)) > 2_000 + len(str(path)):
            raise PropertyBroken(f"message {text!r:.200}") from None
        raise
    revealed = [v.reveal() for c in config.clouds for v in (c.access_id, c.secret_key)
                if v is not None and len(v.reveal()) >= 4]
    public = repr(config)  # secrets are not part of it; a value there is also a non-secret option
    if any(v in config.summary() and v not in public for v in revealed):
        raise PropertyBroken("a credential in the summary")
    return "loaded"


# -- random mutation of real samples ----------------------------------------------------------

def _samples(*names: str) -> list[bytes]:
    return [(FIXTURES / name).read_bytes() for name in names]


def mutate(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        choice = rng.random()
        at = rng.randrange(len(out) + 1)
        if choice < 0.25 and out:
            out[min(at, len(out) - 1)] = rng.randrange(256)
        elif choice < 0.45:
            out[at:at] = rng.choice(hs._PIECES)
        elif choice < 0.6:
            del out[at:at + rng.randint(1, 40)]
        elif choice < 0.75:
            end = min(len(out), at + rng.randint(1, 200))
            out[at:at] = out[at:end] * rng.randint(1, 300)
        elif choice < 0.85:
            del out[at:]
        else:
            out[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
    return bytes(out)


@dataclass
class Target:
    name: str
    check: Callable[[Any], str]
    strategy: Any = None  # a hypothesis strategy, or
    samples: list[bytes] | None = None  # real samples to mutate
    decode: bool = False


TARGETS = [
    Target("qstat", check_qstat, strategy=hs.qstat_documents),
    Target("qstat values", check_qstat_values, strategy=st.tuples(hs.hostile_bytes, hs.hostile_bytes)),
    Target("qstat mutated", check_qstat, samples=_samples("torque/qstat_one_line.xml", "torque/qstat_pretty.xml")),
    Target("pbsnodes", check_pbsnodes, strategy=hs.pbsnodes_documents),
    Target("pbsnodes mutated", check_pbsnodes,
           samples=_samples("torque/pbsnodes_one_line.xml", "torque/pbsnodes_pretty.xml")),
    Target("accounting line", check_accounting_line, strategy=hs.accounting_line()),
    Target("accounting mutated", check_accounting_line, samples=(FIXTURES / "accounting" / "reference-lines.log")
           .read_bytes().splitlines(), decode=True),
    Target("accounting file", check_accounting_file, strategy=hs.accounting_files),
    Target("config", check_config, strategy=hs.config_file()),
    Target("config mutated", check_config, samples=[hs.BASE_CONFIG.encode()]),
]


def _reset_peak() -> None:
    try:  # Linux: writing 5 resets the peak resident memory (VmHWM) of this process
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        pass


def fuzz(target: Target, seconds: float, seed: int) -> Tally:
    tally = Tally()
    _reset_peak()
    deadline = time.monotonic() + seconds
    if target.strategy is not None:
        @settings(max_examples=200, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(target.strategy)
        def batch(example: Any) -> None:
            if time.monotonic() < deadline:
                tally.run(target.check, example)

        while time.monotonic() < deadline:
            batch()
    else:
        rng = random.Random(seed)
        assert target.samples
        while time.monotonic() < deadline:
            data = mutate(rng, rng.choice(target.samples))
            tally.run(target.check, data.decode("utf-8", "surrogateescape") if target.decode else data)
    tally.peak_mib = peak_rss_mib()
    return tally


#: The hostile texts of tests/unit/test_accounting.py::test_hostile_text_tokenizes, by a short name.
HOSTILE_TEXTS = {"spaces": lambda n: " " * n, "letters": lambda n: "a" * n,
                 "empty values": lambda n: "a= " * (n // 3), "short words": lambda n: " a" * (n // 2),
                 "Resource_Request": lambda n: "Resource_Request_2.0=" + "-L tasks=1 " * (n // 11)}
ACCOUNTING_PROPERTIES = ("queue", "user", "group", "jobname", "owner", "exec_host", "requestor", "ctime",
                         "qtime", "etime", "start", "end", "exit_status", "cores", "walltime_secs",
                         "used_walltime_secs", "execution_slots", "resources", "resources_used")


def _accounting_line(text: str) -> Callable[[], Any]:
    def run() -> None:
        record = parse_line("11/25/2026 09:00:00;E;1.s;" + text)
        for prop in ACCOUNTING_PROPERTIES:
            getattr(record, prop)
    return run


def _node_jobs(value: bytes) -> Callable[[], Any]:
    data = b"<Data><Node><name>n1</name><np>4</np><jobs>" + value + b"</jobs></Node></Data>"
    return lambda: nodes_from_bytes(data)


def _unended_element(size: int) -> Callable[[], Any]:
    data = b"<Data><Job><Job_Id>1.s</Job_Id><Job_Name>" + b"y" * size

    def run() -> None:
        try:
            list(parse_jobs(io.BytesIO(data)))
        except XMLFormatError:
            pass
    return run


def _blank_lines(size: int) -> Callable[[], Any]:
    def run() -> None:
        with tempfile.TemporaryDirectory() as folder:
            (Path(folder) / "20261125").write_bytes(b"\n" * size + b"11/25/2026 09:00:00;E;1.s;a=b\n")
            AccountingTailer(Path(folder), from_start=True,
                             parser=AccountingParser(log_limit=0)).poll()
    return run


#: Hostile inputs whose cost once grew with the square of their size, each as a short name and a
#: maker of the call for an input of about `size` bytes.
def _text_case(make: Callable[[int], str]) -> Callable[[int], Callable[[], Any]]:
    return lambda n: _accounting_line(make(n)[:n])


def _jobs_case(pattern: bytes) -> Callable[[int], Callable[[], Any]]:
    return lambda n: _node_jobs(pattern * (n // len(pattern)))


LINEAR_CASES: dict[str, Callable[[int], Callable[[], Any]]] = {
    **{f"acct {name}": _text_case(make) for name, make in HOSTILE_TEXTS.items()},
    **{f"node jobs {pattern.decode()!r}": _jobs_case(pattern) for pattern in (b",", b"0", b"0-", b"0,/")},
    "unended element": _unended_element,
    "blank acct lines": _blank_lines,
}


def linear() -> None:
    """Time against input size for each hostile input: each doubling should about double it."""
    sizes = [1 << 17, 1 << 18, 1 << 19, (1 << 20) - 40]
    print(f"{'linear':<19} time to read one hostile input, by size "
          f"({', '.join(f'{s >> 10} KiB' for s in sizes)}); x: ratio to the previous size "
          "(about 2 for linear work, 4 for quadratic)", flush=True)
    for name, make in LINEAR_CASES.items():
        cells, previous = [], None
        for size in sizes:
            call = make(size)
            best = float("inf")
            for _ in range(3):  # the best of three: the figure of the work, not of the machine
                began = time.perf_counter()
                call()
                best = min(best, time.perf_counter() - began)
            ratio = f" x{best / previous:.1f}" if previous else ""
            cells.append(f"{best * 1000:7.1f} ms{ratio}")
            previous = best
        print(f"{'':<19} {name:<21} " + "  ".join(cells), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="total running time (default 10)")
    parser.add_argument("--only", nargs="*", help="targets to run (default: all)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    logging.disable(logging.CRITICAL)  # bad lines are counted here, not logged
    if not args.only or "linear" in args.only:
        linear()
    targets = [t for t in TARGETS if not args.only or t.name in args.only]
    if not targets:
        return 0
    share = args.minutes * 60 / len(targets)
    print(f"{len(targets)} targets, {share:.0f} s each; Python {sys.version.split()[0]}, {os.cpu_count()} CPUs",
          flush=True)
    failures = 0
    for target in targets:
        tally = fuzz(target, share, args.seed)
        outcomes = ", ".join(f"{name} {count:,}" for name, count in tally.outcomes.most_common())
        print(f"{target.name:<19} {tally.examples:>9,} examples  slowest {tally.slowest * 1000:7.1f} ms "
              f"({tally.slowest_size:,} B)  largest {tally.largest:>9,} B  peak {tally.peak_mib:6.1f} MiB\n"
              f"{'':<19} {outcomes}", flush=True)
        for kind, example in tally.unexpected.items():
            failures += 1
            print(f"{'':<19} !! {kind}: {example}", flush=True)
    print("no unexpected outcome" if not failures else f"{failures} kind(s) of unexpected outcome")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
