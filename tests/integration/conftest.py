"""Fixtures of the fault and concurrency tests."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import pytest

from tests.integration.faultkit import DaemonProcess, start_daemon, start_proxy


@pytest.fixture
def daemons(tmp_path) -> Iterator[Callable[..., DaemonProcess]]:
    """``daemons(config_text)`` starts the daemon; whatever is still running at the end is killed."""
    started: list[DaemonProcess] = []

    def start(text: str, name: str = "daemon", debug: bool = False) -> DaemonProcess:
        daemon = start_daemon(tmp_path, text, name, debug)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.kill()


@pytest.fixture
def proxies(moto: str) -> Iterator[Callable[[], str]]:
    """``proxies()`` starts a fault proxy of its own in front of moto and returns its URL."""
    started = []

    def make() -> str:
        running = start_proxy(moto)
        started.append(running)
        return running.url

    yield make
    for running in started:
        running.stop()


@pytest.fixture(autouse=True)
def _quiet_werkzeug() -> Iterator[None]:
    """The in-process moto server logs every request through werkzeug; under pytest's log
    capture that costs more than the requests (the storm test makes thousands)."""
    logger = logging.getLogger("werkzeug")
    level = logger.level
    logger.setLevel(logging.WARNING)
    yield
    logger.setLevel(level)
