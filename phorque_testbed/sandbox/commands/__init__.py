"""The Torque client commands a sandbox cluster's ``bin/`` scripts run.

Each module has ``main(script, argv) -> int``: ``script`` is the path of the ``bin/`` script
(which locates the cluster) and ``argv`` the arguments after the command name.
"""
