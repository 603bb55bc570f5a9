"""Loading and checking ``phorque.conf``.

The file has a ``[Phorque]`` section, a ``[Policy]`` section and one ``[Cloud-<Name>]`` section
per cloud. Every option is typed and checked here; any mistake raises :class:`ConfigError`
naming the file, the section and the option. A value that starts with ``$`` (``$VAR`` or
``${VAR}``) is read from that environment variable; ``$$`` starts a literal ``$``.
"""

from __future__ import annotations

import configparser
import os
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from phorque.core.errors import ConfigError
from phorque.core.model import SPOT_PROPERTY, CloudState, Health, LaunchFailure
from phorque.core.options import (
    Option,
    OptionValueError,
    Secret,
    bool_option,
    budget_option,
    float_option,
    int_option,
    list_option,
    shown,
    str_option,
)

DEFAULT_CONFIG = "/etc/phorque/phorque.conf"
#: The longest duration any option takes: a year. Beyond it a value is a mistake, and far beyond
#: it the waits and timeouts it feeds fail (threading and sockets refuse timeouts past 2**33 s).
LONGEST_SECS = 366 * 86400
CLOUD_PREFIX = "Cloud-"
CLOUD_TYPES = ("aws", "nimbus", "phantom")
MARKETS = ("on-demand", "spot")

PHORQUE_OPTIONS: dict[str, Option] = {
    "loop_sleep_secs": int_option(120, minimum=1, maximum=LONGEST_SECS, help="seconds between full reconciliations"),
    "cluster_directory": str_option("/usr/local", help="Torque install prefix; bin/ holds the commands"),
    "queue_name": str_option("", help="queue(s) whose jobs count; empty or * for every queue"),
    "torque_home": str_option("/var/spool/torque", help="Torque's spool; server_priv/ lives here"),
    "state_dir": str_option("/var/lib/phorque", help="where Phorque keeps its state database"),
    "lock_file": str_option("", help="lock serializing cloud changes; default <state_dir>/phorque.lock"),
    "command_timeout_secs": float_option(30.0, minimum=0.1, maximum=LONGEST_SECS, help="timeout of each Torque command"),
    "watch_files": bool_option(True, help="react to Torque's files; false = poll every loop_sleep_secs"),
    "event_delay_secs": float_option(0.2, minimum=0.0, maximum=LONGEST_SECS, help="how long a burst of events is gathered"),
    "boot_timeout_secs": int_option(900, minimum=1, maximum=LONGEST_SECS, help="default time an instance has to join Torque"),
    "log_file": str_option("", help="log file; empty for standard error"),
    "trigger_address": str_option("127.0.0.1:15099", keep_empty=True,
                                  help="UDP host:port where the daemon takes nudges; empty disables"),
    "metrics_address": str_option("", keep_empty=True,
                                  help="host:port where the daemon serves Prometheus /metrics; empty: off"),
    "log_format": str_option("text", choices=("text", "json"),
                             help="text lines, or one JSON event object per line"),
    "interruption_poll_secs": float_option(15.0, minimum=0.0, maximum=LONGEST_SECS,
                                           help="how often spot groups are read for interruptions; 0: off"),
}

POLICY_OPTIONS: dict[str, Option] = {
    "name": str_option(None, required=True, help="the policy class in phorque/policy/policies.py"),
    "price_per_hour": budget_option(help="spending limit per hour over all clouds; unlimited if unset"),
    "multiplier": int_option(1, minimum=1, help="factor on the number of instances a policy launches"),
}

