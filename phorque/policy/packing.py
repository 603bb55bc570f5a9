"""What-if placement of job shapes onto nodes, for the cost-aware policy.

A :class:`BinPool` holds free cores per node. Anonymous bins are kept as counts by free-core
number, so placing one ``ppn`` part costs O(largest node) whatever the number of nodes; named
bins (nodes the policy may want to keep or give back) are a short list tried after the anonymous
ones. A job's ``nodes=`` parts each need a distinct node with enough free cores; ``procs`` cores
may go anywhere. A placement either succeeds and is committed, or leaves the pool unchanged.
New bins can be opened during a placement from a list of openers (one per cloud, cheapest
first, each with its instance size and how many more it may open): that is how the policy counts
instances to launch. One job may take new bins from several clouds, cheapest first.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from phorque.model import Chunk


@dataclass
class NamedBin:
    name: str
    free: int
    used: bool = False


@dataclass(eq=False)
class Opener:
    """Where new bins may come from: ``limit`` more bins of ``size`` cores, named ``name``, at
    ``price`` each (per hour)."""

    name: str
    limit: int
    size: int
    price: float = 0.0
    opened: int = 0

    @property
    def room(self) -> int:
        return max(0, self.limit - self.opened)


@dataclass
class BinPool:
    """Free cores of nodes (anonymous counts plus named bins), for what-if placement."""

    counts: list[int] = field(default_factory=lambda: [0])
    named: list[NamedBin] = field(default_factory=list)
    total: int = 0

    def _grow(self, size: int) -> None:
        if size >= len(self.counts):
            self.counts.extend([0] * (size + 1 - len(self.counts)))

    def add(self, free: int) -> None:
        if free > 0:
            self._grow(free)
            self.counts[free] += 1
            self.total += free

    def add_named(self, name: str, free: int) -> None:
        if free > 0:
            self.named.append(NamedBin(name, free))
            self.total += free

    def used_names(self) -> set[str]:
        return {b.name for b in self.named if b.used}

    def place(self, chunks: tuple[Chunk, ...], openers: tuple[Opener, ...] = (),
              money: float | None = None) -> dict[str, int] | None:
        """Place one job. Returns the new bins opened per opener name ({} if none were needed), or
        None when the job does not fit, in which case nothing changed (openers included).
        ``money`` bounds what the new bins of this job may cost together (None: no bound)."""
        spread = sum(c.count * c.ppn for c in chunks if c.spread)
        need = spread + sum(c.count * c.ppn for c in chunks if not c.spread)
        if need > self.total + sum(o.room * o.size for o in openers):
            return None  # fails fast: a saturated pool costs nothing per job
        if sum(c.count for c in chunks if not c.spread) > (sum(self.counts) + len(self.named)
                                                           + sum(o.room for o in openers)):
            return None  # more distinct nodes than there are bins
        units = sorted((c.ppn for c in chunks if not c.spread for _ in range(c.count)), reverse=True)
        trial = _Trial(self, openers, money)
        if all(trial.unit(ppn) for ppn in units) and trial.spread(spread):
            trial.commit(need)
            return {o.name: n for o, n in trial.opened.items() if n}
        trial.rollback()
        return None


class _Trial:
    """One job's placement in progress: what it took, so it can be committed or undone."""

    def __init__(self, pool: BinPool, openers: tuple[Opener, ...], money: float | None):
        self.pool = pool
        self.openers = openers
        self.money = money
        self.cost = 0.0
        self.taken: list[list[int]] = []   # [original size (0 for a new bin), cores left]
        self.named: list[tuple[NamedBin, int, bool]] = []
        self.opened: dict[Opener, int] = {}

    def _take_size(self, size: int, use: int) -> None:
        self.pool.counts[size] -= 1
        self.taken.append([size, size - use])

    def _take_named(self, bin_: NamedBin, use: int) -> None:
        self.named.append((bin_, bin_.free, bin_.used))
        bin_.free -= use
        bin_.used = True

    def _free_named(self, at_least: int) -> list[NamedBin]:
        mine = {id(t[0]) for t in self.named}
        return [b for b in self.pool.named if b.free >= at_least and id(b) not in mine]

    def _open(self, use: int) -> bool:
        """A new bin from the first opener with room and a size that holds ``use`` cores."""
        for opener in self._with_room():
            if use <= opener.size:
                self._open_on(opener, use)
                return True
        return False

    def _open_on(self, opener: Opener, use: int) -> None:
        self.opened[opener] = self.opened.get(opener, 0) + 1
        self.cost += opener.price
        self.taken.append([0, opener.size - use])

    def _with_room(self) -> list[Opener]:
        return [o for o in self.openers if o.room > self.opened.get(o, 0)
                and (self.money is None or self.cost + o.price <= self.money + 1e-9)]

    def unit(self, ppn: int) -> bool:
        """One node with ``ppn`` free cores, distinct from the job's other nodes."""
        counts = self.pool.counts
        for size in range(ppn, len(counts)):
            if counts[size] > 0:
                self._take_size(size, ppn)
                return True
        candidates = self._free_named(ppn)
        if candidates:
            self._take_named(min(candidates, key=lambda b: b.free), ppn)
            return True
        return self._open(ppn)

    def spread(self, cores: int) -> bool:
        """``cores`` single cores anywhere: the job's own nodes first, then free bins, then new."""
        for entry in self.taken:
            use = min(entry[1], cores)
            entry[1] -= use
            cores -= use
        counts = self.pool.counts
        for size in range(1, len(counts)):
            while cores > 0 and counts[size] > 0:
                use = min(size, cores)
                self._take_size(size, use)
                cores -= use
            if cores == 0:
                break
        for bin_ in self._free_named(1):
            if cores == 0:
                break
            use = min(bin_.free, cores)
            self._take_named(bin_, use)
            cores -= use
        while cores > 0 and (room := self._with_room()):
            use = min(room[0].size, cores)
            self._open_on(room[0], use)
            cores -= use
        return cores == 0

    def commit(self, need: int) -> None:
        pool = self.pool
        for _size, left in self.taken:
            if left > 0:
                pool._grow(left)
                pool.counts[left] += 1
        pool.total += sum(o.size * n for o, n in self.opened.items()) - need
        for opener, n in self.opened.items():
            opener.opened += n

    def rollback(self) -> None:
        for size, _left in self.taken:
            if size:
                self.pool.counts[size] += 1
        for bin_, free, used in reversed(self.named):
            bin_.free, bin_.used = free, used
