"""Phorque's test bed: the Torque sandbox and the live demo. Installed with the ``sandbox`` extra, for the demo and the tests; no part of Phorque imports it."""