CLOUD_OPTIONS: dict[str, Option] = {
    "cloud_type": str_option("aws", choices=CLOUD_TYPES, help="API dialect: aws, or nimbus/phantom"),
    "cloud_uri": str_option(None, help="EC2 endpoint host or URL"),
    "cloud_port": int_option(None, minimum=1, maximum=65535, help="EC2 endpoint port"),
    "autoscale_uri": str_option(None, help="Auto Scaling endpoint host or URL"),
    "autoscale_port": int_option(None, minimum=1, maximum=65535, help="Auto Scaling endpoint port"),
    "region": str_option("us-east-1", help="API region name"),
    "image_id": str_option(None, required=True, help="image to launch"),
    "price": float_option(0.0, minimum=0.0, help="price of one instance per hour"),
    "access_id": str_option(None, secret=True, help="access key id (or $VARIABLE)"),
    "secret_key": str_option(None, secret=True, help="secret key (or $VARIABLE)"),
    "profile": str_option(None, help="named boto3 profile, instead of access_id/secret_key"),
    "launch_config_name": str_option(None, help="launch configuration (or template) name"),
    "autoscale_group_name": str_option(None, required=True, help="auto-scaling group name"),
    "availability_zone": str_option("us-east-1a", help="availability zone"),
    # Required unless instance_types is given (checked in _check_cloud, which says so).
    "instance_type": str_option(None, help="instance size to launch; default the first of instance_types"),
    "instance_cores": int_option(None, minimum=1, required=True, help="cores of one instance"),
    "max_instances": int_option(None, minimum=0, required=True, help="most instances on this cloud"),
    "charge_time_secs": int_option(3600, minimum=0, maximum=LONGEST_SECS, help="billing period; 0 for per-second billing"),
    "user_data_file": str_option("", help="file passed to instances as user data"),
    "key_name": str_option("", help="key pair for the instances; none if empty"),
    "security_groups": list_option(help="comma-separated security groups"),
    "ca_bundle": str_option("", help="CA bundle to verify the endpoints' TLS certificates"),
    "verify_tls": bool_option(True, help="false to skip TLS certificate checks (self-signed sites)"),
    "connect_timeout_secs": float_option(5.0, minimum=0.1, maximum=LONGEST_SECS, help="API connect timeout"),
    "read_timeout_secs": float_option(30.0, minimum=0.1, maximum=LONGEST_SECS, help="API read timeout"),
    "max_attempts": int_option(3, minimum=1, maximum=20, help="API attempts (botocore standard retries)"),
    "boot_secs": int_option(120, minimum=0, maximum=LONGEST_SECS, help="how long an instance usually takes to join"),
    "boot_timeout_secs": int_option(None, minimum=1, maximum=LONGEST_SECS, help="overrides [Phorque] boot_timeout_secs"),
    "node_properties": list_option(help="Torque properties given to this cloud's nodes"),
    "instance_memory_mb": int_option(0, minimum=0, help="memory of one instance in MiB; 0: not checked"),
    "instance_gpus": int_option(0, minimum=0, help="GPUs of one instance"),
    "queues": list_option(help="the queues whose jobs this cloud serves; empty: every queue"),
    "instance_types": list_option(help="aws: interchangeable instance types, tried in order"),
    "node_dns": str_option("public", choices=("public", "private"),
                           help="which DNS name becomes the Torque node name"),
    "launch_method": str_option("auto", choices=("auto", "configuration", "template"),
                                help="launch configuration or launch template (aws dialect)"),
    "market": str_option("on-demand", choices=MARKETS,
                         help="on-demand, or spot: cheaper instances the cloud may take back"),
    "max_price": float_option(None, minimum=0.0001,
                              help="spot: the most paid per instance-hour; default the on-demand price"),
}


@dataclass(frozen=True)
class PhorqueSettings:
    loop_sleep_secs: int = 120
    cluster_directory: str = "/usr/local"
    queue_name: str = ""
    torque_home: str = "/var/spool/torque"
    state_dir: str = "/var/lib/phorque"
    lock_file: str = ""
    command_timeout_secs: float = 30.0
    watch_files: bool = True
    event_delay_secs: float = 0.2
    boot_timeout_secs: int = 900
    log_file: str = ""
    trigger_address: str = "127.0.0.1:15099"
    metrics_address: str = ""
    log_format: str = "text"
    interruption_poll_secs: float = 15.0

    @property
    def queues(self) -> frozenset[str] | None:
        """The queues whose jobs count, or None for every queue."""
        names = {q.strip() for q in self.queue_name.split(",") if q.strip()}
        if not names or "*" in names:
            return None
        return frozenset(names)

    @property
    def lock_path(self) -> str:
        return self.lock_file or os.path.join(self.state_dir, "phorque.lock")

    @property
    def state_path(self) -> str:
        return os.path.join(self.state_dir, "phorque.db")

    @property
    def pid_path(self) -> str:
        return os.path.join(self.state_dir, "phorque.pid")

    @property
    def trigger(self) -> tuple[str, int] | None:
        """The nudge address as (host, port), or None when nudges are off."""
        return parse_address(self.trigger_address)

    @property
    def metrics(self) -> tuple[str, int] | None:
        """Where /metrics is served as (host, port), or None when it is off."""
        return parse_address(self.metrics_address)


