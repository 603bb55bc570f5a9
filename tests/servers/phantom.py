"""A Phantom-dialect Auto Scaling server, with a Nimbus-style EC2 endpoint beside it.

Phantom (Nimbus's auto-scaling service) no longer runs anywhere; this double reproduces what
Phorque meets when talking to it, from Phantom's code:

* SigV2 checked against the configured secret, Timestamp within ±15 minutes; SigV4 requests fail
  as they did (500 InternalFailure for botocore's ``Authorization`` header);
* errors are webob ``text/plain`` pages (``400 InvalidParameterValue``), not XML;
* TerminateInstanceInAutoScalingGroup and DescribeAutoScalingInstances replies lack their
  ``Result`` wrapper; booleans are written ``True``/``False``;
* EPU lifecycle states moving with time, ``""`` instance ids until a VM exists, ``[unknown]``
  DNS names while pending, dead VMs still listed;
* SetDesiredCapacity also sets MinSize and MaxSize; ShouldDecrementDesiredCapacity is required;
  an unknown instance id is a 400; the ``n_preserve`` tag is refused.

    python -m tests.servers.phantom --port 8445 --ec2-port 8444 \\
        --access-id ID --secret-key SECRET [--requested-secs S --pending-secs S]

prints one JSON line with both ports. Faults and timings are changed through ``/_faults``
(:mod:`.faultctl`; ``extra`` takes ``requested_secs``, ``pending_secs``, ``terminating_secs``,
``requests_fail``, ``public_dns``); ``POST /_reset`` forgets every group and VM.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import os
import ssl
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from xml.sax.saxutils import escape

from tests.servers import phantom_xml as px
from tests.servers.faultctl import (
    PASS,
    FaultState,
    Reply,
    Rule,
    control,
    error_reply,
    inject,
    json_reply,
)
from tests.servers.httpserve import RunningServer, run_until_signalled, serve, tls_context
from tests.servers.nimbus import NimbusEC2
from tests.servers.phantom_model import VM, PhantomFault, PhantomModel, Timing
from tests.servers.sigv2 import SignatureProblem, verify

_SIG_ERRORS = {"unknown_key": "InvalidClientTokenId", "bad_signature": "IncompleteSignature",
               "expired": "RequestExpired", "missing": "MissingParameter"}


def phantom_error(code: str, detail: str = "", status: int | None = None) -> Reply:
    """A webob text error page as Phantom sent it."""
    explanation, default_status = px.PHANTOM_ERRORS.get(code, ("", status or 400))
    text = f"{explanation}\n\n {detail}".strip() if detail else explanation
    return error_reply("webob", status or default_status, code, text)


def _render(rule: Rule) -> Reply:
    return phantom_error(rule.code, rule.message, rule.status)


def _required(params: Mapping[str, str], *names: str) -> None:
    for name in names:
        if not params.get(name):
            raise PhantomFault("MissingParameter", f"{name} is required")


def _int(params: Mapping[str, str], name: str) -> int:
    try:
        return int(params[name])
    except (KeyError, ValueError):
        raise PhantomFault("InvalidParameterValue", f"{name} must be an integer") from None


class PhantomAutoScaling:
    """The WSGI app of the Auto Scaling endpoint."""

    def __init__(self, model: PhantomModel, users: Mapping[str, str], faults: FaultState,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self.model, self.users, self.faults, self.clock = model, dict(users), faults, clock
        self.base_timing = model.timing
        self.actions: dict[str, Callable[[str, dict[str, str]], bytes]] = {
            "CreateLaunchConfiguration": self.create_launch_configuration,
            "DescribeLaunchConfigurations": self.describe_launch_configurations,
            "DeleteLaunchConfiguration": self.delete_launch_configuration,
            "CreateAutoScalingGroup": self.create_group,
            "DescribeAutoScalingGroups": self.describe_groups,
            "DeleteAutoScalingGroup": self.delete_group,
            "SetDesiredCapacity": self.set_desired_capacity,
            "CreateOrUpdateTags": self.create_or_update_tags,
            "DescribeAutoScalingInstances": self.describe_instances,
            "TerminateInstanceInAutoScalingGroup": self.terminate,
        }

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        reply = self.respond(environ)
        if reply is None:
            return []
        status, headers, body = reply
        start_response(status, headers)
        return [body]

    def _configure(self, extra: dict[str, Any]) -> None:
        names = {f.name for f in fields(Timing)}
        self.model.timing = replace(self.base_timing, **{k: v for k, v in extra.items() if k in names})

    def respond(self, environ: dict[str, Any]) -> Reply | None:
        """The reply to one request (None: the connection was dropped)."""
        reply = control(environ, self.faults, self._configure)
        if reply is not None:
            return reply
        if environ.get("PATH_INFO", "").rstrip("/") == "/_reset":
            self.model.reset()
            self.faults.clear()
            self._configure({})
            return json_reply("200 OK", {"reset": True})
        params = px.request_params(environ)
        action = params.get("Action")
        if not action:
            return phantom_error("InvalidParameterValue", "Action is missing")
        if action not in self.actions:
            return error_reply("webob", 404, "Not Found",
                               f"The resource could not be found.\n\n No action {action}")
        self.faults.count(action)
        injected = inject(environ, self.faults, action, "before", _render)
        if injected is not PASS:
            return injected
        try:
            owner = self.authenticate(environ, params)
            body = self.actions[action](owner, params)
            reply = "200 OK", [("Content-Type", "text/xml")], body
        except PhantomFault as exc:
            reply = phantom_error(exc.code, exc.detail, exc.status if exc.status != 400 else None)
        except SignatureProblem as exc:
            reply = phantom_error(exc.code, exc.message)
        injected = inject(environ, self.faults, action, "after", _render)
        return reply if injected is PASS else injected

    def authenticate(self, environ: dict[str, Any], params: dict[str, str]) -> str:
        """The caller's access id; SigV2 checked, SigV4 failing as it did on Phantom."""
        if "AWSAccessKeyId" in params:
            return verify(params, environ["REQUEST_METHOD"], environ.get("HTTP_HOST", ""),
                          environ.get("PATH_INFO", "/"), self.users, self.clock(),
                          timedelta(minutes=15), _SIG_ERRORS)
        auth = environ.get("HTTP_AUTHORIZATION", "")
        if auth:
            # Phantom read only the second whitespace-separated token and split it on bare
            # commas; botocore's SigV4 header ("a, b, c") breaks that, and Phantom answered 500.
            tokens = auth.split()
            parts = tokens[1].split(",") if len(tokens) > 1 else []
            if len(parts) != 3 or not all("=" in p for p in parts):
                raise PhantomFault("InternalFailure", "cannot read the Authorization header", 500)
            # Even a well-formed header fails: the port is dropped from Host and keys re-sorted.
            raise PhantomFault("IncompleteSignature", "SigV4 is not supported")
        raise PhantomFault("MissingAuthenticationToken", "", 403)

    # ---- launch configurations ---------------------------------------------------------

    def create_launch_configuration(self, owner: str, p: dict[str, str]) -> bytes:
        """``name@site`` required; UserData must be base64."""
        _required(p, "LaunchConfigurationName", "ImageId", "InstanceType")
        user_data = p.get("UserData", "")
        try:
            base64.b64decode(user_data, validate=True)
        except (binascii.Error, ValueError):
            raise PhantomFault("InvalidParameterValue", "UserData should be base64-encoded") from None
        self.model.create_launch_config(owner, p["LaunchConfigurationName"], {
            "ImageId": p["ImageId"], "InstanceType": p["InstanceType"], "UserData": user_data,
            "KeyName": p.get("KeyName", ""), "SecurityGroups": px.member_list(p, "SecurityGroups"),
            "Monitoring": p.get("InstanceMonitoring.Enabled", "true").lower() == "true"})
        return px.as_reply("CreateLaunchConfiguration", "", wrapped=False)

    def describe_launch_configurations(self, owner: str, p: dict[str, str]) -> bytes:
        """One entry per ``name@site``; booleans written ``True``/``False``."""
        items = []
        for name, spec in self.model.launch_configs_of(owner, px.member_list(p, "LaunchConfigurationNames")):
            items.append("".join([
                px.members("BlockDeviceMappings", []), px.element("CreatedTime", px.aws_time(spec["created"])),
                px.element("ImageId", spec["ImageId"]),
                f"<InstanceMonitoring>{px.element('Enabled', spec['Monitoring'])}</InstanceMonitoring>",
                px.element("InstanceType", spec["InstanceType"]), px.element("KernelId", None),
                px.element("KeyName", spec["KeyName"] or "phantomkey"),
                px.element("LaunchConfigurationARN", f"arn:phantom:lc:{owner}:{name}"),
                px.element("LaunchConfigurationName", name), px.element("RamdiskId", None),
                px.members("SecurityGroups", (escape(g) for g in spec["SecurityGroups"])),
                px.element("UserData", spec["UserData"] or None)]))
        return px.as_reply("DescribeLaunchConfigurations", px.members("LaunchConfigurations", items))

    def delete_launch_configuration(self, owner: str, p: dict[str, str]) -> bytes:
        """Removes one site of a launch configuration."""
        _required(p, "LaunchConfigurationName")
        self.model.delete_launch_config(owner, p["LaunchConfigurationName"])
        return px.as_reply("DeleteLaunchConfiguration", "", wrapped=False)

    # ---- groups --------------------------------------------------------------------------

    def create_group(self, owner: str, p: dict[str, str]) -> bytes:
        """AvailabilityZones required (and ignored); tags checked."""
        _required(p, "AutoScalingGroupName", "LaunchConfigurationName", "MinSize", "MaxSize")
        zones = px.member_list(p, "AvailabilityZones")
        if not zones:
            raise PhantomFault("MissingParameter", "AvailabilityZones is required")
        self.model.create_group(owner, p["AutoScalingGroupName"], p["LaunchConfigurationName"],
                                _int(p, "MinSize"), _int(p, "MaxSize"), zones,
                                px.member_structs(p, "Tags"))
        return px.as_reply("CreateAutoScalingGroup", "", wrapped=False)

    def _member(self, vm: VM) -> str:
        return "".join([
            px.element("AutoScalingGroupName", vm.group), px.element("AvailabilityZone", vm.site),
            px.element("HealthStatus", "Healthy" if vm.code <= 600 else "Unhealthy"),
            px.element("InstanceId", vm.instance_id), px.element("LaunchConfigurationName", vm.lc),
            px.element("LifecycleState", vm.state)])

    def describe_groups(self, owner: str, p: dict[str, str]) -> bytes:
        """Every member, dead ones included; no tags; the launch name without its site."""
        names = px.member_list(p, "AutoScalingGroupNames")
        items = []
        with self.model.lock:
            groups = sorted((g for (who, _), g in self.model.groups.items() if who == owner),
                            key=lambda g: g.name)
            for g in groups:
                if names and g.name not in names:
                    continue
                vms = self.model.members(owner, g.name)
                items.append("".join([
                    px.element("AutoScalingGroupARN", f"arn:phantom:asg:{owner}:{g.name}"),
                    px.element("AutoScalingGroupName", g.name), px.members("AvailabilityZones", []),
                    px.element("CreatedTime", px.aws_time(g.created)), px.element("Cooldown", 0),
                    px.element("DesiredCapacity", g.minimum), px.members("EnabledMetrics", []),
                    px.element("HealthCheckGracePeriod", 0), px.element("HealthCheckType", None),
                    px.members("Instances", (self._member(vm) for vm in vms)),
                    px.element("LaunchConfigurationName", g.lc), px.members("LoadBalancerNames", []),
                    px.element("MaxSize", g.maximum), px.element("MinSize", g.minimum),
                    px.element("PlacementGroup", None), px.element("Status", None),
                    px.members("SuspendedProcesses", []), px.members("Tags", []),
                    px.element("VPCZoneIdentifier", None)]))
        return px.as_reply("DescribeAutoScalingGroups", px.members("AutoScalingGroups", items))

    def delete_group(self, owner: str, p: dict[str, str]) -> bytes:
        """Deletes the group; its VMs terminate."""
        _required(p, "AutoScalingGroupName")
        self.model.delete_group(owner, p["AutoScalingGroupName"])
        return px.as_reply("DeleteAutoScalingGroup", "", wrapped=False)

    def set_desired_capacity(self, owner: str, p: dict[str, str]) -> bytes:
        """Sets MinSize, MaxSize and the desired capacity alike."""
        _required(p, "AutoScalingGroupName", "DesiredCapacity")
        self.model.set_desired(owner, p["AutoScalingGroupName"], _int(p, "DesiredCapacity"))
        return px.as_reply("SetDesiredCapacity", "", wrapped=False)

    def create_or_update_tags(self, owner: str, p: dict[str, str]) -> bytes:
        """Revalidates the tags and reconfigures the group."""
        self.model.update_tags(owner, px.member_structs(p, "Tags"))
        return px.as_reply("CreateOrUpdateTags", "", wrapped=False)

    # ---- instances -------------------------------------------------------------------------

    def describe_instances(self, owner: str, p: dict[str, str]) -> bytes:
        """DescribeAutoScalingInstances: VMs with an id, reply without its Result element."""
        ids = set(px.member_list(p, "InstanceIds"))
        vms = sorted((vm for vm in self.model.vms_of(owner) if vm.instance_id
                      and (not ids or vm.instance_id in ids)), key=lambda vm: vm.instance_id)
        inner = px.members("AutoScalingInstances", (self._member(vm) for vm in vms))
        return px.as_reply("DescribeAutoScalingInstances", inner, wrapped=False)  # sic: no Result

    def terminate(self, owner: str, p: dict[str, str]) -> bytes:
        """TerminateInstanceInAutoScalingGroup: decrement required, no Result or Activity."""
        _required(p, "InstanceId", "ShouldDecrementDesiredCapacity")
        decrement = p["ShouldDecrementDesiredCapacity"].strip().lower()
        if decrement not in ("true", "false"):
            raise PhantomFault("InvalidParameterValue", "ShouldDecrementDesiredCapacity must be true or false")
        self.model.terminate(owner, p["InstanceId"], decrement == "true")
        return px.as_reply("TerminateInstanceInAutoScalingGroup", "", wrapped=False)  # no Activity


