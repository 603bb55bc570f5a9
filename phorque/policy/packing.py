"""What-if placement of job shapes onto nodes, for the cost-aware policy.

A :class:`BinPool` holds what is free on each node: cores, memory, GPUs, and the node's
properties. Anonymous bins are kept as counts by that free shape, so placing one part costs
O(distinct free shapes) whatever the number of nodes (a cluster of few node kinds has few);
named bins (nodes the policy may want to keep or give back) are a short list tried after the
anonymous ones. A job's ``nodes=`` parts each need a distinct node with enough free cores,
memory and GPUs and every property the part asks for; ``procs`` cores may go anywhere (with
their memory per core). A placement either succeeds and is committed, or leaves the pool
unchanged. New bins can be opened during a placement from a list of openers (one per cloud,
cheapest first, each with its instance shape and how many more it may open): that is how the
policy counts instances to launch. One job may take new bins from several clouds, cheapest first.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from phorque.core.model import Chunk

#: Memory of a node that does not say (a static node whose mom reports no ``physmem``, a cloud
#: without ``instance_memory_mb``): not checked.
UNLIMITED = 1 << 62

#: A free shape: cores, memory (MiB), GPUs, properties.
Key = tuple[int, int, int, frozenset[str]]

_NO_PROPS: frozenset[str] = frozenset()

#: What is left of a bin a placement took: [cores, memory, GPUs, properties], changed in place
#: while the job's parts are placed (a list, not a Key, so that it can be).
_Left = list[Any]


def offer_key(cores: int, mem_mb: int = 0, gpus: int = 0, properties: Iterable[str] = ()) -> Key:
    """The shape a node or an instance offers; ``mem_mb`` 0 means not known (not checked)."""
    props = properties if isinstance(properties, frozenset) else frozenset(properties)
    return (cores, mem_mb if mem_mb > 0 else UNLIMITED, gpus, props or _NO_PROPS)


def holds(key: Key, cores: int, mem: int, gpus: int, props: frozenset[str]) -> bool:
    return key[0] >= cores and key[1] >= mem and key[2] >= gpus and (not props or props <= key[3])


@dataclass
class NamedBin:
    name: str
    free: int
    mem: int = UNLIMITED
    gpus: int = 0
    properties: frozenset[str] = _NO_PROPS
    used: bool = False

    @property
    def key(self) -> Key:
        return (self.free, self.mem, self.gpus, self.properties)


@dataclass(eq=False)
class Opener:
    """Where new bins may come from: ``limit`` more bins of ``size`` cores (and ``mem_mb``
    memory, 0 for not declared, ``gpus`` and ``properties``), named ``name``, at ``price`` each
    (per hour)."""

    name: str
    limit: int
    size: int
    price: float = 0.0
    opened: int = 0
    mem_mb: int = 0
    gpus: int = 0
    properties: tuple[str, ...] | frozenset[str] = ()

    def __post_init__(self) -> None:
        self.key = offer_key(self.size, self.mem_mb, self.gpus, self.properties)

    @property
    def room(self) -> int:
        return max(0, self.limit - self.opened)


@dataclass(frozen=True, slots=True)
class _Unit:
    """One node of a ``nodes=`` part."""

    cores: int
    mem: int
    gpus: int
    props: frozenset[str]


def _units(chunks: tuple[Chunk, ...]) -> list[_Unit]:
    units = [_Unit(c.ppn, c.mem_mb, c.gpus, frozenset(c.properties) if c.properties else _NO_PROPS)
             for c in chunks if not c.spread for _ in range(c.count)]
    # The hardest first: a GPU or big-memory part must not find its only node taken by a part
    # that could have gone anywhere. (Cores anywhere have no unit, one node part one: no sort.)
    if len(units) > 1:
        units.sort(key=lambda u: (u.gpus, len(u.props), u.mem, u.cores), reverse=True)
    return units


@dataclass
class BinPool:
    """Free capacity of nodes (anonymous counts by free shape plus named bins), for what-if
    placement."""

    counts: dict[Key, int] = field(default_factory=dict)
    named: list[NamedBin] = field(default_factory=list)
    total: int = 0
    #: Bumped by every change of the pool. A placement that failed fails again, unchanged,
    #: while the pool and its openers are as they were (a queue of 100,000 jobs of a few
    #: shapes behind a full cluster costs one trial per shape, not one per job).
    version: int = 0
    _failed: dict[tuple[object, ...], int] = field(default_factory=dict, repr=False)

    def add(self, free: int, mem: int = UNLIMITED, gpus: int = 0, properties: Iterable[str] = ()) -> None:
        """A node with ``free`` free cores, ``mem`` MiB of free memory (UNLIMITED when not
        known), ``gpus`` free GPUs and these properties."""
        if free > 0:
            if not isinstance(properties, frozenset):
                properties = frozenset(properties) if properties else _NO_PROPS
            self._put((free, mem, gpus, properties))

    def add_many(self, key: Key, count: int) -> None:
        """``count`` nodes of the free shape ``key``."""
        if key[0] > 0 and count > 0:
            self.counts[key] = self.counts.get(key, 0) + count
            self.total += key[0] * count
            self.version += 1

    def _put(self, key: Key) -> None:
        if key[0] > 0:
            self.counts[key] = self.counts.get(key, 0) + 1
            self.total += key[0]
            self.version += 1

    def add_named(self, name: str, free: int, mem: int = UNLIMITED, gpus: int = 0,
                  properties: Iterable[str] = ()) -> None:
        if free > 0:
            self.named.append(NamedBin(name, free, mem, gpus,
                                       frozenset(properties) if properties else _NO_PROPS))
            self.total += free
            self.version += 1

    def used_names(self) -> set[str]:
        return {b.name for b in self.named if b.used}

    def place(self, chunks: tuple[Chunk, ...], openers: tuple[Opener, ...] = (),
              money: float | None = None) -> dict[str, int] | None:
        """Place one job. Returns the new bins opened per opener name ({} if none were needed), or
        None when the job does not fit, in which case nothing changed (openers included).
        ``money`` bounds what the new bins of this job may cost together (None: no bound)."""
        need = sum(c.count * c.ppn for c in chunks)
        if need > self.total + sum(o.room * o.size for o in openers):
            return None  # fails fast: a saturated pool costs nothing per job
        # The openers are in the key with what each has opened: they change outside the pool.
        tried = (chunks, money, *((id(o), o.opened, o.limit) for o in openers))
        # (Most placements succeed: with nothing failed yet, the request is not hashed at all.)
        if self._failed and self._failed.get(tried) == self.version:
            return None
        units = _units(chunks)
        if len(units) > sum(self.counts.values()) + len(self.named) + sum(o.room for o in openers):
            return None  # more distinct nodes than there are bins
        trial = _Trial(self, openers, money)
        if all(trial.unit(u) for u in units) and all(
                trial.spread(c.count * c.ppn, c.mem_mb, frozenset(c.properties))
                for c in chunks if c.spread):
            trial.commit(need)
            self.version += 1
            return {o.name: n for o, n in trial.opened.items() if n}
        trial.rollback()
        self._failed[tried] = self.version
        return None


class _Trial:
    """One job's placement in progress: what it took, so it can be committed or undone."""

    def __init__(self, pool: BinPool, openers: tuple[Opener, ...], money: float | None):
        self.pool = pool
        self.openers = openers
        self.money = money
        self.cost = 0.0
        # [the key taken from the anonymous counts (None for a new bin), what is left of it]
        self.taken: list[tuple[Key | None, _Left]] = []
        self.named: list[tuple[NamedBin, int, int, int, bool]] = []
        self.opened: dict[Opener, int] = {}

    def _take_key(self, key: Key, left: _Left) -> None:
        counts = self.pool.counts
        counts[key] -= 1
        if not counts[key]:
            del counts[key]
        self.taken.append((key, left))

    def _take_named(self, bin_: NamedBin, cores: int, mem: int, gpus: int) -> None:
        self.named.append((bin_, bin_.free, bin_.mem, bin_.gpus, bin_.used))
        bin_.free -= cores
        bin_.mem -= mem
        bin_.gpus -= gpus
        bin_.used = True

    def _free_named(self) -> list[NamedBin]:
        if not self.named:
            return self.pool.named  # (only read: none of them taken by this job yet)
        mine = {id(t[0]) for t in self.named}
        return [b for b in self.pool.named if id(b) not in mine]

    def _open_on(self, opener: Opener, cores: int, mem: int, gpus: int) -> None:
        self.opened[opener] = self.opened.get(opener, 0) + 1
        self.cost += opener.price
        size, omem, ogpus, props = opener.key
        self.taken.append((None, [size - cores, omem - mem, ogpus - gpus, props]))

    def _with_room(self) -> list[Opener]:
        return [o for o in self.openers if o.room > self.opened.get(o, 0)
                and (self.money is None or self.cost + o.price <= self.money + 1e-9)]

    def unit(self, u: _Unit) -> bool:
        """One node for ``u``, distinct from the job's other nodes: the tightest free one (the
        fewest spare GPUs, then cores, then memory), else a named bin, else a new one."""
        best: Key | None = None
        for key in self.pool.counts:
            if holds(key, u.cores, u.mem, u.gpus, u.props) and (
                    best is None or (key[2], key[0], key[1]) < (best[2], best[0], best[1])):
                best = key
        if best is not None:
            self._take_key(best, [best[0] - u.cores, best[1] - u.mem, best[2] - u.gpus, best[3]])
            return True
        candidates = [b for b in self._free_named() if holds(b.key, u.cores, u.mem, u.gpus, u.props)]
        if candidates:
            self._take_named(min(candidates, key=lambda b: (b.gpus, b.free)), u.cores, u.mem, u.gpus)
            return True
        for opener in self._with_room():
            if holds(opener.key, u.cores, u.mem, u.gpus, u.props):
                self._open_on(opener, u.cores, u.mem, u.gpus)
                return True
        return False

    def spread(self, cores: int, mem_per_core: int, props: frozenset[str]) -> bool:
        """``cores`` single cores anywhere (each with ``mem_per_core``): the job's own nodes
        first, then free bins from the smallest, then named bins, then new ones."""

        def room(free: int, mem: int) -> int:
            return free if mem_per_core <= 0 else min(free, mem // mem_per_core)

        for _key, left in self.taken:
            if cores == 0:
                break
            if props <= left[3]:
                use = min(room(left[0], left[1]), cores)
                left[0] -= use
                left[1] -= use * mem_per_core
                cores -= use
        counts, taken = self.pool.counts, self.taken
        for key in sorted(k for k in counts if props <= k[3]):
            if cores == 0:
                break
            # The bins of one free shape one after the other, each giving all the room it has
            # (the last one what is still wanted): taken in one step, not one look per bin.
            per_bin = room(key[0], key[1])
            if per_bin <= 0:
                continue
            have = counts[key]
            full = min(have, cores // per_bin)
            partial = 1 if full < have and cores - full * per_bin > 0 else 0
            if full:
                left_cores, left_mem = key[0] - per_bin, key[1] - per_bin * mem_per_core
                taken.extend((key, [left_cores, left_mem, key[2], key[3]]) for _ in range(full))
                cores -= full * per_bin
            if partial:
                taken.append((key, [key[0] - cores, key[1] - cores * mem_per_core, key[2], key[3]]))
                cores = 0
            if have - full - partial:
                counts[key] = have - full - partial
            else:
                del counts[key]
            if cores == 0:
                break
        for bin_ in self._free_named():
            if cores == 0:
                break
            use = min(room(bin_.free, bin_.mem), cores) if props <= bin_.properties else 0
            if use > 0:
                self._take_named(bin_, use, use * mem_per_core, 0)
                cores -= use
        while cores > 0:
            fitting = [o for o in self._with_room() if props <= o.key[3] and room(o.size, o.key[1]) > 0]
            if not fitting:
                break
            opener = fitting[0]
            use = min(room(opener.size, opener.key[1]), cores)
            self._open_on(opener, use, use * mem_per_core, 0)
            cores -= use
        return cores == 0

    def commit(self, need: int) -> None:
        pool = self.pool
        counts = pool.counts
        total = pool.total
        for key, left in self.taken:
            if key is not None:
                total -= key[0]
            if left[0] > 0:  # what is left of a bin goes back as a bin of that shape
                rest = (left[0], left[1], left[2], left[3])
                counts[rest] = counts.get(rest, 0) + 1
                total += left[0]
        pool.total = total
        pool.version += 1
        for bin_, free, _mem, _gpus, _used in self.named:
            pool.total -= free - bin_.free
        for opener, n in self.opened.items():
            opener.opened += n

    def rollback(self) -> None:
        for key, _left in self.taken:
            if key is not None:
                self.pool.counts[key] = self.pool.counts.get(key, 0) + 1
        for bin_, free, mem, gpus, used in reversed(self.named):
            bin_.free, bin_.mem, bin_.gpus, bin_.used = free, mem, gpus, used