_DEFAULT_PORTS = {"http": 80, "https": 443}


def normal_endpoint(uri: str | None, port: int | None) -> str:
    """An endpoint as one string whatever its spelling: ``HTTPS://Host:443/`` is ``https://host``."""
    if not uri:
        return "default"
    text = uri.strip() if "://" in uri else f"https://{uri.strip()}"
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    try:
        given = parts.port
    except ValueError:
        given = None
    number = given or port or _DEFAULT_PORTS.get(scheme)
    host = (parts.hostname or "").lower().rstrip(".")
    shown_port = "" if number == _DEFAULT_PORTS.get(scheme) else f":{number}"
    path = parts.path.rstrip("/")
    return f"{scheme}://{host}{shown_port}{path}"


def group_identity(dialect: str, uri: str | None, port: int | None, region: str, group: str) -> str:
    return f"{dialect} {normal_endpoint(uri, port)} {region} {group}"


def parse_address(text: str) -> tuple[str, int] | None:
    """``host:port`` (``[v6]:port`` too) to a tuple; None for an empty value."""
    text = text.strip()
    if not text:
        return None
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536 or not host:
        raise ValueError(f"{shown(text)} is not host:port")
    return host.strip("[]"), int(port)


@dataclass(frozen=True)
class PolicySettings:
    name: str
    price_per_hour: float | None = None
    multiplier: int = 1
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CloudSettings:
    name: str
    image_id: str
    autoscale_group_name: str
    instance_type: str
    instance_cores: int
    max_instances: int
    cloud_type: str = "aws"
    cloud_uri: str | None = None
    cloud_port: int | None = None
    autoscale_uri: str | None = None
    autoscale_port: int | None = None
    region: str = "us-east-1"
    price: float = 0.0
    access_id: Secret | None = field(default=None, repr=False)
    secret_key: Secret | None = field(default=None, repr=False)
    profile: str | None = None
    launch_config_name: str | None = None
    availability_zone: str = "us-east-1a"
    charge_time_secs: int = 3600
    user_data_file: str = ""
    key_name: str = ""
    security_groups: tuple[str, ...] = ()
    ca_bundle: str = ""
    verify_tls: bool = True
    connect_timeout_secs: float = 5.0
    read_timeout_secs: float = 30.0
    max_attempts: int = 3
    boot_secs: int = 120
    boot_timeout_secs: int = 900
    node_properties: tuple[str, ...] = ()
    instance_memory_mb: int = 0
    instance_gpus: int = 0
    queues: tuple[str, ...] = ()
    instance_types: tuple[str, ...] = ()
    node_dns: str = "public"
    launch_method: str = "auto"
    market: str = "on-demand"
    max_price: float | None = None

    @property
    def spot(self) -> bool:
        """Spot capacity: cheaper, and taken back by the cloud at two minutes' notice."""
        return self.market == "spot"

    @property
    def launch_types(self) -> tuple[str, ...]:
        """The instance types the group launches, in order (one unless instance_types)."""
        return self.instance_types or (self.instance_type,)

    @property
    def dialect(self) -> str:
        """``phantom`` for Nimbus/Phantom services, ``aws`` for standard endpoints."""
        return "phantom" if self.cloud_type in ("nimbus", "phantom") else "aws"

    def state(self, health: Health = Health.OK, desired: int = 0, instances=(), error: str = "",
              backoff_until: float | None = None,
              launch_failure: LaunchFailure | None = None) -> CloudState:
        """This cloud as policies see it: the section's shape and limits, with what its group
        was read to be (an empty group by default, as the replay and the status start from)."""
        return CloudState(
            name=self.name, price=self.price, instance_cores=self.instance_cores,
            max_instances=self.max_instances, charge_time_secs=self.charge_time_secs,
            boot_secs=self.boot_secs, boot_timeout_secs=self.boot_timeout_secs, desired=desired,
            instances=tuple(instances), health=health, backoff_until=backoff_until, error=error,
            node_properties=self.node_properties, instance_memory_mb=self.instance_memory_mb,
            instance_gpus=self.instance_gpus, queues=frozenset(self.queues) or None,
            launch_failure=launch_failure, spot=self.spot)

    @property
    def group_identity(self) -> str:
        """The group this section reaches, however its endpoint is written: the dialect, the
        Auto Scaling endpoint normalised (scheme and host in lower case, a default port left
        out, no trailing slash), the region and the group's name."""
        return group_identity(self.dialect, self.autoscale_uri, self.autoscale_port, self.region,
                              self.autoscale_group_name)

    @property
    def launch_name(self) -> str:
        return self.launch_config_name or f"{self.autoscale_group_name}-lc"

    def endpoint_url(self, which: str) -> str | None:
        """The URL of the ``cloud`` (EC2) or ``autoscale`` endpoint, or None for the default.

        A bare host gets ``https://`` and the configured port; a full URL is used as given,
        except that a configured port is added when the URL names none.
        """
        host = getattr(self, f"{which}_uri")
        port = getattr(self, f"{which}_port")
        if not host:
            return None
        if "://" in host:
            scheme, rest = host.split("://", 1)
            netloc, _, path = rest.partition("/")
            if port and not re.search(r":\d+$", netloc):
                netloc = f"{netloc}:{port}"
            return f"{scheme}://{netloc}/{path}"
        netloc = host.rstrip("/")
        if port:
            netloc = f"{netloc}:{port}"
        return f"https://{netloc}/"


