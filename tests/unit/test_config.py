"""Configuration loading: the seed README's options, defaults, $VARIABLES and precise errors."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phorque.adapters.config import load_config
from phorque.core.errors import ConfigError

SEED = """
[Phorque]
loop_sleep_secs = 120
cluster_directory = /opt/torque-3.0.6/
queue_name = default

[Policy]
name = OnDemandPlusPlus
price_per_hour = 5
multiplier = 1

[Cloud-hotel]
cloud_uri = svc.uc.futuregrid.org
cloud_port = 8444
autoscale_uri = svc.uc.futuregrid.org
autoscale_port = 8445
image_id = debian-6.0.5.gz
price = 0
access_id = $ACCESS_ID
secret_key = $SECRET_KEY
launch_config_name = hotellc@hotel
autoscale_group_name = hotelasg
cloud_type = nimbus
availability_zone = us-east-1
instance_type = m1.large
instance_cores = 2
max_instances = 1024
charge_time_secs = 3600
"""

ENV = {"ACCESS_ID": "AKIDSEEDACCESS", "SECRET_KEY": "seed-secret-value-123"}


def write(tmp_path: Path, text: str, name: str = "phorque.conf") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_seed_readme_configuration_loads_with_its_meaning(tmp_path):
    config = load_config(write(tmp_path, SEED), environ=ENV)
    assert config.phorque.loop_sleep_secs == 120
    assert config.phorque.cluster_directory == "/opt/torque-3.0.6/"
    assert config.phorque.queues == frozenset({"default"})
    assert config.policy.name == "OnDemandPlusPlus"
    assert config.policy.price_per_hour == 5 and config.policy.multiplier == 1
    (cloud,) = config.clouds
    assert cloud.name == "hotel" and cloud.dialect == "phantom"
    assert cloud.instance_cores == 2 and cloud.max_instances == 1024
    assert cloud.access_id.reveal() == "AKIDSEEDACCESS"
    assert cloud.secret_key.reveal() == "seed-secret-value-123"
    assert cloud.endpoint_url("autoscale") == "https://svc.uc.futuregrid.org:8445/"
    assert cloud.endpoint_url("cloud") == "https://svc.uc.futuregrid.org:8444/"
    # New options get their defaults.
    assert config.phorque.torque_home == "/var/spool/torque"
    assert config.phorque.state_dir == "/var/lib/phorque"
    assert config.phorque.lock_path == "/var/lib/phorque/phorque.lock"
    assert cloud.boot_timeout_secs == config.phorque.boot_timeout_secs == 900


def test_secrets_never_in_repr_or_summary(tmp_path):
    config = load_config(write(tmp_path, SEED), environ=ENV)
    for text in (repr(config), str(config.clouds[0]), config.summary()):
        assert "seed-secret-value-123" not in text and "AKIDSEEDACCESS" not in text


@pytest.mark.parametrize("value,expected", [("", None), ("*", None), ("batch", {"batch"}),
                                            ("batch, long", {"batch", "long"})])
def test_queue_name_empty_or_star_means_every_queue(tmp_path, value, expected):
    text = SEED.replace("queue_name = default", f"queue_name = {value}")
    queues = load_config(write(tmp_path, text), environ=ENV).phorque.queues
    assert (queues if queues is None else set(queues)) == expected


def test_full_http_url_is_used_as_given(tmp_path):
    text = SEED.replace("cloud_uri = svc.uc.futuregrid.org", "cloud_uri = http://127.0.0.1:5000")
    text = text.replace("cloud_port = 8444\n", "")
    cloud = load_config(write(tmp_path, text), environ=ENV).clouds[0]
    assert cloud.endpoint_url("cloud") == "http://127.0.0.1:5000/"


def test_clouds_are_ordered_by_price(tmp_path):
    extra = SEED.replace("[Cloud-hotel]", "[Cloud-dear]").replace("price = 0", "price = 2").replace(
        "hotelasg", "dearasg")
    text = SEED + extra[extra.index("[Cloud-dear]"):]
    config = load_config(write(tmp_path, text), environ=ENV)
    assert [c.name for c in config.clouds] == ["hotel", "dear"]


def error_for(tmp_path: Path, text: str, environ=ENV) -> ConfigError:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ=environ)
    assert str(path) in str(caught.value)
    return caught.value


@pytest.mark.parametrize("edit,section,option,words", [
    (("max_instances = 1024", "max_instances = lots"), "Cloud-hotel", "max_instances", "not an integer"),
    (("instance_cores = 2\n", ""), "Cloud-hotel", "instance_cores", "missing"),
    (("multiplier = 1", "multiplier = 1\nfrobnicate = yes"), "Policy", "frobnicate", "unknown option"),
    (("name = OnDemandPlusPlus", "name = Magic"), "Policy", "name", "OnDemandPlusPlus"),
    (("price = 0", "price = -1"), "Cloud-hotel", "price", "minimum"),
    (("loop_sleep_secs = 120", "loop_sleep_secs = 2m"), "Phorque", "loop_sleep_secs", "not an integer"),
    (("cloud_type = nimbus", "cloud_type = openstack"), "Cloud-hotel", "cloud_type", "one of"),
    (("launch_config_name = hotellc@hotel", "launch_config_name = hotellc"), "Cloud-hotel",
     "launch_config_name", "@"),
])
def test_each_mistake_names_file_section_and_option(tmp_path, edit, section, option, words):
    error = error_for(tmp_path, SEED.replace(*edit))
    assert (error.section, error.option) == (section, option)
    assert f"[{section}] {option}" in str(error)
    assert words in str(error)


def test_unknown_section(tmp_path):
    error = error_for(tmp_path, SEED + "\n[Clouds-x]\na = 1\n")
    assert error.section == "Clouds-x" and "unknown section" in str(error)


def test_unset_environment_variable_is_named(tmp_path):
    error = error_for(tmp_path, SEED, environ={"ACCESS_ID": "x"})
    assert error.option == "secret_key" and "SECRET_KEY" in str(error)


def test_unreadable_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.conf", environ=ENV)
    with pytest.raises(ConfigError, match="directory"):
        load_config(tmp_path, environ=ENV)
    binary = tmp_path / "binary.conf"
    binary.write_bytes(b"[Phorque]\nloop_sleep_secs = \xff\xfe\n")
    with pytest.raises(ConfigError, match="UTF-8"):
        load_config(binary, environ=ENV)


def test_policy_names_available_are_listed(tmp_path):
    error = error_for(tmp_path, SEED.replace("name = OnDemandPlusPlus", "name = Nope"))
    for name in ("OnDemandPlusPlus", "OnDemand", "CostAware"):
        assert name in str(error)


def test_duplicate_option_and_garbage_line(tmp_path):
    error = error_for(tmp_path, SEED.replace("price = 0", "price = 0\nprice = 1"))
    assert error.option == "price" and "twice" in str(error)
    error = error_for(tmp_path, "garbage before any section\n" + SEED)
    assert "line 1" in str(error)


def test_malformed_secret_value_is_not_echoed(tmp_path):
    env = {"ACCESS_ID": "AKIDSEEDACCESS", "SECRET_KEY": "seed-secret-value-123"}
    error = error_for(tmp_path, SEED.replace("access_id = $ACCESS_ID", "access_id = $ACC-ESS"), env)
    # A literal credential may start with "$" too: the value is not echoed, only what is wrong.
    assert error.option == "access_id" and "not a valid environment variable reference" in str(error)
    assert "ACC-ESS" not in str(error) and "seed-secret-value-123" not in str(error)


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_files_give_config_errors_not_crashes(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("fuzz") / "phorque.conf"
    path.write_bytes(text.encode("utf-8", errors="replace"))
    try:
        load_config(path, environ={})
    except ConfigError:
        pass


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(["max_instances", "instance_cores", "price", "charge_time_secs", "cloud_port"]),
       st.text(max_size=20))
def test_arbitrary_values_are_checked(tmp_path_factory, option, value):
    lines = [ln for ln in SEED.splitlines() if not ln.startswith(option + " ")]
    value = value.replace("\n", " ").replace("\r", " ")
    text = "\n".join(lines) + f"\n{option} = {value}\n"
    path = tmp_path_factory.mktemp("fuzz") / "phorque.conf"
    path.write_bytes(text.encode("utf-8", errors="replace"))
    try:
        load_config(path, environ=ENV)
    except ConfigError as exc:
        assert exc.option in (option, None) or exc.section is not None


@pytest.mark.parametrize("option,section", [("secret_key", "Cloud-hotel"), ("access_id", "Cloud-hotel"),
                                            ("image_id", "Cloud-hotel"), ("state_dir", "Phorque"),
                                            ("name", "Policy")])
@pytest.mark.parametrize("bad", ["line one\nline two", "tab\there", "bell\x07"])
def test_an_environment_value_with_a_control_character_is_a_configuration_error(tmp_path, option,
                                                                                 section, bad):
    secret = f"Sekrit{bad}Value99"
    lines = [ln for ln in SEED.splitlines() if not ln.startswith(option + " ")]
    at = lines.index(f"[{section}]") + 1
    lines.insert(at, f"{option} = $PHORQUE_TEST_VALUE")
    path = tmp_path / "phorque.conf"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={**ENV, "PHORQUE_TEST_VALUE": secret})
    assert (info.value.section, info.value.option) == (section, option)
    assert "environment variable PHORQUE_TEST_VALUE holds" in str(info.value)
    assert "Sekrit" not in str(info.value) and "Value99" not in str(info.value)


def test_a_value_spanning_lines_in_the_file_is_a_configuration_error(tmp_path):
    path = tmp_path / "phorque.conf"
    path.write_text(SEED.replace("image_id = debian-6.0.5.gz", "image_id = debian-6.0.5.gz\n  second-line"))
    with pytest.raises(ConfigError) as info:
        load_config(path, environ=ENV)
    assert info.value.option == "image_id" and "a newline" in str(info.value)


SECOND = """
[Cloud-other]
cloud_uri = svc.uc.futuregrid.org
autoscale_uri = {uri}
{port}image_id = debian-6.0.5.gz
access_id = $ACCESS_ID
secret_key = $SECRET_KEY
launch_config_name = hotellc@hotel
autoscale_group_name = hotelasg
cloud_type = nimbus
instance_type = m1.large
instance_cores = 2
max_instances = 4
{region}"""


@pytest.mark.parametrize("uri,port", [
    ("svc.uc.futuregrid.org/", "autoscale_port = 8445\n"),          # a trailing slash
    ("https://svc.uc.futuregrid.org:8445", ""),                     # the port in the URL
    ("HTTPS://SVC.UC.FutureGrid.ORG:8445/", "autoscale_port = 8445\n"),  # upper case, port twice
])
def test_one_group_reached_through_differently_written_endpoints_is_refused(tmp_path, uri, port):
    text = SEED + SECOND.format(uri=uri, port=port, region="")
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), environ=ENV)
    assert (info.value.section, info.value.option) == ("Cloud-other", "autoscale_group_name")
    assert "already used by [Cloud-hotel]" in str(info.value)


def test_the_same_group_name_in_another_region_is_another_group(tmp_path):
    text = SEED + SECOND.format(uri="svc.uc.futuregrid.org", port="autoscale_port = 8445\n",
                                region="region = us-west-2\n")
    config = load_config(write(tmp_path, text), environ=ENV)
    assert len(config.clouds) == 2
    default_port = SEED + SECOND.format(uri="https://svc.uc.futuregrid.org:443/", port="", region="")
    other = load_config(write(tmp_path, default_port), environ=ENV)  # 443 is not 8445
    assert len(other.clouds) == 2
