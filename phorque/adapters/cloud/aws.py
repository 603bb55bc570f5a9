"""The standard dialect: AWS EC2 Auto Scaling and compatible endpoints (moto, LocalStack).

SigV4, AWS lifecycle states, and a launch configuration, or a launch template where the account
cannot create launch configurations (accounts created since October 2024). The group is
created with ``NewInstancesProtectedFromScaleIn`` so that lowering the desired capacity can never
make the service pick a running instance to kill: only Phorque's explicit terminate removes one.

With ``instance_types`` the group launches from a launch template through a mixed-instances
policy whose overrides list the types in the configured order, all on demand and ``prioritized``:
the service tries the first type and falls back to the next when one has no capacity. When every
type fails, the group's latest scaling activity says so; :meth:`AwsProvider._launch_failure`
reads it, so that Phorque backs the cloud off and sends the work elsewhere at once instead of
waiting out the boot timeout.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Mapping
from typing import Any

from phorque.adapters.cloud.provider import CloudProvider, chunks
from phorque.adapters.cloud.states import aws_lifecycle_state, epoch
from phorque.core.errors import CloudError
from phorque.core.model import InstanceState, LaunchFailure

log = logging.getLogger("phorque.cloud.aws")

#: Tag put on the group so an administrator can tell which Phorque cloud owns it.
OWNER_TAG = "phorque:cloud"

#: Error codes of a service that will not create launch configurations.
_NO_LAUNCH_CONFIGURATIONS = frozenset({"UnsupportedOperation", "OperationNotPermitted",
                                       "InvalidAction", "NotImplemented"})
_NO_LC_PHRASES = ("not available in your account", "use launch templates", "not supported",
                  "no longer supported")


#: Words of a failed launch that mean "no capacity" (EC2's code, and the Auto Scaling activity's
#: own phrasing: "We currently do not have sufficient c6i.4xlarge capacity in the Availability
#: Zone you requested", "Could not launch On-Demand Instances. InsufficientInstanceCapacity - ...").
_NO_CAPACITY_PHRASES = ("insufficientinstancecapacity", "insufficientcapacity", "insufficient capacity",
                        "do not have sufficient", "unfulfillablecapacity", "no spot capacity")
#: How many of a group's latest scaling activities are read to find its latest launch.
ACTIVITIES_READ = 20


#: EC2 state reasons of an instance the spot market took back (terminated, or stopped).
SPOT_REASONS = ("Server.SpotInstanceTermination", "Server.SpotInstanceShutdown")
#: How a spot group picks its pools: the lowest price among the pools least likely to be
#: interrupted (AWS's recommended strategy).
SPOT_STRATEGY = "price-capacity-optimized"


def mixed_instances_policy(template: str, types: tuple[str, ...], spot: bool = False,
                           max_price: float | None = None) -> dict[str, Any]:
    """The MixedInstancesPolicy of a group launching ``types`` from ``template``, in this order.

    On demand: ``prioritized``, so that the order of the overrides is the order the service
    tries them in. Spot: every instance spot (0 % on demand above a base of 0), the pools chosen
    ``price-capacity-optimized``, at most ``max_price`` per hour when given (AWS's default: the
    on-demand price).
    """
    distribution: dict[str, Any] = {
        "OnDemandAllocationStrategy": "prioritized",
        "OnDemandBaseCapacity": 0,
        "OnDemandPercentageAboveBaseCapacity": 0 if spot else 100,
    }
    if spot:
        distribution["SpotAllocationStrategy"] = SPOT_STRATEGY
        if max_price is not None:
            distribution["SpotMaxPrice"] = f"{max_price:g}"
    return {
        "LaunchTemplate": {
            "LaunchTemplateSpecification": {"LaunchTemplateName": template, "Version": "$Latest"},
            "Overrides": [{"InstanceType": t} for t in types],
        },
        "InstancesDistribution": distribution,
    }


def interruption(ec2: Mapping[str, Any] | None) -> str:
    """The spot market's word that it took an instance back (``Code: Message`` of EC2's state
    reason), or empty."""
    reason = (ec2 or {}).get("StateReason") or {}
    code = str(reason.get("Code") or "")
    if not code.startswith(SPOT_REASONS):
        return ""
    message = str(reason.get("Message") or "").strip()
    return message if message.startswith(code) else f"{code}: {message}".rstrip(": ")


def policy_types(group: Mapping[str, Any]) -> tuple[str, ...]:
    """The instance types of a group's mixed-instances policy, in order (empty: it has none)."""
    policy = group.get("MixedInstancesPolicy") or {}
    overrides = (policy.get("LaunchTemplate") or {}).get("Overrides") or []
    return tuple(str(o.get("InstanceType") or "") for o in overrides)