@dataclass(frozen=True)
class Config:
    path: str
    phorque: PhorqueSettings
    policy: PolicySettings
    clouds: tuple[CloudSettings, ...]

    def cloud(self, name: str) -> CloudSettings:
        for cloud in self.clouds:
            if cloud.name == name:
                return cloud
        raise KeyError(name)

    def summary(self) -> str:
        """One line describing the configuration, with no secret in it."""
        budget = ("unlimited" if self.policy.price_per_hour is None
                  else f"{self.policy.price_per_hour:g}/h")
        clouds = ", ".join(
            f"{c.name} ({c.cloud_type}, {c.instance_type} x{c.instance_cores} cores, "
            f"price {c.price:g}, max {c.max_instances})" for c in self.clouds)
        return (f"{self.path}: OK: policy {self.policy.name}, budget {budget}, "
                f"queue {self.phorque.queue_name or '*'}, torque_home {self.phorque.torque_home}, "
                f"{len(self.clouds)} cloud(s): {clouds}")


_ENV_RE = re.compile(r"^\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))$")


def _control(text: str) -> str | None:
    """The name of the first control character in ``text`` (a newline, a tab, ...), if any."""
    for ch in text:
        if unicodedata.category(ch) == "Cc":
            return {"\n": "a newline", "\r": "a carriage return", "\t": "a tab"}.get(
                ch, f"control character U+{ord(ch):04X}")
    return None


