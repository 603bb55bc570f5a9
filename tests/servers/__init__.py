"""Local API servers for tests, benchmarks and the demo (127.0.0.1 only).

* :mod:`.phantom`: the Phantom dialect of Auto Scaling plus a Nimbus-style EC2 DescribeInstances,
  reproducing the quirks Phorque must cope with (``python -m tests.servers.phantom``).
* :mod:`.faults`: an HTTP proxy in front of a moto server that injects failures
  (``python -m tests.servers.faults --upstream http://127.0.0.1:5000``).

Both are controlled through ``/_faults`` (:mod:`.faultctl`), a path no real API uses.
"""
