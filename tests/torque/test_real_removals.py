"""`qmgr -c "delete node"` holds for 2 s or more on a real pbs_server: removals must not hold the
launches of the same evaluation, and several go at once."""

from __future__ import annotations

from phorque.act.engine import Engine
from phorque.act.executor import Executor
from phorque.adapters.config import load_config
from phorque.adapters.state import StateStore
from phorque.core.plan import Action, Kind, Plan
from tests.integration.kit import conf_text

NODES = [f"gone{n}.example" for n in range(4)]


def test_removals_come_after_the_launches_and_all_go(real_torque, moto, tmp_path):
    logged_before = len(_server_log(real_torque))
    for name in NODES:
        real_torque.cluster.add_alias(name)
        real_torque.qmgr(f"create node {name} np=2")
    conf = tmp_path / "phorque.conf"
    conf.write_text(conf_text(tmp_path, real_torque, moto, cores=2, max_instances=4))
    config = load_config(conf, environ={})
    engine = Engine(config)
    engine._ensure_setup()
    snap = engine.snapshot(now=engine.clock(), save=False)
    plan = Plan(actions=tuple([Action(Kind.REMOVE, node=n, reason="test") for n in NODES]
                              + [Action(Kind.LAUNCH, cloud="local", count=1, reason="test")]))
    executor = Executor(engine.torque, engine.providers, {c.name: c for c in config.clouds},
                        StateStore(":memory:"), snap.now, lambda cloud, error: None)
    outcomes = executor.apply(plan, snap)
    # The launch was made first; the removals came after it, every one done.
    assert [o.action.kind for o in outcomes] == [Kind.LAUNCH] + [Kind.REMOVE] * len(NODES)
    assert all(o.status == "done" for o in outcomes), outcomes
    assert not set(NODES) & set(real_torque.nodes())
    # pbs_server logged each deletion once (`bench removals` measures them side by side).
    deleted = [line for line in _server_log(real_torque)[logged_before:]
               if "deleted at request of" in line and any(n in line for n in NODES)]
    assert len(deleted) == len(NODES)


def _server_log(real_torque) -> list[str]:
    folder = real_torque.cluster.home / "server_logs"
    lines: list[str] = []
    for path in sorted(folder.iterdir()):
        lines.extend(path.read_text(errors="replace").splitlines())
    return lines
