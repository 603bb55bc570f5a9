"""HTTPS endpoints with a self-signed certificate: refused by default, accepted with the site's
CA bundle or with verification turned off. A bare host name means HTTPS."""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from phorque.adapters.cloud import make_provider
from phorque.core.errors import CloudUnreachable
from tests.cloud.cloudkit import PHANTOM_ID, PHANTOM_SECRET, phantom_settings
from tests.conftest import FAST
from tests.servers import phantom as phantom_server
from tests.servers.httpserve import tls_context


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 signed by its own key (as a site without a public CA)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "phantom.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


@pytest.fixture(scope="module")
def tls_phantom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[phantom_server.PhantomServer, Path]]:
    cert, key = self_signed(tmp_path_factory.mktemp("tls"))
    server = phantom_server.start({PHANTOM_ID: PHANTOM_SECRET}, FAST, tls=tls_context(str(cert), str(key)))
    yield server, cert
    server.stop()


def bare_host_settings(server: phantom_server.PhantomServer, **overrides):
    # "127.0.0.1" and a port, as a site would write them: HTTPS is implied.
    return replace(phantom_settings(server), autoscale_uri="127.0.0.1", autoscale_port=server.autoscale.port,
                   cloud_uri="127.0.0.1", cloud_port=server.ec2.port, max_attempts=1, **overrides)


def test_a_self_signed_endpoint_is_refused_by_default(tls_phantom) -> None:
    server, _ = tls_phantom
    assert server.autoscale.url.startswith("https://")
    with pytest.raises(CloudUnreachable) as info:
        make_provider(bare_host_settings(server)).describe()
    assert "SSL" in str(info.value) or "certificate" in str(info.value)


def test_the_sites_ca_bundle_is_accepted(tls_phantom) -> None:
    server, cert = tls_phantom
    provider = make_provider(bare_host_settings(server, ca_bundle=str(cert)))
    provider.ensure_setup()
    provider.set_desired(1)
    assert provider.describe().desired == 1


def test_verification_can_be_turned_off(tls_phantom, recwarn, caplog) -> None:
    server, _ = tls_phantom
    provider = make_provider(bare_host_settings(server, verify_tls=False))
    provider.ensure_setup()
    provider.set_desired(2)
    assert provider.describe().desired == 2
    # Said once in the log, not as a warning on every request.
    assert not [w for w in recwarn if "Unverified HTTPS" in str(w.message)]
    assert any("not checked" in r.getMessage() for r in caplog.records)
