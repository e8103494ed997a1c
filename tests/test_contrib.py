"""The deployment files in contrib/ are valid for the tools that read them.

Each check runs the real tool (systemd-analyze, logrotate, promtool) and is
skipped where the tool is not installed.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONTRIB = ROOT / "contrib"
SLURMCAST = Path(sys.executable).with_name("slurmcast")


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed")
    return path


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    analyze = tool("systemd-analyze")
    unit = (CONTRIB / "systemd" / "slurmcast.service").read_text()
    assert "ExecStart=/opt/slurmcast/.venv/bin/slurmcast serve" in unit
    assert "NoNewPrivileges=yes" in unit and "ProtectSystem=strict" in unit
    # The installed path, so that verify can check the command exists.
    local = tmp_path / "slurmcast.service"
    local.write_text(unit.replace("/opt/slurmcast/.venv/bin/slurmcast", str(SLURMCAST)))
    result = subprocess.run(
        [analyze, "verify", str(local)], capture_output=True, text=True, timeout=60
    )
    problems = [
        line for line in (result.stdout + result.stderr).splitlines() if "slurmcast" in line
    ]
    assert result.returncode == 0 and problems == [], result.stdout + result.stderr


def test_the_unit_starts_a_server_its_options_accept() -> None:
    unit = (CONTRIB / "systemd" / "slurmcast.service").read_text()
    (exec_start,) = [line for line in unit.splitlines() if line.startswith("ExecStart=")]
    args = exec_start.split()[2:]  # after the program and "serve"
    assert args[0] == "--config"
    # Every flag it passes exists (parsed by the real CLI, which exits 0 on --help).
    flags = [arg for arg in args if arg.startswith("--")]
    help_text = subprocess.run(
        [str(SLURMCAST), "serve", "--help"], capture_output=True, text=True, timeout=60
    ).stdout
    assert all(flag in help_text for flag in flags)


def test_logrotate_config_rotates_a_log_in_place(tmp_path: Path) -> None:
    logrotate = tool("logrotate")
    log = tmp_path / "slurmcast.log"
    log.write_text("a line\n")
    config = tmp_path / "slurmcast.conf"
    text = (CONTRIB / "logrotate" / "slurmcast").read_text()
    config.write_text(text.replace("/opt/slurmcast/slurmcast.log", str(log)))
    subprocess.run(
        [logrotate, "--state", str(tmp_path / "state"), "--force", str(config)],
        check=True,
        timeout=60,
    )
    # copytruncate: the file the server holds open is emptied, the lines are in .1.
    assert log.exists() and log.read_text() == ""
    assert (tmp_path / "slurmcast.log.1").read_text() == "a line\n"


def test_prometheus_scrape_config_is_valid() -> None:
    promtool = tool("promtool")
    result = subprocess.run(
        [promtool, "check", "config", str(CONTRIB / "prometheus" / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