def _policy_matches(group: Mapping[str, Any], template: str, types: tuple[str, ...],
                    spot: bool = False, max_price: float | None = None) -> bool:
    """Does the group launch exactly ``types``, in this order, from ``template``, prioritized,
    on the market (and at the most price) configured?"""
    policy = group.get("MixedInstancesPolicy") or {}
    spec = (policy.get("LaunchTemplate") or {}).get("LaunchTemplateSpecification") or {}
    dist = policy.get("InstancesDistribution") or {}
    strategy = dist.get("OnDemandAllocationStrategy")
    if not (policy_types(group) == types and spec.get("LaunchTemplateName") == template
            and strategy in (None, "prioritized")):
        return False
    on_demand = dist.get("OnDemandPercentageAboveBaseCapacity")
    on_demand = 100 if on_demand is None else int(on_demand)
    if not spot:
        return on_demand == 100
    price = str(dist.get("SpotMaxPrice") or "")
    wanted = "" if max_price is None else f"{max_price:g}"
    return (on_demand == 0 and int(dist.get("OnDemandBaseCapacity") or 0) == 0
            and dist.get("SpotAllocationStrategy") == SPOT_STRATEGY
            and (price == wanted or (bool(price and wanted) and float(price) == float(wanted))))


def launch_failure(activities: list[Mapping[str, Any]]) -> LaunchFailure | None:
    """The failure of the latest launch among a group's scaling activities, or None when the
    latest launch worked or is still under way (or the group has launched nothing)."""
    launches = [a for a in activities
                if str(a.get("Description") or "").lower().startswith("launching")]
    if not launches:
        return None
    # The service lists the newest first; sorted anyway, so that no reply order is relied on.
    latest = max(launches, key=lambda a: _started(a.get("StartTime")))
    if str(latest.get("StatusCode") or "") != "Failed":
        return None
    message = str(latest.get("StatusMessage") or latest.get("Description") or "launch failed").strip()
    lowered = message.lower()
    code = ("InsufficientInstanceCapacity" if any(p in lowered for p in _NO_CAPACITY_PHRASES)
            else "LaunchFailed")
    return LaunchFailure(id=str(latest.get("ActivityId") or message), code=code, message=message)


def _started(value: Any) -> float:
    stamp = epoch(value)
    return stamp if stamp is not None else float("-inf")


def refuses_launch_configurations(exc: CloudError) -> bool:
    """Did CreateLaunchConfiguration fail because the service no longer offers it?"""
    if exc.code in _NO_LAUNCH_CONFIGURATIONS:
        return True
    text = str(exc).lower()
    return any(phrase in text for phrase in _NO_LC_PHRASES)


def read_user_data(cloud: str, path: str) -> bytes:
    """The bytes of ``user_data_file`` (empty when none is configured)."""
    if not path:
        return b""
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise CloudError(cloud, "user data", f"{path}: {exc.strerror or exc}", code="UserData") from exc


