"""Cloud providers: AWS-API auto-scaling groups (standard and Phantom dialects) through boto3.

The engine uses :func:`make_provider` (one :class:`CloudProvider` per ``[Cloud-<Name>]``),
:func:`cloud_lock` around every mutation, the pure backoff records of :mod:`.backoff`, and
:func:`phorque.adapters.cloud.status.describe_clouds` for ``phorque-status``.
"""

from phorque.adapters.cloud.backoff import (
           CloudHealthRecord,
           health_at,
           record_failure,
           record_success,
)
from phorque.adapters.cloud.factory import make_provider
from phorque.adapters.cloud.lock import cloud_lock
from phorque.adapters.cloud.provider import CloudProvider, GroupView

__all__ = ["CloudHealthRecord", "CloudProvider", "GroupView", "cloud_lock", "health_at",
           "make_provider", "record_failure", "record_success"]
