"""The real-Torque tier: a private Torque 6.1.3 (`python3 dev.py torque build`) on this host.

The tier is collected only where a build is found and the tests run as root (see
tests/conftest.py); `python3 dev.py test` says in one line when it is not run and why.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from tests.torque.torquekit import BASE_MOMS, NP, RealTorque
from torquebed.cluster import Cluster


@pytest.fixture(scope="session")
def real_torque_session() -> Iterator[RealTorque]:
    cluster = Cluster.find()
    started_here = not cluster.running()
    if started_here:
        cluster.start(moms=len(BASE_MOMS), np=NP)
    yield RealTorque(cluster)
    if started_here:
        cluster.stop()


@pytest.fixture
def real_torque(real_torque_session: RealTorque) -> Iterator[RealTorque]:
    """The private Torque with no job left, only its two moms (np=2), and the base settings."""
    real_torque_session.reset()
    yield real_torque_session
    real_torque_session.reset()


@pytest.fixture(autouse=True)
def _quiet_werkzeug() -> Iterator[None]:
    """The in-process moto server logs every request through werkzeug: keep it out of reports."""
    logger = logging.getLogger("werkzeug")
    level = logger.level
    logger.setLevel(logging.WARNING)
    yield
    logger.setLevel(level)
