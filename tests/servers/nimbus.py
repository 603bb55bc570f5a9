"""A Nimbus-style EC2 query endpoint: DescribeInstances over the Phantom double's VMs.

As Nimbus's query frontend: SigV1/V2 only (a SigV4 request gets 400 ``MissingClientTokenId``),
exactly one of Timestamp or Expires, valid for 300 s; EC2-style XML errors; states ``pending``
(0), ``running`` (16), ``shutting-down`` (32), ``terminated`` (48); DNS names ``[unknown]`` for a
VM without that NIC; launch times like ``2013-04-05T12:34:56.789Z``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.servers import phantom_xml as px
from tests.servers.faultctl import PASS, FaultState, Reply, Rule, control, error_reply, inject
from tests.servers.phantom_model import VM, PhantomModel
from tests.servers.sigv2 import SignatureProblem, verify

_SIG_ERRORS = {"unknown_key": "AuthFailure", "bad_signature": "SignatureDoesNotMatch",
               "expired": "RequestExpired", "missing": "MissingParameter"}
_STATUS = {"AuthFailure": 401, "SignatureDoesNotMatch": 403}


def _render(rule: Rule) -> Reply:
    return error_reply("ec2", rule.status, rule.code, rule.message)


def ec2_state(vm: VM) -> tuple[int, str]:
    """Nimbus's (code, name) for an EPU state."""
    code = vm.code
    if code < 600:
        return 0, "pending"
    if code in (600, 650):
        return 16, "running"
    if code == 700:
        return 32, "shutting-down"
    return 48, "terminated"


class NimbusEC2:
    """The WSGI app of the EC2 endpoint."""

    def __init__(self, model: PhantomModel, users: Mapping[str, str], faults: FaultState,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self.model, self.users, self.faults, self.clock = model, dict(users), faults, clock

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        reply = self.respond(environ)
        if reply is None:
            return []
        status, headers, body = reply
        start_response(status, headers)
        return [body]

    def respond(self, environ: dict[str, Any]) -> Reply | None:
        """The reply to one request (None: the connection was dropped)."""
        reply = control(environ, self.faults)
        if reply is not None:
            return reply
        params = px.request_params(environ)
        action = params.get("Action", "")
        self.faults.count(action)
        injected = inject(environ, self.faults, action, "before", _render)
        if injected is not PASS:
            return injected
        try:
            owner = self.authenticate(environ, params)
        except SignatureProblem as exc:
            return error_reply("ec2", _STATUS.get(exc.code, 400), exc.code, exc.message)
        if action != "DescribeInstances":
            return error_reply("ec2", 400, "InvalidAction", f"The action {action} is not valid here.")
        reply = self.describe_instances(owner, params)
        injected = inject(environ, self.faults, action, "after", _render)
        return reply if injected is PASS else injected

    def authenticate(self, environ: dict[str, Any], params: dict[str, str]) -> str:
        """The caller's access id, or :class:`SignatureProblem` (SigV2 only, 300 s validity)."""
        if "AWSAccessKeyId" not in params:
            if environ.get("HTTP_AUTHORIZATION"):
                raise SignatureProblem("MissingClientTokenId", "Request must contain AWSAccessKeyId.")
            raise SignatureProblem("AuthFailure", "AWS was not able to validate the provided access credentials")
        if ("Timestamp" in params) == ("Expires" in params):
            raise SignatureProblem("InvalidParameterCombination",
                                   "exactly one of Timestamp or Expires is required")
        return verify(params, environ["REQUEST_METHOD"], environ.get("HTTP_HOST", ""),
                      environ.get("PATH_INFO", "/"), self.users, self.clock(),
                      timedelta(seconds=300), _SIG_ERRORS)

    def describe_instances(self, owner: str, params: dict[str, str]) -> Reply:
        """DescribeInstances, optionally for ``InstanceId.N``; unknown ids are an error."""
        wanted = px.numbered(params, "InstanceId")
        vms = {vm.instance_id: vm for vm in self.model.vms_of(owner) if vm.instance_id}
        unknown = [i for i in wanted if i not in vms]
        if unknown:
            return error_reply("ec2", 400, "InvalidInstanceID.NotFound",
                               f"The instance ID '{unknown[0]}' does not exist")
        chosen = [vms[i] for i in wanted] if wanted else sorted(vms.values(), key=lambda v: v.serial)
        items = []
        for vm in chosen:
            code, name = ec2_state(vm)
            public, private = self.model.dns(vm)
            items.append(
                "<item>" + px.element("reservationId", f"r-{vm.serial:08x}") + px.element("ownerId", owner)
                + "<groupSet><item><groupId>default</groupId></item></groupSet><instancesSet><item>"
                + px.element("instanceId", vm.instance_id) + px.element("imageId", vm.image_id)
                + f"<instanceState><code>{code}</code><name>{name}</name></instanceState>"
                + px.element("privateDnsName", private) + px.element("dnsName", public)
                + px.element("reason", None) + px.element("keyName", "phantomkey")
                + px.element("amiLaunchIndex", 0) + "<productCodes/>"
                + px.element("instanceType", vm.instance_type)
                + px.element("launchTime", px.aws_time(vm.launch_time or vm.requested_at))
                + f"<placement>{px.element('availabilityZone', vm.site)}</placement>"
                + px.element("kernelId", None) + px.element("ramdiskId", None)
                + "<monitoring><state>disabled</state></monitoring></item></instancesSet></item>")
        inner = f"<reservationSet>{''.join(items)}</reservationSet>"
        return "200 OK", [("Content-Type", "text/xml")], px.ec2_reply("DescribeInstances", inner)
