"""boto3 at the edge: building a cloud's clients, and turning botocore's errors into ours.

Everything that touches boto3 or botocore directly lives here, so the providers speak only in
Phorque's terms and every foreign exception is translated exactly once (:func:`translate`).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import botocore.exceptions as bce
import botocore.session
from botocore import xform_name
from botocore.config import Config as BotoConfig
from botocore.loaders import create_loader
from botocore.parsers import ResponseParserError

from phorque.adapters.config import CloudSettings
from phorque.adapters.redact import redact as redact_forms
from phorque.core.errors import CloudError, CloudUnreachable

log = logging.getLogger("phorque.cloud.clients")

#: Error codes that mean "slow down" (botocore's own list, plus EC2's RequestLimitExceeded).
THROTTLE_CODES = frozenset({
    "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException",
    "TooManyRequestsException", "ProvisionedThroughputExceededException",
    "TransactionInProgressException", "RequestLimitExceeded", "BandwidthLimitExceeded",
    "LimitExceededException", "RequestThrottled", "SlowDown", "PriorRequestNotComplete",
    "EC2ThrottledException",
})

#: No answer at all: the endpoint is down, slow or not who it claims to be.
_UNREACHABLE = (
    bce.ConnectionError,  # refused, connect timeout, TLS failure, proxy
    bce.HTTPClientError,  # read timeout, connection closed mid-reply
)

_CREDENTIALS = (bce.NoCredentialsError, bce.PartialCredentialsError, bce.ProfileNotFound,
                bce.NoRegionError)


def redact(text: str, secrets: tuple[str, ...]) -> str:
    """``text`` with every credential replaced by ``***``, also escaped or quoted."""
    return redact_forms(text, secrets)


def translate(exc: Exception, cloud: str, operation: str, secrets: tuple[str, ...]) -> CloudError:
    """The Phorque error for a botocore failure (credentials never appear in its message)."""
    if isinstance(exc, bce.ClientError):
        err = exc.response.get("Error", {}) or {}
        code = str(err.get("Code") or "")
        message = str(err.get("Message") or "") or str(exc)
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if status is not None:
            message = f"{message} (HTTP {status})"
        return CloudError(cloud, operation, redact(message, secrets), code=code or None,
                          throttled=code in THROTTLE_CODES)
    if isinstance(exc, _UNREACHABLE):
        return CloudUnreachable(cloud, operation, redact(str(exc), secrets),
                                code=type(exc).__name__)
    if isinstance(exc, _CREDENTIALS):
        return CloudError(cloud, operation, redact(str(exc), secrets), code="NoCredentials")
    if isinstance(exc, ResponseParserError):
        # The first line says what could not be parsed; the rest is the raw body.
        first = str(exc).splitlines()[0] if str(exc) else "unparsable reply"
        return CloudError(cloud, operation, redact(first, secrets), code="BadResponse")
    if isinstance(exc, KeyError):
        # botocore raises a bare KeyError for a reply lacking an element its model requires.
        return CloudError(cloud, operation, f"reply lacks the element {exc}", code="BadResponse")
    return CloudError(cloud, operation, redact(f"{type(exc).__name__}: {exc}", secrets))


@contextmanager
def translated(cloud: str, operation: str, secrets: tuple[str, ...]) -> Iterator[None]:
    """Run one API call; any botocore (or parser) failure leaves as a :class:`CloudError`."""
    try:
        yield
    except CloudError:
        raise
    except (bce.BotoCoreError, bce.ClientError, ResponseParserError, KeyError) as exc:
        raise translate(exc, cloud, operation, secrets) from exc


def settings_secrets(settings: CloudSettings) -> tuple[str, ...]:
    """The credential strings of a cloud, longest first (for :func:`redact`)."""
    found = [s.reveal() for s in (settings.access_id, settings.secret_key) if s is not None]
    return tuple(sorted((s for s in found if s), key=len, reverse=True))


_LOADER: Any = None


def _botocore_session() -> botocore.session.Session:
    """A fresh botocore session sharing one model loader, so each cloud's clients are cheap
    to build (the service models are read once per process, not once per cloud)."""
    global _LOADER
    if _LOADER is None:
        _LOADER = create_loader()
    session = botocore.session.get_session()
    session.register_component("data_loader", _LOADER)
    return session


def make_session(settings: CloudSettings) -> boto3.session.Session:
    """A boto3 session: explicit keys, else the named profile, else boto3's default chain."""
    core = _botocore_session()
    if settings.access_id is not None and settings.secret_key is not None:
        return boto3.session.Session(aws_access_key_id=settings.access_id.reveal(),
                                     aws_secret_access_key=settings.secret_key.reveal(),
                                     region_name=settings.region, botocore_session=core)
    if settings.profile:
        try:
            return boto3.session.Session(profile_name=settings.profile, region_name=settings.region,
                                         botocore_session=core)
        except bce.ProfileNotFound as exc:
            raise CloudError(settings.name, "credentials", f"profile {settings.profile!r} not found",
                             code="NoCredentials") from exc
    return boto3.session.Session(region_name=settings.region, botocore_session=core)


def boto_config(settings: CloudSettings, attempts: int | None = None) -> BotoConfig:
    """Retries in botocore's standard mode, explicit timeouts, SigV2 for the Phantom dialect."""
    kwargs: dict[str, Any] = {
        "retries": {"mode": "standard", "total_max_attempts": attempts or settings.max_attempts},
        "connect_timeout": settings.connect_timeout_secs,
        "read_timeout": settings.read_timeout_secs,
        "user_agent_extra": "phorque",
    }
    if settings.dialect == "phantom":
        kwargs["signature_version"] = "v2"
    return BotoConfig(**kwargs)


def verify_arg(settings: CloudSettings) -> bool | str | None:
    """The ``verify`` argument: a CA bundle path, False to skip checks, else the default."""
    if settings.ca_bundle:
        return settings.ca_bundle
    if not settings.verify_tls:
        return False
    return None


def make_client(session: boto3.session.Session, settings: CloudSettings, service: str,
                attempts: int | None = None,
                on_before_parse: Callable[..., None] | None = None) -> Any:
    """A boto3 client of ``service`` ("autoscaling" or "ec2") for this cloud's endpoint."""
    which = "autoscale" if service == "autoscaling" else "cloud"
    verify = verify_arg(settings)
    if verify is False:
        # The administrator chose this (a self-signed site): say it once, not on every request.
        log.warning("cloud %s: TLS certificates of %s are not checked (verify_tls = false)",
                    settings.name, settings.endpoint_url(which) or service)
        warnings.filterwarnings("ignore", message="Unverified HTTPS request")
    try:
        client = session.client(service, endpoint_url=settings.endpoint_url(which),
                                verify=verify,
                                config=boto_config(settings, attempts))
    except bce.BotoCoreError as exc:
        raise translate(exc, settings.name, f"{service} client", settings_secrets(settings)) from exc
    except ValueError as exc:  # e.g. a malformed endpoint URL
        raise CloudError(settings.name, f"{service} client",
                         redact(str(exc), settings_secrets(settings))) from exc
    if on_before_parse is not None:
        event_service = "auto-scaling" if service == "autoscaling" else service
        client.meta.events.register(f"before-parse.{event_service}.*", on_before_parse)
    return client


def call(client: Any, operation: str, cloud: str, secrets: tuple[str, ...], **params: Any) -> dict:
    """Call ``operation`` (API name, e.g. ``SetDesiredCapacity``) on ``client``, translated."""
    method = getattr(client, xform_name(operation))
    with translated(cloud, operation, secrets):
        return method(**params)
