"""The service examples (systemd, container, Prometheus) stay consistent with the bridge they run.

Always: the unit's restart policy matches the exit codes in bridge/errors.py, the configurations load,
the state sits on the volume, and the alert rules name only series the bridge exports. Where the tools are
installed (systemd-analyze, promtool, docker-compose; ./dev does not install them), the files are also
checked by them; a missing tool skips only that check, saying so.
"""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.config.loader import load_settings
from bridge.errors import (
    AuthError,
    CheckpointMismatch,
    ConfigError,
    InstanceLocked,
    NotFoundError,
    ProtocolError,
    StateError,
)
from bridge.ops.metrics import Metrics
from bridge.ops.tracker import Tracker

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
SECRETS = {"PANDA_API_KEY": "k", "COUCHDB_PASSWORD": "p"}


def _unit() -> configparser.ConfigParser:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(EXAMPLES / "systemd" / "bridge@.service")
    return unit


def test_the_systemd_unit_restarts_on_failure_but_not_on_errors_a_person_must_fix():
    service = _unit()["Service"]
    assert service["ExecStart"].startswith("/usr/local/bin/bridge run --config /etc/bridge/%i.toml")
    assert service["EnvironmentFile"] == "/etc/bridge/%i.env" and service["Restart"] == "on-failure"
    prevented = {int(code) for code in service["RestartPreventExitStatus"].split()}
    must_not_restart = {ConfigError, AuthError, NotFoundError, CheckpointMismatch, InstanceLocked, StateError}
    assert prevented == {error.exit_code for error in must_not_restart}
    assert ProtocolError.exit_code not in prevented and 1 not in prevented  # worth another try
    config = load_settings(EXAMPLES / "systemd" / "contributors.toml", env=SECRETS)
    assert not Path(config.checkpoint.path).is_absolute()  # inside StateDirectory, the working directory


def test_systemd_analyze_verify_passes(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed here (apt-get install systemd)")
    bridge = Path(sys.executable).with_name("bridge")  # verify checks that ExecStart exists
    text = (EXAMPLES / "systemd" / "bridge@.service").read_text().replace("/usr/local/bin/bridge", str(bridge))
    (tmp_path / "bridge@.service").write_text(text)
    (tmp_path / "bridge@contributors.service").symlink_to("bridge@.service")
    result = subprocess.run([analyze, "verify", str(tmp_path / "bridge@contributors.service")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "bridge@" not in result.stderr, result.stderr


def test_the_container_keeps_its_state_on_the_volume_and_loads_its_configuration():
    containerfile = (EXAMPLES / "container" / "Containerfile").read_text()
    assert 'VOLUME ["/state"]' in containerfile and 'ENTRYPOINT ["bridge"]' in containerfile
    assert "/healthz" in containerfile
    compose = (EXAMPLES / "container" / "compose.yaml").read_text()
    assert "- bridge-state:/state" in compose and "./bridge.toml:/etc/bridge/bridge.toml:ro" in compose
    config = load_settings(EXAMPLES / "container" / "bridge.toml", env=SECRETS)
    assert config.checkpoint.path.startswith("/state/") and config.http.listen == "0.0.0.0:9464"
    assert '"127.0.0.1:9464:9464"' in compose  # published on the host's loopback only


def test_docker_compose_accepts_the_compose_file():
    compose = shutil.which("docker-compose")
    if compose is None:
        pytest.skip("docker-compose is not installed here (apt-get install docker-compose)")
    result = subprocess.run([compose, "-f", str(EXAMPLES / "container" / "compose.yaml"), "config", "-q"],
                            capture_output=True, text=True, timeout=60,
                            env={"COUCHDB_PASSWORD": "p", "PANDA_API_KEY": "k", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr


def test_the_alert_rules_name_only_series_the_bridge_exports():
    exported = Metrics("p", Tracker()).render().decode()
    names = set(re.findall(r"^# TYPE (\w+) ", exported, re.MULTILINE))
    names |= {name + "_total" for name in names} | {name + suffix for name in names
                                                      for suffix in ("_bucket", "_count", "_sum")}
    used = set(re.findall(r"\bbridge_\w+", (EXAMPLES / "prometheus" / "alerts.yml").read_text()))
    assert used and used <= names, used - names


@pytest.mark.parametrize("args", [["check", "config", "prometheus.yml"], ["test", "rules", "alerts.test.yml"]])
def test_promtool_accepts_the_scrape_config_and_the_alert_rules_fire_as_tested(args):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed here (apt-get install prometheus)")
    result = subprocess.run([promtool, *args], capture_output=True, text=True, timeout=60,
                            cwd=EXAMPLES / "prometheus")
    assert result.returncode == 0, result.stdout + result.stderr
