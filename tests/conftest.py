"""Shared fixtures: real local servers on 127.0.0.1 (moto, the fault proxy, the Phantom double)
and real sandbox clusters in temporary folders."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from moto.server import ThreadedMotoServer

from phorque_testbed.sandbox import cluster, hosts, server
from tests.cloud.cloudkit import PHANTOM_ID, PHANTOM_SECRET, http
from tests.sandboxkit import Sandbox
from tests.servers import faults as fault_proxy
from tests.servers import phantom as phantom_server
from tests.servers.phantom_model import Timing


def _real_torque_found() -> str | None:
    """Why the real-Torque tier cannot run here, or None when it can."""
    from torquebed.build import cache_root, locate

    if os.geteuid() != 0:
        return "it needs root (a private Torque changes /etc/hosts and adds a user)"
    if locate() is None:
        return f"no Torque build in {cache_root()} (python3 dev.py torque build)"
    return None


#: The level of each test directory (``pytest -m LEVEL`` runs one): ``unit``, pure and in one
#: process; ``component``, the act half and the daemon on in-memory ports (tests/fakes.py);
#: ``integration``, real local servers and real commands (moto, the Phantom double, the
#: sandbox, a private Torque); ``hostile``, malformed and huge inputs; ``replay``, the
#: simulator and its figures.
LEVELS = {"unit": "unit", "component": "component", "integration": "integration",
          "cloud": "integration", "sandbox": "integration", "torque": "integration",
          "hostile": "hostile", "replay": "replay"}
_TESTS = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config, items) -> None:
    for item in items:
        parts = Path(str(item.path)).resolve().relative_to(_TESTS).parts
        level = LEVELS.get(parts[0]) if len(parts) > 1 else None
        if level is None:
            raise pytest.UsageError(f"{item.nodeid}: a test file belongs in one of the level "
                                    f"directories {sorted(LEVELS)} of tests/")
        item.add_marker(level)


_NO_REAL_TORQUE = _real_torque_found()
collect_ignore = ["torque"] if _NO_REAL_TORQUE else []
_tier_passed = 0


def pytest_report_header(config) -> str:
    if _NO_REAL_TORQUE:
        return f"real-Torque tier (tests/torque): not run, {_NO_REAL_TORQUE}"
    return "real-Torque tier (tests/torque): a private Torque 6.1.3 on this host"


def pytest_runtest_logreport(report) -> None:
    global _tier_passed
    if report.when == "call" and report.passed and report.nodeid.startswith("tests/torque/"):
        _tier_passed += 1


def pytest_sessionfinish(session) -> None:
    # dev.py reads this under CI: the tier must have run there.
    path = os.environ.get("PHORQUE_TORQUE_TIER_REPORT")
    if path:
        Path(path).write_text(str(_tier_passed))


# Timings short enough for tests, long enough to observe every EPU state.
FAST = Timing(requested_secs=0.3, pending_secs=0.4, terminating_secs=0.3)


@pytest.fixture(autouse=True)
def _no_ambient_aws(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """Keep the developer's own AWS settings out of the tests."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    # moto builds its Auto Scaling and EC2 backends on first use (a second or more): do it now,
    # so tests with short read timeouts measure faults, not moto's start-up.
    for service in ("autoscaling", "ec2"):
        client = boto3.client(service, endpoint_url=url, region_name="us-east-1",
                              aws_access_key_id="warm", aws_secret_access_key="up",
                              config=Config(read_timeout=120))
        (client.describe_auto_scaling_groups if service == "autoscaling" else client.describe_instances)()
    yield url
    server.stop()


@pytest.fixture
def moto(moto_url: str) -> str:
    """A moto server with no state left from earlier tests."""
    http("POST", moto_url + "/moto-api/reset")
    return moto_url


@pytest.fixture(scope="session")
def _proxy(moto_url: str) -> Iterator[str]:
    running, _ = fault_proxy.start(moto_url)
    yield running.url
    running.stop()


@pytest.fixture
def proxy(_proxy: str, moto: str) -> str:
    """The fault proxy in front of a freshly reset moto, with no fault set."""
    http("DELETE", _proxy + "/_faults")
    return _proxy


@pytest.fixture(scope="session")
def _phantom() -> Iterator[phantom_server.PhantomServer]:
    server = phantom_server.start({PHANTOM_ID: PHANTOM_SECRET}, FAST)
    yield server
    server.stop()


@pytest.fixture
def phantom(_phantom: phantom_server.PhantomServer) -> phantom_server.PhantomServer:
    """The Phantom double with no group, VM or fault left from earlier tests."""
    http("POST", _phantom.autoscale.url + "/_reset")
    return _phantom


#: Names a kit's sandbox resolves, as a site's DNS does: moto's instance names (public
#: ``ec2-...amazonaws.com``, private ``ip-....internal``) and the Phantom double's
#: (``vm-N.SITE.phantom.test``, ``vm-N.SITE.internal.test``), which the sandbox does not ask the
#: cloud about in fixed boot mode, and the names tests give the nodes they create by hand.
KIT_HOSTS = ("*.amazonaws.com", "*.internal", "*.phantom.test", "*.internal.test", "cloud-*",
             "extra", "*.example")


@pytest.fixture
def make_sandbox(tmp_path: Path) -> Iterator[Callable[..., Sandbox]]:
    """A factory: ``make_sandbox(nodes=2, np=4, start=True, gpus=0, mem_mb=0, **settings)``."""
    made: list[Sandbox] = []

    def make(nodes: int = 2, np: int = 4, start: bool = True, server_name: str = "srv.test",
             name: str = "cluster", properties: list[str] | None = None,
             resolvable: tuple[str, ...] = KIT_HOSTS, transit: bool = True,
             gpus: int = 0, mem_mb: int = 0, **settings: object) -> Sandbox:
        settings.setdefault("keep_completed", 0)
        # What the README tells a site to do for jobs only cloud nodes can run: the queue accepts
        # jobs wider than today's nodes (is_transit) ...
        # ... and nothing deletes them meanwhile: real pbs_sched does unless placeholder nodes
        # of every cloud shape are defined, which would show in every test's node list (Maui
        # and Moab do not delete such jobs). Tests of the deletion turn it on.
        settings.setdefault("delete_infeasible", 0)
        # Real Torque's delays stay on, shortened so that a suite of joins and job ends keeps
        # its pace on a busy machine: a new node's MOM-list-not-sent window, the mom's obit.
        settings.setdefault("mom_list_delay", 1)
        settings.setdefault("obit_delay", 1)
        layout = cluster.init(str(tmp_path / name), nodes, np, server_name, settings, properties,
                              gpus=gpus, mem_mb=mem_mb)
        hosts.add_names(layout, resolvable)
        if transit:
            cluster.set_queue(layout, "batch", is_transit="true")
        sandbox = Sandbox(layout)
        made.append(sandbox)
        if start:
            sandbox.start()
        return sandbox

    yield make
    for sandbox in made:
        server.stop(sandbox.layout)


@pytest.fixture
def sandbox(make_sandbox) -> Sandbox:
    """A running two-node cluster (4 cores each), completed jobs purged at once."""
    return make_sandbox()
