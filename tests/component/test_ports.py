"""The adapters and the in-memory fakes implement the ports method for method, with the same
parameters (an implementation may add parameters of its own after them, with defaults), so
that a change to a port is made everywhere or fails here."""

from __future__ import annotations

import inspect

import pytest

from phorque.adapters.cloud.aws import AwsProvider
from phorque.adapters.cloud.phantom import PhantomProvider
from phorque.adapters.state import StateStore
from phorque.adapters.torque.commands import Torque
from phorque.core.ports import CloudGroup, InstanceBook, LifecycleRecords, TorqueAdmin, TorqueReader
from phorque.replay.owned import OwnedBook
from phorque.replay.ports import SimGroup, SimRecords, SimTorque
from tests.fakes import MemoryCloud, MemoryTorque


def port_methods(port: type) -> dict[str, inspect.Signature]:
    out = {}
    for klass in reversed(port.__mro__):
        if klass is object or not getattr(klass, "_is_protocol", False):
            continue
        for name, value in vars(klass).items():
            if inspect.isfunction(value) and not name.startswith("_"):
                out[name] = inspect.signature(value)
    return out


def parameters(sig: inspect.Signature) -> list[tuple[str, object]]:
    return [(p.name, p.default) for p in sig.parameters.values()]


@pytest.mark.parametrize(("port", "implementation"), [
    (TorqueAdmin, Torque), (TorqueAdmin, MemoryTorque), (TorqueAdmin, SimTorque),
    (CloudGroup, AwsProvider), (CloudGroup, PhantomProvider), (CloudGroup, MemoryCloud), (CloudGroup, SimGroup),
    (LifecycleRecords, StateStore), (LifecycleRecords, SimRecords),
    (InstanceBook, StateStore), (InstanceBook, OwnedBook),
])
def test_an_implementation_has_every_method_of_its_port_with_the_same_parameters(port, implementation):
    methods = port_methods(port)
    assert methods, f"{port.__name__} declares no method"
    for name, sig in methods.items():
        found = getattr(implementation, name, None)
        assert callable(found), f"{implementation.__name__} lacks {port.__name__}.{name}"
        own, declared = parameters(inspect.signature(found)), parameters(sig)
        assert own[:len(declared)] == declared, \
            f"{implementation.__name__}.{name} differs from {port.__name__}.{name}"
        extra = [p for p, default in own[len(declared):] if default is inspect.Parameter.empty]
        assert not extra, f"{implementation.__name__}.{name} needs parameters its port does not give: {extra}"


def test_the_admin_port_reads_what_the_live_view_reads():
    reader = set(port_methods(TorqueReader))
    assert reader == {"jobs", "nodes", "jobs_named", "nodes_named"}
    assert reader < set(port_methods(TorqueAdmin))
