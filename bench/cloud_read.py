"""What reading one cloud group costs an evaluation, against a moto server, with 10, 50 and 200
instances up (running, with their DNS names): the full read (a reconciliation: the group, then
EC2 about every member) next to the read of an evaluation a trigger asked for (the group, and
EC2 only about the members that are not settled), in the same run. One new member is launched
before each triggered read, as for a `qsub` that needs an instance.

    python3 dev.py bench cloud_read [--instances 10 50 200] [--repeat 10]
"""

from __future__ import annotations

import argparse
import statistics
import time

from _harness import Rig

from phorque.adapters.cloud import make_provider
from phorque.adapters.config import CloudSettings, Secret


class MotoRig(Rig):
    """Only the moto server."""

    def __init__(self) -> None:
        self._start_moto()

    def close(self) -> None:
        self._stop_moto()


def settings(url: str, group: str, max_instances: int) -> CloudSettings:
    return CloudSettings(
        name="bench", image_id="ami-12c6146b", autoscale_group_name=group, instance_type="t3.xlarge",
        instance_cores=4, max_instances=max_instances, cloud_type="aws", cloud_uri=url,
        autoscale_uri=url, access_id=Secret("bench"), secret_key=Secret("bench"),
        launch_config_name=f"{group}-lc", availability_zone="us-east-1a")


def timed(provider, fresh: bool) -> float:
    started = time.perf_counter()
    provider.describe(fresh=fresh)
    return time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--instances", type=int, nargs="+", default=[10, 50, 200])
    ap.add_argument("--repeat", type=int, default=10)
    args = ap.parse_args()
    rig = MotoRig()
    rows = []
    try:
        for count in args.instances:
            provider = make_provider(settings(rig.moto, f"bench-{count}", count + args.repeat))
            provider.ensure_setup()
            provider.set_desired(count)
            first = provider.describe(fresh=True)
            assert len(first.live) == count
            full = [timed(provider, True) for _ in range(args.repeat)]
            triggered = []
            for k in range(args.repeat):
                provider.set_desired(count + k + 1)
                triggered.append(timed(provider, False))
                # The same members, the same states, as a full read gives.
                assert provider.describe(fresh=False) == provider.describe(fresh=True)
            rows.append((count, statistics.median(full), statistics.median(triggered)))
    finally:
        rig.close()
    print("one cloud group read, median of the reads (moto server on 127.0.0.1)")
    print(f"{'instances':>10} {'full read':>10} {'triggered':>10} {'ratio':>7}")
    for count, full_s, trig_s in rows:
        print(f"{count:>10,} {full_s:>9.3f}s {trig_s:>9.3f}s {full_s / trig_s:>6.1f}x")


if __name__ == "__main__":
    main()
