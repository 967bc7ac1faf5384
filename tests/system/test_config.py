"""Config errors name the key and what is wrong; gate check-config and gate run exit 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

from gate import config
from gate.cli.main import main
from tests.support.lanes import write_config


def problems(data) -> list[str]:
    with pytest.raises(config.ConfigError) as info:
        config.parse(data)
    return info.value.problems


def test_valid_config_parses(config_data):
    cfg = config.parse(config_data)
    assert cfg.gate_id == "lane-1" and cfg.turnstile.pulse == 0.1 and len(cfg.gt1_keys) == 1


def test_shipped_example_is_complete_and_only_lacks_a_real_key():
    with pytest.raises(config.ConfigError) as info:
        config.load("config/gate.example.toml")
    [only] = info.value.problems
    assert only.startswith("trust.gt1_issuers[0].public_key: ")


def test_unknown_key_wrong_type_missing_value_and_same_pin_twice(config_data):
    config_data["turnstile"]["pulse_msec"] = 300
    config_data["turnstile"]["passage_timeout"] = "eight"
    del config_data["gate"]["venue"]
    config_data["gpio"]["red"]["pin"] = 27
    found = problems(config_data)
    assert "turnstile.pulse_msec: unknown key" in found
    assert any(p.startswith("turnstile.passage_timeout: expected float, got str") for p in found)
    assert "gate.venue: required value missing" in found
    assert "gpio.red.pin: pin 27 is already used by gpio.green.pin" in found


def test_impossible_combinations_are_named(config_data):
    del config_data["gpio"]["passage_in"]
    config_data["scanner"]["direction"] = "out"
    del config_data["gpio"]["unlock_out"]
    found = problems(config_data)
    assert "gpio.passage_in: required when gpio.unlock_in is set" in found
    assert "scanner.direction: 'out' needs gpio.unlock_out" in found


def test_bad_values_are_named(config_data):
    config_data["gate"]["mode"] = "open"
    config_data["gpio"]["buzzer"]["pin"] = 40
    config_data["policy"]["formats"] = ["gt1", "barcode128"]
    config_data["trust"]["gt1_issuers"][0]["public_key"] = "AAAA"
    found = problems(config_data)
    assert "gate.mode: must be one of normal, free, locked, got 'open'" in found
    assert "gpio.buzzer.pin: must be at most 27, got 40" in found
    assert "policy.formats: unknown format 'barcode128' (known: gt1, jws, totp, eth_qr, pretix_sig1, pretix_random)" in found
    assert "trust.gt1_issuers[0].public_key: decodes to 3 bytes, expected 32" in found


def test_pins_with_another_job_on_a_pi_are_warned_of(tmp_path, config_data, capsys):
    from gate.cli import main as cli

    config_data["gpio"]["buzzer"]["pin"] = 14  # the UART a serial scanner or the console uses
    path = write_config(tmp_path / "gate.toml", config_data)
    assert cli.main(["check-config", "--config", str(path)]) == 0  # it works: a warning, not an error
    assert "warning: gpio.buzzer.pin: GPIO 14 is the UART's TXD" in capsys.readouterr().out


def test_non_finite_numbers_are_refused(config_data):
    config_data["turnstile"]["passage_timeout"] = float("nan")  # TOML writes nan: the relay would never time out
    config_data["trust"]["command_max_age"] = float("inf")  # would carry out any command, however old
    found = problems(config_data)
    assert "turnstile.passage_timeout: must be a finite number, got nan" in found
    assert "trust.command_max_age: must be a finite number, got inf" in found


def test_check_config_and_run_exit_2_naming_the_key(tmp_path, config_data, capsys):
    config_data["gpio"]["grean"] = {"pin": 9}
    path = write_config(tmp_path / "gate.toml", config_data)
    assert main(["check-config", "--config", str(path)]) == 2
    assert "gpio.grean: unknown key" in capsys.readouterr().err
    run = subprocess.run([sys.executable, "-m", "gate", "run", "--config", str(path)], capture_output=True, text=True, timeout=30)
    assert run.returncode == 2 and "gpio.grean: unknown key" in run.stderr


def test_broken_toml_and_missing_file(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[gate\nid = 1")
    assert main(["check-config", "--config", str(bad)]) == 2
    assert "not valid TOML" in capsys.readouterr().err
    assert main(["check-config", "--config", str(tmp_path / "none.toml")]) == 2
    assert "file not found" in capsys.readouterr().err


def test_sync_section_errors_are_named(config_data, tmp_path):
    config_data["sync"] = {"hots": "broker", "port": 70000, "topic_root": "gate/#", "cert_file": "client.crt",
                           "password_file": str(tmp_path / "missing")}
    found = problems(config_data)
    assert "sync.hots: unknown key" in found
    assert "sync.port: must be at most 65535, got 70000" in found
    assert "sync.topic_root: must end with '/' and hold no wildcard, got 'gate/#'" in found
    assert any(p.startswith("sync.cert_file: no such file") for p in found)
    assert any(p.startswith("sync.password_file: cannot read") for p in found)


def test_sync_defaults_follow_the_gate(config_data, tmp_path):
    (tmp_path / "pw").write_text("s3cret\n")
    config_data["sync"] = {"host": "broker", "password_file": str(tmp_path / "pw")}
    sync = config.parse(config_data).sync
    assert (sync.topic_root, sync.username, sync.password, sync.tls) == ("gate/v2/test-venue/", "lane-1", "s3cret", False)
    assert "s3cret" not in repr(sync)  # a logged config never shows the password
