"""The provider for a ``[Cloud-<Name>]`` section, by its dialect.

Apart from :mod:`phorque.adapters.cloud.provider`, so that the dialects import the shared base and
nothing imports back: the factory knows the dialects, the base knows none of them.
"""

from __future__ import annotations

from typing import Any

from phorque.adapters.cloud.aws import AwsProvider
from phorque.adapters.cloud.phantom import PhantomProvider
from phorque.adapters.cloud.provider import CloudProvider
from phorque.adapters.config import CloudSettings


def make_provider(settings: CloudSettings, session: Any = None) -> CloudProvider:
    """The provider for a cloud's dialect (``aws``, or ``nimbus``/``phantom``)."""
    if settings.dialect == "phantom":
        return PhantomProvider(settings, session)
    return AwsProvider(settings, session)