def _expand(path: str, section: str, option: str, raw: str, environ: dict[str, str],
            secret: bool = False) -> str:
    # No option takes a control character: a newline in a credential ends up escaped inside a
    # botocore header (and in its error), one in a path or a host name is always a mistake.
    bad = _control(raw.strip())
    if bad:
        raise ConfigError(path, section, option, f"the value holds {bad} (it spans lines?)")
    value = raw.strip()
    if value.startswith("$$"):
        return value[1:]
    if not value.startswith("$"):
        return raw
    match = _ENV_RE.match(value)
    if not match:
        # A secret that merely starts with "$" must not reach the message.
        quoted = "the value" if secret else shown(value)
        raise ConfigError(path, section, option,
                          f"{quoted} is not a valid environment variable reference ($NAME or ${{NAME}})")
    name = match.group("braced") or match.group("bare")
    if name not in environ:
        raise ConfigError(path, section, option, f"environment variable {name} is not set")
    bad = _control(environ[name])
    if bad:
        # The value itself is never shown: it may be a credential.
        raise ConfigError(path, section, option, f"environment variable {name} holds {bad}")
    return environ[name]


def _parse_section(path: str, parser: configparser.ConfigParser, section: str,
                   options: dict[str, Option], environ: dict[str, str]) -> dict[str, Any]:
    present = parser[section]
    for name in present:
        if name not in options:
            known = ", ".join(sorted(options))
            raise ConfigError(path, section, name, f"unknown option (known options: {known})")
    values: dict[str, Any] = {}
    for name, spec in options.items():
        if name not in present:
            if spec.required:
                raise ConfigError(path, section, name, "required option is missing")
            if spec.default is not None:
                values[name] = spec.default
            continue
        raw = _expand(path, section, name, present[name], environ, spec.secret)
        if not raw.strip() and not spec.keep_empty:
            if spec.required:
                raise ConfigError(path, section, name, "required option is empty")
            if spec.default is not None:
                values[name] = spec.default
            continue
        try:
            values[name] = spec.parse(raw)
        except OptionValueError as exc:
            # A secret's value never reaches a message, even when it is malformed.
            problem = "is not valid" if spec.secret else str(exc)
            raise ConfigError(path, section, name, problem) from None
    return values


def _read(path: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True,
                                       default_section="__phorque_no_defaults__")
    try:
        with open(path, encoding="utf-8") as handle:
            parser.read_file(handle, source=path)
    except FileNotFoundError:
        raise ConfigError(path, None, None, "configuration file not found") from None
    except PermissionError:
        raise ConfigError(path, None, None, "configuration file is not readable (permission denied)") from None
    except IsADirectoryError:
        raise ConfigError(path, None, None, "is a directory, not a configuration file") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(path, None, None, f"is not UTF-8 text (byte {exc.start})") from None
    except configparser.DuplicateSectionError as exc:
        raise ConfigError(path, exc.section, None, f"section appears twice (line {exc.lineno})") from None
    except configparser.DuplicateOptionError as exc:
        raise ConfigError(path, exc.section, exc.option, f"option appears twice (line {exc.lineno})") from None
    except configparser.MissingSectionHeaderError as exc:
        raise ConfigError(path, None, None, f"line {exc.lineno}: an option before any [Section] header") from None
    except configparser.ParsingError as exc:
        lines = ", ".join(str(lineno) for lineno, _ in exc.errors[:5])
        raise ConfigError(path, None, None, f"cannot parse line(s) {lines}") from None
    except configparser.Error as exc:
        raise ConfigError(path, None, None, f"cannot parse: {exc.message}") from None
    except OSError as exc:
        raise ConfigError(path, None, None, f"cannot read: {exc.strerror}") from None
    return parser


def _policy_options(path: str, name: str) -> dict[str, Option]:
    # Imported here: the policy package is pure, but it is not needed to read [Phorque].
    from phorque.policy import policy_class

    try:
        cls = policy_class(name)
    except KeyError as exc:
        raise ConfigError(path, "Policy", "name", str(exc.args[0]).replace(repr(name), shown(name))) from None
    return dict(cls.OPTIONS)


