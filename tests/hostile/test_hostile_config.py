"""Hostile configuration files: a ConfigError naming the file (or a configuration), never a crash,
never a credential in a message, never a value the daemon cannot live with."""

from __future__ import annotations

import math
import threading

import pytest
from hypothesis import HealthCheck, given, settings

from phorque.adapters.config import LONGEST_SECS, load_config
from phorque.core.errors import ConfigError
from phorque.runtime.triggers import Trigger
from tests.hostile.bounds import assert_bounded, measured
from tests.hostile.strategies import (
    ACCESS_ID,
    BASE_CONFIG,
    CONFIG_ENV,
    SECRET_KEY,
    SECRET_TOKEN,
    config_file,
)

SECRETS = (ACCESS_ID, SECRET_KEY, SECRET_TOKEN)


@settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck))
@given(config_file())
def test_hostile_configuration_loads_or_names_its_mistake(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("conf") / "phorque.conf"
    path.write_bytes(data)
    outcome = measured(lambda: load_config(path, environ=dict(CONFIG_ENV)), (ConfigError,))
    assert_bounded(outcome, len(data), "configuration")
    if outcome.error is not None:
        text = f"{outcome.error} {outcome.error!r}"
        assert str(path) in text
        assert len(str(outcome.error)) < 2_000 + len(str(path)), "a value was echoed whole"
        assert not any(secret in text for secret in SECRETS)
        return
    config = outcome.value
    shown = f"{config!r} {config.summary()}"
    assert not any(secret in shown for secret in SECRETS)
    # Whatever was accepted is something the daemon can wait on and compute with.
    p = config.phorque
    for value in (p.loop_sleep_secs, p.command_timeout_secs, p.event_delay_secs, p.boot_timeout_secs):
        assert math.isfinite(value) and 0 <= value <= LONGEST_SECS
    for cloud in config.clouds:
        assert math.isfinite(cloud.price) and cloud.max_instances <= 2 ** 53
        assert cloud.read_timeout_secs <= LONGEST_SECS and cloud.charge_time_secs <= LONGEST_SECS


def _write(tmp_path, text: str):
    path = tmp_path / "phorque.conf"
    path.write_text(text)
    return path


@pytest.mark.parametrize("line", ["secret_key = $abc-def/Gh1SECRETVALUE", "secret_key = ${Gh1SECRETVALUE",
                                  "access_id = $Gh1SECRETVALUE-", "secret_key = $Gh1SECRETVALUE%(x)s"])
def test_a_literal_credential_starting_with_a_dollar_is_never_echoed(tmp_path, line):
    name = line.split()[0]
    text = BASE_CONFIG.replace(f"{name} = {SECRET_KEY if name == 'secret_key' else ACCESS_ID}", line)
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, text), environ={})
    assert info.value.option == name
    assert "Gh1SECRETVALUE" not in str(info.value)


@pytest.mark.parametrize("option,value,words", [
    ("loop_sleep_secs", "1" + "0" * 30, "too large"),
    ("loop_sleep_secs", "99999999999", "above the maximum"),
    ("command_timeout_secs", "1e308", "above the maximum"),
    ("command_timeout_secs", "inf", "not a finite number"),
    ("event_delay_secs", "1e999", "not a finite number"),
    ("max_instances", "9" * 5000, "characters) is not an integer"),
    ("price", "inf", "not a finite number"),
    ("charge_time_secs", "99999999999", "above the maximum"),
    ("read_timeout_secs", "1e12", "above the maximum"),
])
def test_values_the_daemon_could_not_wait_on_are_configuration_errors(tmp_path, option, value, words):
    # Accepted, such values crashed later: a wait or a timer past 2**33 s raises OverflowError.
    section = "[Phorque]" if option in ("loop_sleep_secs", "command_timeout_secs", "event_delay_secs") \
        else "[Cloud-hotel]"
    text = BASE_CONFIG.replace(section, f"{section}\n{option} = {value}", 1)
    text = text.replace("loop_sleep_secs = 120\n", "") if option == "loop_sleep_secs" else text
    text = text.replace("command_timeout_secs = 30\n", "") if option == "command_timeout_secs" else text
    text = text.replace("max_instances = 4\n", "") if option == "max_instances" else text
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, text), environ={})
    assert info.value.option == option and words in str(info.value)
    assert len(str(info.value)) < 400


def test_the_longest_accepted_wait_is_one_the_daemon_can_make(tmp_path):
    text = BASE_CONFIG.replace("loop_sleep_secs = 120", f"loop_sleep_secs = {LONGEST_SECS}")
    config = load_config(_write(tmp_path, text), environ={})
    trigger = Trigger()
    threading.Timer(0.2, trigger.fire, ("test",)).start()
    # The daemon's own wait between reconciliations; beyond 2**33 s it raises OverflowError.
    fired = trigger.wait(config.phorque.loop_sleep_secs, gather=config.phorque.event_delay_secs)
    assert fired.reasons["test"] == 1


@pytest.mark.parametrize("edit", [
    lambda text: text.replace("price_per_hour = 10", "price_per_hour" + " e_per_hour" * 5000 + " = 10"),
    lambda text: text + "[" + "Section" * 5000 + "]\nx = 1\n",
    lambda text: text.replace("name = CostAware", "name = " + "CostAwae = " * 5000),
    lambda text: text.replace("[Cloud-hotel]", "[Cloud-hotel" + "]hotel" * 5000 + "]").replace("max_instances = 4\n", ""),
])
def test_huge_option_and_section_names_are_cut_short_in_messages(tmp_path, edit):
    # Found by bench/fuzz.py: configparser takes anything before "=" as a name, spaces included.
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, edit(BASE_CONFIG)), environ={})
    assert len(str(info.value)) < 1_000, str(info.value)[:200]