@dataclass
class PhantomServer:
    """Both endpoints running in this process."""

    autoscale: RunningServer
    ec2: RunningServer
    model: PhantomModel
    faults: FaultState

    def stop(self) -> None:
        """Stop both endpoints."""
        self.autoscale.stop()
        self.ec2.stop()


def start(users: Mapping[str, str], timing: Timing | None = None, host: str = "127.0.0.1",
          port: int = 0, ec2_port: int = 0, tls: ssl.SSLContext | None = None) -> PhantomServer:
    """Start the Auto Scaling and EC2 endpoints (port 0: any free port) in background threads.

    With ``tls`` both speak HTTPS, as the real services did.
    """
    model, faults = PhantomModel(timing), FaultState()
    model.stuck = faults.is_stuck
    autoscale = serve(PhantomAutoScaling(model, users, faults), host, port, tls)
    try:
        ec2 = serve(NimbusEC2(model, users, faults), host, ec2_port, tls)
    except OSError:
        autoscale.stop()
        raise
    return PhantomServer(autoscale, ec2, model, faults)


def main(argv: list[str] | None = None) -> int:
    """``python -m tests.servers.phantom``: serve both endpoints until SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m tests.servers.phantom",
                                     description="A local Phantom-dialect Auto Scaling server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="Auto Scaling port (0: any free port)")
    parser.add_argument("--ec2-port", type=int, default=0, help="EC2 port (0: any free port)")
    parser.add_argument("--access-id", default=os.environ.get("PHANTOM_ACCESS_ID", "phorque"))
    parser.add_argument("--secret-key", default=os.environ.get("PHANTOM_SECRET_KEY", "phorque-secret"),
                        help="the secret the SigV2 signatures are checked with "
                             "(default: $PHANTOM_SECRET_KEY)")
    parser.add_argument("--requested-secs", type=float, default=Timing.requested_secs)
    parser.add_argument("--pending-secs", type=float, default=Timing.pending_secs)
    parser.add_argument("--terminating-secs", type=float, default=Timing.terminating_secs)
    parser.add_argument("--cert", help="serve HTTPS with this certificate (PEM)")
    parser.add_argument("--key", help="the certificate's private key (PEM)")
    args = parser.parse_args(argv)
    timing = Timing(args.requested_secs, args.pending_secs, args.terminating_secs)
    try:
        tls = tls_context(args.cert, args.key or args.cert) if args.cert else None
        server = start({args.access_id: args.secret_key}, timing, args.host, args.port,
                       args.ec2_port, tls)
    except (OSError, ssl.SSLError) as exc:
        print(f"phantom server: {exc}", file=sys.stderr)
        return 2
    return run_until_signalled([server.autoscale, server.ec2], {
        "autoscale_port": server.autoscale.port, "ec2_port": server.ec2.port,
        "autoscale_url": server.autoscale.url, "ec2_url": server.ec2.url,
        "control": server.autoscale.url + "/_faults"})


if __name__ == "__main__":
    sys.exit(main())
