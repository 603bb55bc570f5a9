"""One provisioning step, run as its own process by the concurrency tests.

    python provision_step.py URL LOCK_FILE|- DEMAND BARRIER_DIR INDEX

Builds a provider for the moto group, reports ready, waits for the start signal, then runs one
step as the engine does: read the group (desired and live members count, pending capacity
included), decide how many instances are missing to reach DEMAND, and apply that as a launch
of +N on the group's current desired capacity. With a lock file the whole step holds the cloud
lock; with ``-`` it does not. Prints ``{"launched": N}``.
"""

from __future__ import annotations

import json
import os
import sys
import time

from phorque.adapters.cloud import cloud_lock, make_provider
from tests.cloud.cloudkit import aws_settings

PLANNING_SECS = 0.1  # the time a real evaluation spends between reading and acting


def step(provider, demand: int) -> int:
    view = provider.describe()
    needed = demand - view.capacity
    time.sleep(PLANNING_SECS)
    if needed <= 0:
        return 0
    # The executor applies "launch +needed" to the desired capacity as it is now: other actions
    # of the same plan (terminates) may have changed it since the snapshot.
    current = provider.describe().desired
    provider.set_desired(min(current + needed, provider.settings.max_instances))
    return needed


def main() -> int:
    url, lock_file, demand, barrier, index = sys.argv[1:6]
    provider = make_provider(aws_settings(url, max_instances=100, read_timeout_secs=30.0,
                                          max_attempts=5))
    provider.client("autoscaling")
    provider.client("ec2")
    open(os.path.join(barrier, f"ready-{index}"), "w").close()
    go = os.path.join(barrier, "go")
    deadline = time.monotonic() + 60
    while not os.path.exists(go):
        if time.monotonic() > deadline:
            print("no start signal", file=sys.stderr)
            return 3
        time.sleep(0.002)
    if lock_file == "-":
        launched = step(provider, int(demand))
    else:
        with cloud_lock(lock_file, timeout=60):
            launched = step(provider, int(demand))
    print(json.dumps({"launched": launched}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
