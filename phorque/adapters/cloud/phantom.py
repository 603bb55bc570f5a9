"""The Phantom dialect (Nimbus Phantom's Auto Scaling subset, and Nimbus EC2).

Differences from the standard dialect, each handled here:

* SigV2 signatures on both endpoints (:mod:`phorque.adapters.cloud.clients` sets them for this dialect).
* Launch configurations are named ``<name>@<site>``; the site is the cloud Phantom launches on.
* The group carries five-field tags: ``PHANTOM_DEFINITION=error_overflow_n_preserving``,
  ``clouds=<site>:-1`` and ``minimum_vms`` (never the obsolete ``n_preserve``, which Phantom
  rejects).
* ``SetDesiredCapacity(n)`` sets MinSize and MaxSize to ``n`` too, and on scale-in Phantom kills
  VMs of its own choosing: so capacity is only ever lowered down to the live members, and
  instances are removed one by one with terminate.
* Members are EPU states (``600-RUNNING``), a request has an empty instance id until its VM
  exists, dead VMs stay listed, and DNS names may be ``[unknown]``.
* Replies boto3 cannot parse are repaired (:mod:`phorque.adapters.cloud.phantom_repair`).
* A terminate is sent once (no retries) and confirmed by reading the group.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from phorque.adapters.cloud.aws import read_user_data
from phorque.adapters.cloud.phantom_repair import repair_phantom_reply
from phorque.adapters.cloud.provider import CloudProvider
from phorque.adapters.cloud.states import phantom_lifecycle_state
from phorque.core.errors import CloudError
from phorque.core.model import InstanceState

log = logging.getLogger("phorque.cloud.phantom")

PHANTOM_DEFINITION = "error_overflow_n_preserving"


def split_launch_name(name: str) -> tuple[str, str]:
    """``("hotellc", "hotel")`` for ``hotellc@hotel``."""
    base, _, site = name.rpartition("@")
    if not base or not site:
        raise ValueError(f"{name!r} is not of the form <name>@<site>")
    return base, site


def phantom_tags(group: str, site: str, minimum_vms: int = 0) -> list[dict[str, Any]]:
    """The group's tags, each with all five fields (Phantom rejects a tag missing one)."""
    def tag(key: str, value: str) -> dict[str, Any]:
        """One tag with all five fields."""
        return {"Key": key, "Value": value, "PropagateAtLaunch": False,
                "ResourceId": group, "ResourceType": "auto-scaling-group"}
    return [tag("PHANTOM_DEFINITION", PHANTOM_DEFINITION), tag("clouds", f"{site}:-1"),
            tag("minimum_vms", str(minimum_vms))]


class PhantomProvider(CloudProvider):
    """A group on a Phantom-compatible service, with instances on a Nimbus EC2 endpoint."""

    dialect = "phantom"
    terminate_attempts = 1
    missing_in_ec2_is_gone = True

    def _on_before_parse(self, service: str) -> Any:
        return repair_phantom_reply if service == "autoscaling" else None

    # ---- set-up -------------------------------------------------------------------------

    def ensure_setup(self) -> None:
        """``name@site`` launch configuration, then the group with min = max = 0 and its tags."""
        s = self.settings
        if self._find_group() is not None:
            return
        name = s.launch_name
        _, site = split_launch_name(name)
        if not self._configuration_exists(name):
            params: dict[str, Any] = {"LaunchConfigurationName": name, "ImageId": s.image_id,
                                      "InstanceType": s.instance_type}
            user_data = read_user_data(s.name, s.user_data_file)
            if user_data:
                params["UserData"] = user_data
            if s.key_name:
                params["KeyName"] = s.key_name
            if s.security_groups:
                params["SecurityGroups"] = list(s.security_groups)
            try:
                self._call("autoscaling", "CreateLaunchConfiguration", **params)
                log.info("cloud %s: created launch configuration %s", s.name, name)
            except CloudError as exc:
                if exc.code != "AlreadyExists":
                    raise
        try:
            # AvailabilityZones is required by Phantom, though it ignores the value.
            self._call("autoscaling", "CreateAutoScalingGroup",
                       AutoScalingGroupName=s.autoscale_group_name, LaunchConfigurationName=name,
                       MinSize=0, MaxSize=0, AvailabilityZones=[s.availability_zone],
                       Tags=phantom_tags(s.autoscale_group_name, site))
        except CloudError as exc:
            if exc.code != "AlreadyExists":
                raise
            return
        log.info("cloud %s: created group %s on site %s", s.name, s.autoscale_group_name, site)

    def _configuration_exists(self, name: str) -> bool:
        reply = self._call("autoscaling", "DescribeLaunchConfigurations",
                           LaunchConfigurationNames=[name])
        return any(lc.get("LaunchConfigurationName") == name
                   for lc in reply.get("LaunchConfigurations") or [])

    # ---- capacity -----------------------------------------------------------------------

    def set_desired(self, desired: int) -> None:
        """As the base class, but never below the live members: Phantom would kill VMs at random."""
        self._check_desired(desired)
        group = self._group()
        live = sum(1 for m in group.get("Instances") or [] if self._member_state(m).is_valid)
        if desired < live:
            raise ValueError(f"cloud {self.settings.name}: desired capacity {desired} is below the "
                             f"{live} live member(s); Phantom would kill VMs of its choosing "
                             "(terminate them one by one instead)")
        super().set_desired(desired)

    def _set_capacity(self, desired: int) -> None:
        # Phantom sets MinSize = MaxSize = desired (minimum_vms); HonorCooldown is ignored.
        self._call("autoscaling", "SetDesiredCapacity",
                   AutoScalingGroupName=self.settings.autoscale_group_name, DesiredCapacity=desired)

    # ---- reading ------------------------------------------------------------------------

    def _member_state(self, member: Mapping[str, Any]) -> InstanceState:
        return phantom_lifecycle_state(str(member.get("LifecycleState") or ""),
                                       str(member.get("InstanceId") or ""),
                                       str(member.get("HealthStatus") or "Healthy"))

    def _ec2_instances(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        if not ids:
            return {}
        # Nimbus has no filters and may reject unknown ids: list everything, keep ours.
        wanted = set(ids)
        reply = self._call("ec2", "DescribeInstances")
        return {inst["InstanceId"]: inst
                for reservation in reply.get("Reservations") or []
                for inst in reservation.get("Instances") or []
                if inst.get("InstanceId") in wanted}