def _check_cloud(path: str, section: str, values: dict[str, Any]) -> None:
    dialect = "phantom" if values["cloud_type"] in ("nimbus", "phantom") else "aws"
    has_id, has_key = values.get("access_id") is not None, values.get("secret_key") is not None
    if has_id != has_key:
        missing = "secret_key" if has_id else "access_id"
        raise ConfigError(path, section, missing, "access_id and secret_key must be given together")
    if has_id and values.get("profile"):
        raise ConfigError(path, section, "profile", "give either profile or access_id/secret_key, not both")
    lc = values.get("launch_config_name")
    if dialect == "phantom" and (not lc or "@" not in lc):
        raise ConfigError(path, section, "launch_config_name",
                          "the Phantom dialect needs a name of the form <name>@<site>")
    for which in ("cloud", "autoscale"):
        uri = values.get(f"{which}_uri")
        if uri and "://" in uri and not uri.lower().startswith(("http://", "https://")):
            raise ConfigError(path, section, f"{which}_uri", f"{shown(uri)}: only http:// and https:// URLs")
    if dialect == "phantom" and not values.get("autoscale_uri"):
        raise ConfigError(path, section, "autoscale_uri", "required for cloud_type "
                          f"{values['cloud_type']} (there is no default Phantom endpoint)")
    if dialect == "phantom" and not values.get("cloud_uri"):
        raise ConfigError(path, section, "cloud_uri", "required for cloud_type "
                          f"{values['cloud_type']} (the Nimbus EC2 endpoint that lists the VMs)")
    _check_instance_types(path, section, dialect, values)
    _check_market(path, section, dialect, values)
    udf = values.get("user_data_file")
    if udf and not os.access(udf, os.R_OK):
        raise ConfigError(path, section, "user_data_file", f"{udf}: file is missing or not readable")
    ca = values.get("ca_bundle")
    if ca and not os.access(ca, os.R_OK):
        raise ConfigError(path, section, "ca_bundle", f"{ca}: file is missing or not readable")


