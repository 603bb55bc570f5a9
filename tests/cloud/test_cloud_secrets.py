"""Credentials never appear in an error, a log line or the status output."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from phorque.adapters.cloud import make_provider
from phorque.core.errors import CloudError
from phorque.core.options import Secret
from tests.cloud.cloudkit import PHANTOM_SECRET, aws_settings, phantom_settings, set_faults

LEAKY_ID = "AKIDLEAKCHECK98765"
LEAKY_SECRET = "leak-check-secret-4f9a2c"


def test_an_error_echoing_the_access_id_is_redacted(phantom) -> None:
    # The Phantom double, like many services, names the unknown key in its answer.
    provider = make_provider(phantom_settings(phantom, access_id=Secret(LEAKY_ID),
                                              secret_key=Secret(LEAKY_SECRET)))
    with pytest.raises(CloudError) as info:
        provider.describe()
    assert info.value.code == "InvalidClientTokenId"
    text = f"{info.value} {info.value!r} {info.value.args}"
    assert LEAKY_ID not in text and LEAKY_SECRET not in text
    assert "***" in str(info.value)


def test_no_credential_in_phorque_logs_or_errors(phantom, proxy, caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="phorque")
    errors: list[str] = []
    good = make_provider(phantom_settings(phantom))
    good.ensure_setup()
    good.set_desired(1)
    bad = make_provider(phantom_settings(phantom, secret_key=Secret(LEAKY_SECRET), max_attempts=1))
    aws = make_provider(aws_settings(proxy, access_id=Secret(LEAKY_ID), secret_key=Secret(LEAKY_SECRET),
                                     max_attempts=1, read_timeout_secs=0.5))
    make_provider(aws_settings(proxy)).ensure_setup()
    for rule in ({"kind": "throttle"}, {"kind": "error", "status": 500}, {"kind": "drop"},
                 {"kind": "delay", "seconds": 1.5}):
        set_faults(proxy, rules=[rule])
        with pytest.raises(CloudError) as info:
            aws.describe()
        errors.append(f"{info.value!r} {info.value}")
    with pytest.raises(CloudError) as info:
        bad.set_desired(2)
    errors.append(str(info.value))
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "desired capacity -> 1" in logged  # the log was captured
    for secret in (LEAKY_ID, LEAKY_SECRET, PHANTOM_SECRET):
        assert secret not in logged
        assert all(secret not in e for e in errors)


SCRIPT = """
import logging, sys
from phorque.cli.common import setup_logging
from phorque.adapters.cloud import make_provider
from phorque.core.errors import CloudError
sys.path.insert(0, sys.argv[3])
from tests.cloud.cloudkit import phantom_settings
from phorque.core.options import Secret
setup_logging(True, sys.argv[1], [sys.argv[2]])
server = type("S", (), {"autoscale": type("A", (), {"url": sys.argv[4]}), "ec2": type("E", (), {"url": sys.argv[5]})})
provider = make_provider(phantom_settings(server, access_id=Secret(sys.argv[2]), max_attempts=1))
try:
    provider.describe()
except CloudError as exc:
    logging.getLogger("phorque.test").exception("describe failed: %s", exc)
    print(exc)
"""


def test_debug_logging_of_the_commands_redacts_credentials(phantom, tmp_path: Path) -> None:
    log_file = tmp_path / "phorque.log"
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(log_file), LEAKY_ID,
                           str(Path(__file__).resolve().parents[2]), phantom.autoscale.url, phantom.ec2.url],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    logged = log_file.read_text()
    assert "describe failed" in logged and "InvalidClientTokenId" in logged
    assert LEAKY_ID not in logged + done.stdout + done.stderr
    assert PHANTOM_SECRET not in logged + done.stdout + done.stderr


def test_a_credential_with_a_newline_is_redacted_also_in_its_escaped_form(moto, caplog) -> None:
    """botocore refuses a header holding a newline and quotes the header, escaped, in its error:
    ``Credential=AKID\\nREST``. That form is a credential too."""
    leaky_id, leaky_secret = "AKIDLEAK\nCHECK98765", "leak-check\n-secret-4f9a2c"
    provider = make_provider(aws_settings(moto, access_id=Secret(leaky_id), secret_key=Secret(leaky_secret),
                                          max_attempts=1))
    with pytest.raises(CloudError) as info:
        provider.describe()
    text = f"{info.value} {info.value!r}"
    assert "***" in text
    for secret in (leaky_id, leaky_secret):
        escaped = secret.encode("unicode_escape").decode()
        assert secret not in text and escaped not in text, text
    # And the log filter, for a message that quotes the credential in another way.
    from phorque.cli.common import RedactSecrets

    record = logging.LogRecord("phorque", logging.WARNING, __file__, 1, "header %r and body %s", (
        leaky_id.encode(), '{"key": "' + leaky_secret.replace("\n", "\\n") + '"}'), None)
    RedactSecrets([leaky_id, leaky_secret]).filter(record)
    shown = record.getMessage()
    assert "CHECK98765" not in shown and "4f9a2c" not in shown, shown
