"""The deployment templates stay in step with the code they describe."""

from __future__ import annotations

import configparser
from pathlib import Path

from app.services.emqx_acl import render_emqx_acl

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
HARDENING = {
    "User": "amr",
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ReadWritePaths": "/var/lib/amr",
    "PrivateTmp": "yes",
    "Restart": "on-failure",
}


def test_emqx_acl_is_generated_from_the_topic_layout() -> None:
    assert (DEPLOY / "emqx" / "acl.conf").read_text() == render_emqx_acl()


def test_every_service_unit_is_hardened_and_runs_the_amr_command() -> None:
    units = sorted((DEPLOY / "systemd").glob("*.service"))
    assert {u.name for u in units} == {
        "amr-collector@.service",
        "amr-dashboard-refresh.service",
        "amr-dashboards.service",
        "amr-ingest@.service",
        "amr-vee.service",
    }
    for unit in units:
        parser = configparser.ConfigParser(strict=False, interpolation=None)
        parser.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
        parser.read(unit)
        service = parser["Service"]
        for key, value in HARDENING.items():
            assert service.get(key) == value, f"{unit.name}: {key}"
        assert service["ExecStart"].startswith("/opt/amr/venv/bin/amr "), unit.name
    wants = (DEPLOY / "systemd" / "amr.target").read_text()
    assert "amr-vee.service" in wants  # the target starts the continuous VEE with the rest
