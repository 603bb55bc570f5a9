"""Replaying workloads through the policies: what would each have cost, and how long would jobs
have waited?

A discrete-event simulator feeds the real policies (:mod:`phorque.policy`) with simulated
snapshots of a Torque-like cluster and of auto-scaling groups, and applies their plans with the
executor's semantics, on a virtual clock. Inputs are Standard Workload Format traces and Torque
accounting logs; ``phorque-replay`` is the command.
"""

from phorque.replay.settings import ReplaySettings
from phorque.replay.sim import Simulation, replay
from phorque.replay.trace import Trace, TraceJob

__all__ = ["ReplaySettings", "Simulation", "Trace", "TraceJob", "replay"]