class AwsProvider(CloudProvider):
    """A group on AWS EC2 Auto Scaling or any endpoint speaking the standard API."""

    dialect = "aws"
    #: Has the failure to read scaling activities been logged (it is said once)?
    _activities_warned = False
    #: The id of the last launch failure logged.
    _failure_logged = ""

    # ---- set-up -------------------------------------------------------------------------

    def ensure_setup(self) -> None:
        """Group (protected from scale-in) and its launch configuration or template."""
        s = self.settings
        group = self._find_group()
        if group is not None:
            self._reconcile(group)
            return
        launch = self._ensure_launch()
        if s.spot:
            # A rebalance recommendation makes the group launch a replacement before the
            # interruption comes, where the market allows.
            launch["CapacityRebalance"] = True
        try:
            self._call("autoscaling", "CreateAutoScalingGroup",
                       AutoScalingGroupName=s.autoscale_group_name, MinSize=0,
                       MaxSize=s.max_instances, DesiredCapacity=0,
                       AvailabilityZones=[s.availability_zone],
                       NewInstancesProtectedFromScaleIn=True,
                       Tags=[{"Key": OWNER_TAG, "Value": s.name, "PropagateAtLaunch": True,
                              "ResourceId": s.autoscale_group_name,
                              "ResourceType": "auto-scaling-group"}],
                       **launch)
        except CloudError as exc:
            if exc.code != "AlreadyExists":
                raise
            log.info("cloud %s: group %s was created meanwhile", s.name, s.autoscale_group_name)
            return
        log.info("cloud %s: created group %s (max %d, zone %s, %s)", s.name, s.autoscale_group_name,
                 s.max_instances, s.availability_zone, self._types_shown())

    def _types_shown(self) -> str:
        s = self.settings
        if s.instance_types:
            shown = f"instance types {', '.join(s.instance_types)} in this order"
        else:
            shown = f"instance type {s.instance_type}"
        if s.spot:
            price = "" if s.max_price is None else f", at most {s.max_price:g}/h"
            shown += f", spot ({SPOT_STRATEGY}{price}, capacity rebalancing)"
        return shown

    @property
    def _mixed(self) -> bool:
        """Does the group launch through a mixed-instances policy (several types, or spot)?"""
        return bool(self.settings.instance_types) or self.settings.spot

    def _mixed_policy(self) -> dict[str, Any]:
        s = self.settings
        return mixed_instances_policy(s.launch_name, s.launch_types, s.spot, s.max_price)

    def _reconcile(self, group: Mapping[str, Any]) -> None:
        """Keep an existing group's maximum, scale-in protection and instance types in line with
        the settings."""
        s = self.settings
        update: dict[str, Any] = {}
        if int(group.get("MaxSize") or 0) != s.max_instances:
            update["MaxSize"] = s.max_instances
            if int(group.get("DesiredCapacity") or 0) > s.max_instances:
                update["DesiredCapacity"] = s.max_instances
        if not group.get("NewInstancesProtectedFromScaleIn"):
            update["NewInstancesProtectedFromScaleIn"] = True
        if s.spot and not group.get("CapacityRebalance"):
            update["CapacityRebalance"] = True
        if self._mixed:
            if not _policy_matches(group, s.launch_name, s.launch_types, s.spot, s.max_price):
                was = ", ".join(policy_types(group)) or "one instance type"
                log.info("cloud %s: group %s launched %s; now %s", s.name, s.autoscale_group_name,
                         was, self._types_shown())
                update["MixedInstancesPolicy"] = self._ensure_launch()["MixedInstancesPolicy"]
            elif update:
                # Given again with any other change: some compatible services (moto) drop a
                # policy an update does not repeat. AWS keeps it either way.
                update["MixedInstancesPolicy"] = self._mixed_policy()
        elif policy_types(group):
            log.warning("cloud %s: group %s launches instance types %s (a mixed-instances policy) "
                        "but instance_types is not set: left as it is; set instance_types to "
                        "change the types, or give the group another autoscale_group_name", s.name,
                        s.autoscale_group_name, ", ".join(policy_types(group)))
        unprotected = [m["InstanceId"] for m in group.get("Instances") or []
                       if m.get("InstanceId") and not m.get("ProtectedFromScaleIn")
                       and aws_lifecycle_state(str(m.get("LifecycleState", ""))) != InstanceState.GONE]
        if unprotected:
            # Protect members first, so a lowered maximum cannot make the service pick them.
            for part in chunks(unprotected, 50):
                self._call("autoscaling", "SetInstanceProtection", InstanceIds=part,
                           AutoScalingGroupName=s.autoscale_group_name, ProtectedFromScaleIn=True)
            log.info("cloud %s: protected %d member(s) from scale-in", s.name, len(unprotected))
        if update:
            self._call("autoscaling", "UpdateAutoScalingGroup",
                       AutoScalingGroupName=s.autoscale_group_name, **update)
            shown = {k: (", ".join(s.launch_types) if k == "MixedInstancesPolicy" else v)
                     for k, v in update.items()}
            log.info("cloud %s: updated group %s: %s", s.name, s.autoscale_group_name,
                     ", ".join(f"{k}={v}" for k, v in sorted(shown.items())))

    def _ensure_launch(self) -> dict[str, Any]:
        """The CreateAutoScalingGroup arguments naming an existing or new launch spec."""
        method, name = self.settings.launch_method, self.settings.launch_name
        if self._mixed:
            # A mixed-instances policy takes a launch template only (the configuration check
            # refuses launch_method = configuration with instance_types or spot).
            if not self._template_exists(name):
                self._create_template(name)
            return {"MixedInstancesPolicy": self._mixed_policy()}
        if method in ("auto", "configuration") and self._configuration_exists(name):
            return {"LaunchConfigurationName": name}
        if method in ("auto", "template") and self._template_exists(name):
            return self._template_ref(name)
        if method == "template":
            return self._create_template(name)
        try:
            self._create_configuration(name)
        except CloudError as exc:
            if exc.code == "AlreadyExists":
                return {"LaunchConfigurationName": name}
            if method == "auto" and refuses_launch_configurations(exc):
                log.info("cloud %s: the service refuses launch configurations (%s); "
                         "using a launch template", self.settings.name, exc.code)
                return self._create_template(name)
            raise
        return {"LaunchConfigurationName": name}

    def _configuration_exists(self, name: str) -> bool:
        reply = self._call("autoscaling", "DescribeLaunchConfigurations",
                           LaunchConfigurationNames=[name])
        found = [lc for lc in reply.get("LaunchConfigurations") or []
                 if lc.get("LaunchConfigurationName") == name]
        for lc in found:
            if lc.get("ImageId") != self.settings.image_id or lc.get("InstanceType") != self.settings.instance_type:
                log.warning("cloud %s: launch configuration %s exists with image %s, type %s "
                            "(configured: %s, %s); it is reused as it is: delete it or choose "
                            "another launch_config_name to change it", self.settings.name, name,
                            lc.get("ImageId"), lc.get("InstanceType"), self.settings.image_id,
                            self.settings.instance_type)
        return bool(found)

    def _template_exists(self, name: str) -> bool:
        try:
            reply = self._call("ec2", "DescribeLaunchTemplates", LaunchTemplateNames=[name])
        except CloudError as exc:
            if exc.code and "NotFound" in exc.code:
                return False
            raise
        return any(t.get("LaunchTemplateName") == name for t in reply.get("LaunchTemplates") or [])

    @staticmethod
    def _template_ref(name: str) -> dict[str, Any]:
        return {"LaunchTemplate": {"LaunchTemplateName": name, "Version": "$Latest"}}

    def _create_configuration(self, name: str) -> None:
        s = self.settings
        params: dict[str, Any] = {"LaunchConfigurationName": name, "ImageId": s.image_id,
                                  "InstanceType": s.instance_type}
        user_data = read_user_data(s.name, s.user_data_file)
        if user_data:
            params["UserData"] = user_data  # botocore base64-encodes it for this call
        if s.key_name:
            params["KeyName"] = s.key_name
        if s.security_groups:
            params["SecurityGroups"] = list(s.security_groups)
        self._call("autoscaling", "CreateLaunchConfiguration", **params)
        log.info("cloud %s: created launch configuration %s (image %s, type %s)",
                 s.name, name, s.image_id, s.instance_type)

    def _create_template(self, name: str) -> dict[str, Any]:
        s = self.settings
        data: dict[str, Any] = {"ImageId": s.image_id, "InstanceType": s.instance_type}
        user_data = read_user_data(s.name, s.user_data_file)
        if user_data:
            data["UserData"] = base64.b64encode(user_data).decode("ascii")
        if s.key_name:
            data["KeyName"] = s.key_name
        if s.security_groups:
            # Ids (sg-...) work in any VPC; names only in the default VPC.
            key = "SecurityGroupIds" if all(g.startswith("sg-") for g in s.security_groups) else "SecurityGroups"
            data[key] = list(s.security_groups)
        try:
            self._call("ec2", "CreateLaunchTemplate", LaunchTemplateName=name, LaunchTemplateData=data)
        except CloudError as exc:
            if "AlreadyExists" not in (exc.code or ""):
                raise
        else:
            log.info("cloud %s: created launch template %s (image %s, type %s)",
                     s.name, name, s.image_id, s.instance_type)
        return self._template_ref(name)

    # ---- reading ------------------------------------------------------------------------

    def _launch_failure(self) -> LaunchFailure | None:
        s = self.settings
        try:
            reply = self._call("autoscaling", "DescribeScalingActivities",
                               AutoScalingGroupName=s.autoscale_group_name, MaxRecords=ACTIVITIES_READ)
        except CloudError as exc:
            # Not every compatible service has scaling activities; without them a launch that
            # fails is found by the boot timeout instead. The read of the group stands.
            if not self._activities_warned:
                log.warning("cloud %s: cannot read the scaling activities of group %s (%s); a "
                            "failed launch is noticed only after boot_timeout_secs", s.name,
                            s.autoscale_group_name, exc)
                self._activities_warned = True
            return None
        failure = launch_failure(list(reply.get("Activities") or []))
        if failure is not None and failure.id != self._failure_logged:
            self._failure_logged = failure.id  # said once, not at every read while it lasts
            log.warning("cloud %s: group %s could not launch (%s): %s", s.name,
                        s.autoscale_group_name, failure.code, failure.message)
        return failure

    def _interruption(self, ec2: Mapping[str, Any] | None) -> str:
        return interruption(ec2)

    def _member_state(self, member: Mapping[str, Any]) -> InstanceState:
        return aws_lifecycle_state(str(member.get("LifecycleState") or ""),
                                   str(member.get("HealthStatus") or "Healthy"))

    def _ec2_instances(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        # A filter, not InstanceIds: an id EC2 does not know yet must not fail the whole call.
        for part in chunks(ids, 200):
            token: str | None = None
            while True:
                params: dict[str, Any] = {"Filters": [{"Name": "instance-id", "Values": part}]}
                if token:
                    params["NextToken"] = token
                reply = self._call("ec2", "DescribeInstances", **params)
                for reservation in reply.get("Reservations") or []:
                    for inst in reservation.get("Instances") or []:
                        if inst.get("InstanceId"):
                            found[inst["InstanceId"]] = inst
                token = reply.get("NextToken")
                if not token:
                    break
        return found
