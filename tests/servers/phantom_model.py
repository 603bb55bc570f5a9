"""The state behind the Phantom double: launch configurations, domains (groups) and their VMs.

It follows Phantom's engine as read from its code: a group keeps ``minimum_vms`` VMs alive
(``n_preserving``), ``SetDesiredCapacity`` sets minimum and maximum, a terminate with
decrement lowers both by one *every time it is called* (so a blindly repeated terminate
lowers capacity twice and the engine then kills a VM of its choosing), dead VMs stay listed.
VMs move through EPU states as time passes: ``200-REQUESTED`` (no id) → ``400-PENDING`` (an id,
``[unknown]`` DNS) → ``600-RUNNING``; ``700-TERMINATING`` → ``800-TERMINATED``.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

REQUESTED, ERROR_RETRYING, PENDING, RUNNING = "200-REQUESTED", "300-ERROR_RETRYING", "400-PENDING", "600-RUNNING"
TERMINATING, TERMINATED = "700-TERMINATING", "800-TERMINATED"
#: Tag keys Phantom accepts (definitions.py's whitelist); anything else is refused.
KNOWN_TAGS = {"PHANTOM_DEFINITION", "clouds", "minimum_vms", "maximum_vms", "cooldown_period",
              "metric", "sample_function", "sensor_type", "scale_up_threshold",
              "scale_up_n_vms", "scale_down_threshold", "scale_down_n_vms", "sensor_data",
              "sensor_cooldown"}
DEFINITIONS = {"error_overflow_n_preserving", "sensor_engine"}


class PhantomFault(Exception):
    """A request Phantom refuses: the code and HTTP status it answers with."""

    def __init__(self, code: str, detail: str = "", status: int = 400):
        super().__init__(detail or code)
        self.code, self.detail, self.status = code, detail, status


@dataclass
class VM:
    """One EPU instance record (a request, then a VM)."""

    serial: int
    owner: str
    group: str
    site: str
    lc: str
    requested_at: float
    state: str = REQUESTED
    instance_id: str = ""
    changed_at: float = 0.0
    launch_time: float | None = None
    image_id: str = ""
    instance_type: str = ""
    ran: bool = False

    @property
    def code(self) -> int:
        """The EPU state number (600 for ``600-RUNNING``)."""
        return int(self.state[:3])

    @property
    def alive(self) -> bool:
        """Counts toward ``minimum_vms`` (requested up to running, not failed)."""
        return self.code <= 600 and self.code != 650


@dataclass
class Group:
    """One domain: its launch configuration, sizes, tags and ranked sites."""

    name: str
    owner: str
    lc: str
    minimum: int
    maximum: int
    zones: list[str]
    tags: dict[str, str]
    created: float
    sites: list[str] = field(default_factory=list)


@dataclass
class Timing:
    """Seconds a VM spends in each phase; ``requests_fail`` keeps requests retrying forever."""

    requested_secs: float = 0.5
    pending_secs: float = 1.0
    terminating_secs: float = 0.5
    requests_fail: bool = False
    public_dns: bool = True


class PhantomModel:
    """All state, behind one lock; time moves on lazily at each call (``clock``)."""

    def __init__(self, timing: Timing | None = None, clock: Callable[[], float] = time.time,
                 seed: int | None = None):
        self.timing = timing or Timing()
        self.clock = clock
        self.lock = threading.RLock()
        self.launch_configs: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
        self.groups: dict[tuple[str, str], Group] = {}
        self.vms: list[VM] = []
        self._serial = itertools.count(1)
        self._random = random.Random(seed)
        self.stuck: Callable[[str], bool] = lambda _id: False

    def reset(self) -> None:
        """Forget every launch configuration, group and VM."""
        with self.lock:
            self.launch_configs.clear()
            self.groups.clear()
            self.vms.clear()

    # ---- launch configurations ---------------------------------------------------------

    @staticmethod
    def split_name(name: str) -> tuple[str, str]:
        """``(name, site)`` of ``name@site``, as Phantom's _breakup_name."""
        base, sep, site = name.partition("@")
        if not sep or not base or not site:
            raise PhantomFault("InvalidParameterValue", f"The name {name} is not in the proper "
                               "format.  It must be <dt name>@<site name>")
        return base, site

    def create_launch_config(self, owner: str, name: str, spec: dict[str, Any]) -> None:
        """Adds one site to a launch configuration; a site already present is refused."""
        base, site = self.split_name(name)
        with self.lock:
            sites = self.launch_configs.setdefault((owner, base), {})
            if site in sites:
                raise PhantomFault("InvalidParameterValue", "Name already in use")
            sites[site] = dict(spec, created=self.clock())

    def launch_configs_of(self, owner: str, names: list[str]) -> list[tuple[str, dict[str, Any]]]:
        """``(name@site, spec)`` pairs, filtered by full names when given."""
        with self.lock:
            out = []
            for (who, base), sites in sorted(self.launch_configs.items()):
                for site, spec in sorted(sites.items()):
                    full = f"{base}@{site}"
                    if who == owner and (not names or full in names):
                        out.append((full, spec))
            return out

    def delete_launch_config(self, owner: str, name: str) -> None:
        """Removes one site; the configuration goes with its last site."""
        base, site = self.split_name(name)
        with self.lock:
            sites = self.launch_configs.get((owner, base))
            if not sites or site not in sites:
                raise PhantomFault("InvalidParameterValue", f"Name {name} not found")
            del sites[site]
            if not sites:
                del self.launch_configs[(owner, base)]

    # ---- groups --------------------------------------------------------------------------

    @staticmethod
    def check_tags(tags: list[dict[str, str]]) -> dict[str, str]:
        """The tags as a dict; refuses a missing field, an unknown key or ``n_preserve``."""
        out: dict[str, str] = {}
        for tag in tags:
            missing = [f for f in ("Key", "Value", "PropagateAtLaunch", "ResourceId", "ResourceType")
                       if f not in tag]
            if missing:
                raise PhantomFault("MissingParameter", f"tag field(s) {', '.join(missing)} missing")
            key = tag["Key"]
            if key == "n_preserve":
                raise PhantomFault("InvalidParameterValue",
                                   "n_preserve is no longer supported; use minimum_vms")
            if key not in KNOWN_TAGS:
                raise PhantomFault("InvalidParameterValue", f"unknown tag {key}")
            out[key] = tag["Value"]
        if out.get("PHANTOM_DEFINITION", "error_overflow_n_preserving") not in DEFINITIONS:
            raise PhantomFault("InvalidParameterValue", f"unknown definition {out['PHANTOM_DEFINITION']}")
        return out

    @staticmethod
    def parse_clouds(text: str) -> list[str]:
        """The sites of a ``clouds`` tag (``site:max,...``), in rank order."""
        sites = []
        for part in text.split(","):
            site, _, limit = part.strip().partition(":")
            try:
                int(limit)
            except ValueError:
                raise PhantomFault("InvalidParameterValue", f"clouds: {part!r} is not site:max") from None
            sites.append(site)
        return sites

    def create_group(self, owner: str, name: str, lc_name: str, minimum: int, maximum: int,
                     zones: list[str], tags: list[dict[str, str]]) -> None:
        """A new domain keeping ``MinSize`` VMs (MinSize/MaxSize overwrite the tags)."""
        base = lc_name.split("@", 1)[0]
        checked = self.check_tags(tags)
        with self.lock:
            if (owner, name) in self.groups:
                raise PhantomFault("InvalidParameterValue", "auto scale name already exists")
            lc_sites = self.launch_configs.get((owner, base))
            if not lc_sites:
                raise PhantomFault("InvalidParameterValue", f"launch configuration {lc_name} not found")
            sites = self.parse_clouds(checked["clouds"]) if "clouds" in checked else sorted(lc_sites)
            for site in sites:
                if site not in lc_sites:
                    raise PhantomFault("InvalidParameterValue", f"no launch configuration {base}@{site}")
            # MinSize and MaxSize overwrite the minimum_vms/maximum_vms tags.
            checked["minimum_vms"], checked["maximum_vms"] = str(minimum), str(maximum)
            self.groups[(owner, name)] = Group(name, owner, base, minimum, maximum, zones, checked,
                                               self.clock(), sites)
            self._reconcile(self.groups[(owner, name)])

    def group(self, owner: str, name: str) -> Group:
        """The caller's group ``name``, or a 400."""
        found = self.groups.get((owner, name))
        if found is None:
            raise PhantomFault("InvalidParameterValue", f"auto scale group {name} not found")
        return found

    def update_tags(self, owner: str, tags: list[dict[str, str]]) -> None:
        """CreateOrUpdateTags: new sites or ``minimum_vms`` take effect at once."""
        checked = self.check_tags(tags)
        with self.lock:
            for tag in tags:
                group = self.group(owner, tag["ResourceId"])
                group.tags.update({k: v for k, v in checked.items() if k == tag["Key"]})
                if tag["Key"] == "clouds":
                    group.sites = self.parse_clouds(tag["Value"])
                if tag["Key"] == "minimum_vms":
                    group.minimum = int(tag["Value"])
                self._reconcile(group)

    def set_desired(self, owner: str, name: str, desired: int) -> None:
        """min = max = desired; the engine kills VMs of its choosing when it drops."""
        if desired < 0:
            raise PhantomFault("InvalidParameterValue", "DesiredCapacity must be >= 0")
        with self.lock:
            self.advance()
            group = self.group(owner, name)
            group.minimum = group.maximum = desired  # Phantom: min = max = desired
            self._reconcile(group)

    def delete_group(self, owner: str, name: str) -> None:
        """Removes the group and terminates its VMs."""
        with self.lock:
            self.group(owner, name)
            del self.groups[(owner, name)]
            for vm in self.vms:
                if vm.owner == owner and vm.group == name and vm.alive:
                    self._set(vm, TERMINATING)

    def terminate(self, owner: str, instance_id: str, decrement: bool) -> None:
        """Terminate one VM; with ``decrement``, lower min and max by one (on every call)."""
        with self.lock:
            self.advance()
            for vm in self.vms:
                if vm.instance_id == instance_id and vm.owner == owner and (owner, vm.group) in self.groups:
                    break
            else:
                raise PhantomFault("InvalidParameterValue",
                                   "There is no domain associated with that instnace id")
            group = self.groups[(owner, vm.group)]
            if vm.alive:
                self._set(vm, TERMINATING)
            if decrement:
                # As Phantom: lowered on every call, even for a VM already terminating.
                group.minimum = group.maximum = max(0, group.minimum - 1)
            self._reconcile(group)

    def members(self, owner: str, name: str) -> list[VM]:
        """Every VM record of a group, dead ones included."""
        with self.lock:
            self.advance()
            return [vm for vm in self.vms if vm.owner == owner and vm.group == name
                    and (owner, name) in self.groups]

    def vms_of(self, owner: str) -> list[VM]:
        """Every VM record of the caller, whichever group."""
        with self.lock:
            self.advance()
            return [vm for vm in self.vms if vm.owner == owner]

    # ---- the engine ----------------------------------------------------------------------

    def _set(self, vm: VM, state: str) -> None:
        vm.state, vm.changed_at = state, self.clock()

    def _reconcile(self, group: Group) -> None:
        alive = [vm for vm in self.vms if vm.owner == group.owner and vm.group == group.name and vm.alive]
        missing = group.minimum - len(alive)
        for _ in range(max(0, missing)):
            site = group.sites[0] if group.sites else "default"
            spec = self.launch_configs.get((group.owner, group.lc), {}).get(site, {})
            now = self.clock()
            self.vms.append(VM(next(self._serial), group.owner, group.name, site, group.lc, now, changed_at=now,
                               image_id=spec.get("ImageId", ""), instance_type=spec.get("InstanceType", "")))
        if missing < 0:
            # The engine picks its victims itself: Phorque must never lower capacity this way.
            for vm in self._random.sample(alive, -missing):
                self._set(vm, TERMINATING)

    def advance(self) -> None:
        """Move every VM along its lifecycle up to now (each step at the time it was due)."""
        t, now = self.timing, self.clock()
        with self.lock:
            for vm in self.vms:
                due = vm.changed_at + t.requested_secs
                if vm.state == REQUESTED and now >= due:
                    if t.requests_fail:
                        vm.state, vm.changed_at = ERROR_RETRYING, due
                        continue
                    vm.instance_id = f"i-{vm.serial:08x}"
                    vm.state, vm.changed_at, vm.launch_time = PENDING, due, due
                due = vm.changed_at + t.pending_secs
                if vm.state == PENDING and now >= due and not self.stuck(vm.instance_id):
                    vm.state, vm.changed_at, vm.ran = RUNNING, due, True
                due = vm.changed_at + t.terminating_secs
                if vm.state == TERMINATING and now >= due:
                    vm.state, vm.changed_at = TERMINATED, due

    def dns(self, vm: VM) -> tuple[str, str]:
        """(public, private) DNS names: ``[unknown]`` until the VM runs, as Nimbus reports."""
        if not vm.ran:
            return "[unknown]", "[unknown]"
        private = f"vm-{vm.serial}.{vm.site}.internal.test"
        public = f"vm-{vm.serial}.{vm.site}.phantom.test" if self.timing.public_dns else "[unknown]"
        return public, private
