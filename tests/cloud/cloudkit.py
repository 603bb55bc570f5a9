"""Helpers for the cloud tests: settings pointing at the local servers, fault controls."""

from __future__ import annotations

import json
import urllib.request
from dataclasses import replace
from typing import Any

from phorque.adapters.config import CloudSettings
from phorque.core.options import Secret
from tests import waiting

AWS_ID, AWS_SECRET = "AKIAPHORQUETESTKEY01", "aws-secret-Zq8vL2xW9pRt4"
PHANTOM_ID, PHANTOM_SECRET = "PHANTOMACCESSID77", "phantom-secret-Hk3nB7cV1mQ"


def http(method: str, url: str, doc: Any = None, timeout: float = 10.0) -> Any:
    """A JSON request to a test server's control endpoint."""
    data = None if doc is None else json.dumps(doc).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (127.0.0.1 only)
        body = resp.read()
    try:
        return json.loads(body or b"null")
    except ValueError:
        return body


def set_faults(base_url: str, **doc: Any) -> dict[str, Any]:
    return http("POST", base_url + "/_faults", doc)


def fault_counts(base_url: str) -> dict[str, int]:
    return http("GET", base_url + "/_faults")["counts"]


def aws_settings(url: str, **overrides: Any) -> CloudSettings:
    base = CloudSettings(
        name="amazon", image_id="ami-12c6146b", autoscale_group_name="phorque-asg",
        instance_type="t3.micro", instance_cores=2, max_instances=6, cloud_type="aws",
        cloud_uri=url, autoscale_uri=url, access_id=Secret(AWS_ID), secret_key=Secret(AWS_SECRET),
        launch_config_name="phorque-lc", availability_zone="us-east-1a", price=0.1,
        connect_timeout_secs=1.0, read_timeout_secs=3.0, max_attempts=2)
    return replace(base, **overrides)


def phantom_settings(server: Any, **overrides: Any) -> CloudSettings:
    base = CloudSettings(
        name="hotel", image_id="debian-6.0.5.gz", autoscale_group_name="hotelasg",
        instance_type="m1.large", instance_cores=2, max_instances=5, cloud_type="nimbus",
        cloud_uri=server.ec2.url, autoscale_uri=server.autoscale.url,
        access_id=Secret(PHANTOM_ID), secret_key=Secret(PHANTOM_SECRET),
        launch_config_name="hotellc@hotel", availability_zone="us-east-1", price=0.0,
        connect_timeout_secs=1.0, read_timeout_secs=3.0, max_attempts=2)
    return replace(base, **overrides)


def wait_for(predicate: Any, timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something true; fail after ``timeout`` seconds."""
    return waiting.wait_for(predicate, timeout, interval=interval)
