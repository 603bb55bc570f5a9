"""Which hosts of a Torque accounting log were the site's static nodes, and which were cloud
instances a former burst added (they must not be replayed as static nodes).

The rule is the host's name, because that is what a cloud decides and a site does not: an EC2
instance joins Torque under its DNS name (Phorque's ``node_dns``: public or private), and those
names have fixed forms:

* ``*.compute.internal`` and ``*.ec2.internal``: EC2 private DNS names
  (``ip-10-0-0-1.ec2.internal``, ``ip-10-0-0-1.eu-west-1.compute.internal``, or with the instance
  id in place of the address);
* ``ec2-A-B-C-D.*amazonaws.com``: EC2 public DNS names
  (``ec2-54-1-2-3.compute-1.amazonaws.com``);
* a host whose first label is ``ip-A-B-C-D`` or an instance id ``i-0123456789abcdef0`` (the
  short host name an instance's pbs_mom may report).

When the time a host was seen is not used: a static node added during the year, retired, or
down for a month of repairs appears in only part of a log just as a cloud node does. Names that
the rule gets wrong either way (a site's own naming for its cloud nodes, a static cluster that
itself lives on EC2) are given with ``--local-nodes NAME,GLOB...``: exactly the hosts matching
one of them are static, every other host is set aside.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from fnmatch import fnmatchcase

_IP = r"\d{1,3}(?:-\d{1,3}){3}"
_INSTANCE_ID = r"i-[0-9a-f]{8}(?:[0-9a-f]{9})?"

#: ``(pattern, why)``: a host name matching ``pattern`` was a cloud instance; ``why`` says so.
CLOUD_NAME_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r".+\.compute\.internal$"), "EC2 private DNS name (*.compute.internal)"),
    (re.compile(r".+\.ec2\.internal$"), "EC2 private DNS name (*.ec2.internal)"),
    (re.compile(rf"ec2-{_IP}\.(?:.+\.)?amazonaws\.com$"), "EC2 public DNS name (ec2-*.amazonaws.com)"),
    (re.compile(rf"ip-{_IP}(?:\.|$)"), "EC2 instance host name (ip-A-B-C-D)"),
    (re.compile(rf"{_INSTANCE_ID}(?:\.|$)"), "EC2 instance id as host name (i-...)"),
)


def cloud_name(host: str) -> str | None:
    """Why ``host`` looks like a cloud instance's name, or None when it does not."""
    name = host.strip().lower().rstrip(".")
    for pattern, why in CLOUD_NAME_RULES:
        if pattern.match(name):
            return why
    return None


def parse_static(text: str) -> tuple[str, ...]:
    """``--local-nodes NAME,GLOB...`` as a tuple of shell-style patterns. Raises ValueError when
    nothing is named."""
    patterns = tuple(p for p in (w.strip() for w in text.split(",")) if p)
    if not patterns:
        raise ValueError("--local-nodes: give a number of nodes, or host names or patterns")
    return patterns


def split_hosts(hosts: Iterable[str], static: tuple[str, ...] | None = None) -> dict[str, str]:
    """The hosts to set aside as former cloud nodes, each with why. With ``static`` patterns
    (``--local-nodes``), every host matching none of them; else the hosts whose name is a cloud
    instance's (:func:`cloud_name`)."""
    out: dict[str, str] = {}
    for host in hosts:
        if static is not None:
            if not any(fnmatchcase(host.lower(), p.lower()) for p in static):
                out[host] = "not named by --local-nodes"
        else:
            why = cloud_name(host)
            if why is not None:
                out[host] = why
    return out


def some(names: Iterable[str], most: int = 8) -> str:
    """``a, b, c and 4 more``: the first ``most`` of ``names`` in order."""
    names = list(names)
    return ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")


def describe_set_aside(set_aside: Mapping[str, str], most: int = 8) -> list[str]:
    """Lines for standard error: the hosts set aside, grouped by why, a few names each."""
    by_why: dict[str, list[str]] = {}
    for host, why in set_aside.items():
        by_why.setdefault(why, []).append(host)
    return [f"{len(names)} host{'s' if len(names) != 1 else ''} ({why}): {some(sorted(names), most)}"
            for why, names in by_why.items()]