def _check_instance_types(path: str, section: str, dialect: str, values: dict[str, Any]) -> None:
    """``instance_type`` or ``instance_types``; the list only where a group can launch several
    types (a mixed-instances policy needs the aws dialect and a launch template). Sets
    ``instance_type`` to the first of the list when it is not given."""
    types: tuple[str, ...] = values.get("instance_types") or ()
    single = values.get("instance_type")
    if not types:
        if not single:
            raise ConfigError(path, section, "instance_type",
                              "required option is missing (give instance_type, or instance_types "
                              "for several interchangeable types)")
        return
    if dialect != "aws":
        raise ConfigError(path, section, "instance_types",
                          f"cloud_type {values['cloud_type']} launches one instance type: "
                          "give instance_type instead (several types need cloud_type aws)")
    if values.get("launch_method") == "configuration":
        raise ConfigError(path, section, "instance_types",
                          "several instance types need a launch template: launch_method = "
                          "configuration cannot be used with instance_types (use auto or template)")
    bad = next((t for t in types if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.\-]*", t)), None)
    if bad is not None:
        raise ConfigError(path, section, "instance_types", f"{shown(bad)} is not an instance type name")
    repeated = sorted({t for t in types if types.count(t) > 1})
    if repeated:
        raise ConfigError(path, section, "instance_types", f"{', '.join(repeated)} given twice")
    if single and single not in types:
        raise ConfigError(path, section, "instance_type",
                          f"{shown(single)} is not one of instance_types ({', '.join(types)}); "
                          "leave instance_type out to launch the first of them by default")
    if not single:
        values["instance_type"] = types[0]


def _check_market(path: str, section: str, dialect: str, values: dict[str, Any]) -> None:
    """Spot needs the aws dialect and a launch template (a mixed-instances policy); its nodes
    carry the ``spot`` property, so that jobs can ask for them and the policies tell them apart."""
    if values.get("market") != "spot":
        if values.get("max_price") is not None:
            raise ConfigError(path, section, "max_price", "only for market = spot")
        return
    if dialect != "aws":
        raise ConfigError(path, section, "market",
                          f"spot needs cloud_type aws (cloud_type {values['cloud_type']} has no spot market)")
    if values.get("launch_method") == "configuration":
        raise ConfigError(path, section, "market",
                          "spot needs a launch template (a mixed-instances policy): launch_method = "
                          "configuration cannot be used with market = spot (use auto or template)")
    props = tuple(values.get("node_properties") or ())
    if SPOT_PROPERTY not in props:
        values["node_properties"] = (*props, SPOT_PROPERTY)


def load_config(path: str | os.PathLike[str] | None = None,
                environ: dict[str, str] | None = None) -> Config:
    """Read, check and convert a configuration file. Raises :class:`ConfigError`."""
    env = dict(os.environ if environ is None else environ)
    path = str(path or env.get("PHORQUE_CONFIG") or DEFAULT_CONFIG)
    parser = _read(path)

    for section in parser.sections():
        if section not in ("Phorque", "Policy") and not (
                section.startswith(CLOUD_PREFIX) and len(section) > len(CLOUD_PREFIX)):
            raise ConfigError(path, section, None,
                              "unknown section (expected [Phorque], [Policy] or [Cloud-<Name>])")
    if not parser.has_section("Policy"):
        raise ConfigError(path, "Policy", "name", "section [Policy] with option name is missing")

    if parser.has_section("Phorque"):
        phorque_values = _parse_section(path, parser, "Phorque", PHORQUE_OPTIONS, env)
    else:
        phorque_values = {k: o.default for k, o in PHORQUE_OPTIONS.items() if o.default is not None}
    phorque = PhorqueSettings(**phorque_values)
    try:
        phorque.trigger  # noqa: B018  (validates the address)
    except ValueError as exc:
        raise ConfigError(path, "Phorque", "trigger_address", str(exc)) from None
    try:
        phorque.metrics  # noqa: B018  (validates the address)
    except ValueError as exc:
        raise ConfigError(path, "Phorque", "metrics_address", str(exc)) from None

    name_raw = parser["Policy"].get("name", "")
    name = _expand(path, "Policy", "name", name_raw, env).strip()
    if not name:
        raise ConfigError(path, "Policy", "name", "required option is missing")
    specific = _policy_options(path, name)
    policy_values = _parse_section(path, parser, "Policy", {**POLICY_OPTIONS, **specific}, env)
    policy = PolicySettings(
        name=policy_values.pop("name"),
        price_per_hour=policy_values.pop("price_per_hour", None),
        multiplier=policy_values.pop("multiplier", 1),
        options=policy_values,
    )

    clouds: list[CloudSettings] = []
    groups: dict[str, str] = {}
    for section in parser.sections():
        if not section.startswith(CLOUD_PREFIX):
            continue
        values = _parse_section(path, parser, section, CLOUD_OPTIONS, env)
        _check_cloud(path, section, values)
        values.setdefault("boot_timeout_secs", phorque.boot_timeout_secs)
        # One group, however its endpoint is written (a trailing slash, the default port given,
        # upper case): two sections scaling it would each count only their own instances. The
        # same name in another region is another group.
        dialect = "phantom" if values["cloud_type"] in ("nimbus", "phantom") else "aws"
        key = group_identity(dialect, values.get("autoscale_uri"), values.get("autoscale_port"),
                             values["region"], values["autoscale_group_name"])
        if key in groups:
            raise ConfigError(path, section, "autoscale_group_name",
                              f"group {shown(values['autoscale_group_name'])} is already used by "
                              f"[{groups[key]}] (the same endpoint and region)")
        groups[key] = section
        clouds.append(CloudSettings(name=section[len(CLOUD_PREFIX):], **values))
    if not clouds:
        raise ConfigError(path, None, None, "no [Cloud-<Name>] section: Phorque needs at least one cloud")
    # Cheapest first; the file's order breaks ties, so the administrator's order is kept.
    clouds.sort(key=lambda c: c.price)
    return Config(path=path, phorque=phorque, policy=policy, clouds=tuple(clouds))


def config_path_from(arg: str | None) -> str:
    """The file to read: the -c argument, else $PHORQUE_CONFIG, else the default."""
    return arg or os.environ.get("PHORQUE_CONFIG") or DEFAULT_CONFIG

