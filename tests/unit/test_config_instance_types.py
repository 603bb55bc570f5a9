"""``instance_types``: several interchangeable types behind one ``[Cloud-<Name>]`` section."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from phorque.adapters.config import load_config
from phorque.core.errors import ConfigError

BASE = """
[Policy]
name = CostAware

[Cloud-amazon]
image_id = ami-12c6146b
autoscale_group_name = phorque-asg
instance_cores = 16
instance_memory_mb = 32768
max_instances = 4
{options}
"""


def config_file(tmp_path: Path, options: str) -> Path:
    path = tmp_path / "phorque.conf"
    path.write_text(textwrap.dedent(BASE.format(options=textwrap.dedent(options))))
    return path


def error(tmp_path: Path, options: str) -> ConfigError:
    path = config_file(tmp_path, options)
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert str(caught.value).startswith(f"{path}: [Cloud-amazon] {caught.value.option}: ")
    return caught.value


def test_instance_types_replace_instance_type_and_the_first_is_the_default(tmp_path: Path) -> None:
    path = config_file(tmp_path, "instance_types = c6i.4xlarge, c6a.4xlarge , m6i.4xlarge\n")
    (cloud,) = load_config(path, environ={}).clouds
    assert cloud.instance_types == ("c6i.4xlarge", "c6a.4xlarge", "m6i.4xlarge")
    assert cloud.instance_type == "c6i.4xlarge"
    # The section's shape describes every type.
    assert (cloud.instance_cores, cloud.instance_memory_mb) == (16, 32768)


def test_instance_type_may_name_one_of_the_types(tmp_path: Path) -> None:
    path = config_file(tmp_path, "instance_type = c6a.4xlarge\ninstance_types = c6i.4xlarge, c6a.4xlarge\n")
    (cloud,) = load_config(path, environ={}).clouds
    assert cloud.instance_type == "c6a.4xlarge"
    assert cloud.instance_types == ("c6i.4xlarge", "c6a.4xlarge")


def test_one_type_alone_still_works(tmp_path: Path) -> None:
    (cloud,) = load_config(config_file(tmp_path, "instance_type = t3.micro\n"), environ={}).clouds
    assert (cloud.instance_type, cloud.instance_types) == ("t3.micro", ())


def test_neither_is_an_error_that_names_both(tmp_path: Path) -> None:
    err = error(tmp_path, "")
    assert err.option == "instance_type"
    assert "required option is missing" in err.problem and "instance_types" in err.problem


@pytest.mark.parametrize("cloud_type", ["nimbus", "phantom"])
def test_a_phantom_section_cannot_have_several_types(tmp_path: Path, cloud_type: str) -> None:
    err = error(tmp_path, f"""\
        cloud_type = {cloud_type}
        cloud_uri = https://svc.example:8444
        autoscale_uri = https://svc.example:8445
        launch_config_name = hotellc@hotel
        instance_types = m1.large, m1.xlarge
        """)
    assert err.option == "instance_types"
    assert f"cloud_type {cloud_type}" in err.problem and "instance_type" in err.problem


@pytest.mark.parametrize("options,option,words", [
    ("instance_type = m6i.4xlarge\ninstance_types = c6i.4xlarge, c6a.4xlarge\n", "instance_type",
     "is not one of instance_types"),
    ("instance_types = c6i.4xlarge, c6a.4xlarge, c6i.4xlarge\n", "instance_types", "c6i.4xlarge given twice"),
    ("instance_types = c6i.4xlarge, c6a 4xlarge\n", "instance_types", "is not an instance type name"),
    ("instance_types = c6i.4xlarge, c6a.4xlarge\nlaunch_method = configuration\n", "instance_types",
     "launch template"),
])
def test_mistakes_name_the_option(tmp_path: Path, options: str, option: str, words: str) -> None:
    err = error(tmp_path, options)
    assert err.option == option and err.section == "Cloud-amazon"
    assert words in err.problem


def test_launch_method_template_or_auto_is_fine(tmp_path: Path) -> None:
    for method in ("auto", "template"):
        path = config_file(tmp_path, f"instance_types = c6i.4xlarge\nlaunch_method = {method}\n")
        (cloud,) = load_config(path, environ={}).clouds
        assert cloud.launch_method == method and cloud.instance_types == ("c6i.4xlarge",)
