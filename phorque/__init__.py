"""Phorque: an event-driven cloud autoscaler for Torque clusters."""

__version__ = "0.2.0"
