"""The shipped systemd unit's sandboxing, applied to a daemon run against the real server.

systemd does not run here, so its file-system settings are applied the way systemd applies them:
a private mount namespace (`unshare -m`), a fresh tmpfs on /tmp for `PrivateTmp=true`, read-only
bind mounts for `ProtectSystem=full` (/usr, /boot, /etc) and `ProtectHome=read-only`."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

from tests.integration.kit import conf_text

UNIT = Path(__file__).resolve().parents[2] / "etc" / "phorque" / "phorque.service"


def _service_settings(**override: str) -> dict[str, str]:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # keep systemd's capitals
    parser.read_string(UNIT.read_text())
    return {**dict(parser["Service"]), **override}


def _sandbox_script(settings: dict[str, str]) -> str:
    """Shell commands (run as root inside `unshare -m`) that set up what the unit asks for."""
    steps = ["set -e"]
    if settings.get("PrivateTmp", "false").lower() in ("true", "yes", "1"):
        steps.append("mount -t tmpfs -o mode=1777 tmpfs /tmp")
    read_only = []
    if settings.get("ProtectSystem", "").lower() in ("true", "yes", "full", "strict"):
        read_only += ["/usr", "/boot"]
        if settings["ProtectSystem"].lower() in ("full", "strict"):
            read_only.append("/etc")
    if settings.get("ProtectHome", "").lower() == "read-only":
        read_only += ["/home", "/root", "/run/user"]
    for path in read_only:
        if Path(path).exists():
            steps.append(f"mount --bind {path} {path} && mount -o remount,bind,ro {path}")
    steps.append('exec "$@"')
    return "\n".join(steps)


def _once_under_unit(conf: Path, settings: dict[str, str]) -> subprocess.CompletedProcess:
    argv = ["unshare", "-m", "--propagation", "private", "sh", "-c", _sandbox_script(settings), "sh",
            sys.executable, "-m", "phorque.cli.daemon", "-c", str(conf), "--once"]
    return subprocess.run(argv, capture_output=True, text=True, timeout=180, check=False)


def test_the_daemon_reaches_torque_under_the_units_sandboxing(real_torque, moto):
    blockers = [real_torque.qsub("-l", "nodes=1:ppn=2", script="sleep 120\n") for _ in range(2)]
    real_torque.wait_jobs(blockers, "R")
    real_torque.qsub("-l", "nodes=1:ppn=2")
    # Outside /tmp, as /etc/phorque and /var/lib/phorque are on a site.
    home = real_torque.cluster.build.root / "unit-test"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir()
    try:
        conf = home / "phorque.conf"
        conf.write_text(conf_text(home, real_torque, moto, cores=2))
        shipped = _once_under_unit(conf, _service_settings())
        assert shipped.returncode == 0, shipped.stdout + shipped.stderr
        assert "launch +1" in shipped.stdout + shipped.stderr
        # What the unit used to say: a private /tmp hides trqauthd's socket (/tmp/trqauthd-unix,
        # Torque's default) from qstat, pbsnodes and qmgr, and no evaluation can be made.
        private = _once_under_unit(conf, _service_settings(PrivateTmp="true"))
        assert private.returncode != 0
        assert "Torque could not be read" in private.stdout + private.stderr
    finally:
        shutil.rmtree(home, ignore_errors=True)
