"""Credentials never appear in what the real commands print, log or store, nor in their errors.

The commands (``phorque --check-config``, ``phorque-status [--json]``, ``phorque-evaluate
--dry-run [--json]``, ``phorque-evaluate --local [--json]``, the daemon with ``-d --once``) run
against moto and the Phantom double at once (one configuration, several clouds), with credentials
written literally and read from ``$VARIABLES``, on good endpoints and on failing ones (connection
refused, TLS spoken to a plain HTTP server, a key the service does not know and echoes back, a
wrong secret). No access id and no secret key may appear in standard output, standard error
(tracebacks included), the log file or any file in ``state_dir`` (the database and its WAL).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.cloud.cloudkit import PHANTOM_ID, PHANTOM_SECRET
from tests.fake_torque import FakeTorque

QUEUED = ("<Data><Job><Job_Id>1.srv</Job_Id><job_state>Q</job_state><queue>batch</queue><Resource_List>"
          "<nodes>1:ppn=2</nodes><walltime>01:00:00</walltime></Resource_List></Job></Data>")

PHORQUE = """
[Phorque]
cluster_directory = {torque}
torque_home = {torque}
state_dir = {state}
log_file = {log}
watch_files = false
trigger_address =
command_timeout_secs = 20

[Policy]
name = OnDemand
"""

CLOUD = """
[Cloud-{name}]
cloud_type = {cloud_type}
cloud_uri = {url}
autoscale_uri = {autoscale}
access_id = {access}
secret_key = {secret}
launch_config_name = {launch}
autoscale_group_name = secrets-{name}
image_id = ami-12c6146b
instance_type = t3.micro
instance_cores = 2
max_instances = 2
price = {price}
connect_timeout_secs = 2
read_timeout_secs = 5
max_attempts = 1
"""

EVERY_COMMAND = [
    ("phorque.cli.daemon", "--check-config"),
    ("phorque.cli.status", "--json"),
    ("phorque.cli.status",),
    ("phorque.cli.evaluate", "--dry-run", "--json"),
    ("phorque.cli.evaluate", "--dry-run"),
    ("phorque.cli.evaluate", "--local", "--json", "-d"),
    ("phorque.cli.daemon", "-d", "--once"),
    ("phorque.cli.status", "-d"),
]
#: The commands that talk to the clouds, log and store: for the further combinations.
ACTING = [("phorque.cli.evaluate", "--local", "-d"), ("phorque.cli.daemon", "-d", "--once"),
          ("phorque.cli.status",)]


@dataclass
class Cloud:
    """One ``[Cloud-<name>]`` section and the credentials it uses."""

    name: str
    url: str
    access: str
    secret: str
    literal: bool
    phantom: bool = False
    autoscale: str = ""
    price: float = 0.1

    def section(self, env: dict[str, str]) -> str:
        access, secret = self.access, self.secret
        if not self.literal:  # read from the environment, $NAME and ${NAME}
            key = self.name.upper()
            env.update({f"E2E_{key}_ID": access, f"E2E_{key}_SECRET": secret})
            access, secret = f"$E2E_{key}_ID", f"${{E2E_{key}_SECRET}}"
        return CLOUD.format(name=self.name, cloud_type="nimbus" if self.phantom else "aws", url=self.url,
                            autoscale=self.autoscale or self.url, access=access, secret=secret,
                            launch="lc@hotel" if self.phantom else f"secrets-{self.name}-lc", price=self.price)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_commands(tmp_path: Path, clouds: list[Cloud], commands) -> str:
    """Each command once; all they printed, logged and stored, as one text."""
    fake = FakeTorque(tmp_path / "torque")
    fake.script("qstat", stdout=QUEUED)
    fake.script("pbsnodes", stdout="<Data></Data>")
    env = dict(os.environ)
    state, log = tmp_path / "state", tmp_path / "phorque.log"
    conf = tmp_path / "phorque.conf"
    conf.write_text(PHORQUE.format(torque=fake.root, state=state, log=log)
                    + "".join(cloud.section(env) for cloud in clouds))
    seen = []
    for module, *args in commands:
        done = subprocess.run([sys.executable, "-m", module, "-c", str(conf), *args], capture_output=True,
                              timeout=120, env=env, cwd=tmp_path)
        assert done.returncode in (0, 1), (module, args, done.returncode, done.stderr[-2000:])
        seen += [done.stdout, done.stderr]
    stored = [p.read_bytes() for p in state.rglob("*") if p.is_file()]
    assert any(p.name == "phorque.db" for p in state.iterdir())
    return b"\n".join([*seen, log.read_bytes(), *stored]).decode("utf-8", "replace")


def assert_no_secret(text: str, clouds: list[Cloud]) -> None:
    for cloud in clouds:
        for secret in (cloud.access, cloud.secret):
            assert secret not in text, f"{secret!r} of {cloud.name} leaked"


def test_answering_and_echoing_clouds_every_command(moto, phantom, tmp_path):
    clouds = [
        # Shaped like real keys: an AWS secret key holds "/" and "+".
        Cloud("amazon", moto, "AKIAE2ELEAKCHECK7788", "e2e/Leak+Check9secretKEY0zzq", literal=True),
        # A key the double does not know: its error names the key, as many services do.
        Cloud("hotel", phantom.ec2.url, "PHANTOMUNKNOWNID4242", PHANTOM_SECRET, literal=False, phantom=True,
              autoscale=phantom.autoscale.url, price=0.05),
    ]
    text = run_commands(tmp_path, clouds, EVERY_COMMAND)
    assert "desired capacity 0 -> 1" in text  # it did talk to moto and act
    assert "InvalidClientTokenId" in text and "***" in text  # the echoed key was redacted
    assert_no_secret(text, clouds)


def test_unreachable_and_refusing_clouds(moto, phantom, tmp_path):
    clouds = [
        Cloud("refused", f"http://127.0.0.1:{closed_port()}", "AKIAREFUSEDLEAK11", "refused/secret+Q1", False),
        Cloud("tls", moto.replace("http://", "https://"), "AKIATLSLEAKCHECK22", "tls/secret+Key22", True,
              price=0.2),
        Cloud("hotel", phantom.ec2.url, PHANTOM_ID, "wrong-phantom-secret-77Qx", literal=True, phantom=True,
              autoscale=phantom.autoscale.url, price=0.3),
    ]
    text = run_commands(tmp_path, clouds, ACTING)
    for failure in ("Could not connect", "SSL", "IncompleteSignature"):
        assert failure in text  # each failure is reported...
    assert_no_secret(text, clouds)  # ...without the credentials


def test_answering_clouds_with_credentials_from_the_environment(moto, phantom, tmp_path):
    clouds = [
        Cloud("amazon", moto, "AKIAENVLEAKCHECK33", "env/Leak+Check33secret", literal=False, price=0.2),
        Cloud("hotel", phantom.ec2.url, PHANTOM_ID, PHANTOM_SECRET, literal=False, phantom=True,
              autoscale=phantom.autoscale.url, price=0.1),
    ]
    text = run_commands(tmp_path, clouds, ACTING)
    assert "desired capacity 0 -> 1" in text
    assert_no_secret(text, clouds)


def test_a_configuration_error_about_a_credential_does_not_show_it(tmp_path):
    fake = FakeTorque(tmp_path / "torque")
    cloud = Cloud("amazon", "http://127.0.0.1:9", "AKIACONFIGLEAK44", "$config/secret+44", literal=True)
    conf = tmp_path / "phorque.conf"
    conf.write_text(PHORQUE.format(torque=fake.root, state=tmp_path / "state", log=tmp_path / "log")
                    + cloud.section({}))
    for module, *args in EVERY_COMMAND[:4]:
        done = subprocess.run([sys.executable, "-m", module, "-c", str(conf), *args], capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 2 and "secret_key" in done.stderr
        assert_no_secret(done.stdout + done.stderr, [cloud])
