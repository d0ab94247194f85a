"""Where the local cluster finds PostgreSQL's server programs: AMR_PG_BINDIR, else `pg_config --bindir`; a clear
error naming both when neither works (the programs on this machine, and real `amr db up` processes)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from amr.db.cluster import find_pg_bindir
from amr.db.server import DatabaseServer
from amr.errors import ServiceError
from amr.settings import read_settings

ROOT = Path(__file__).resolve().parents[2]


def _executable(path: Path, text: str = "#!/bin/sh\nexit 0\n") -> Path:
    path.write_text(text)
    path.chmod(0o755)
    return path


def test_pg_config_names_the_directory_of_the_server_programs() -> None:
    pg_config = shutil.which("pg_config")
    assert pg_config, "pg_config is needed (scripts/setup-system.sh installs PostgreSQL 15)"
    printed = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=True).stdout.strip()
    found = find_pg_bindir(None)
    assert found == Path(printed)
    assert (found / "pg_ctl").is_file() and (found / "initdb").is_file()


def test_a_configured_directory_wins_and_reaches_the_cluster(tmp_path: Path) -> None:
    bin_dir = tmp_path / "pgbin"
    bin_dir.mkdir()
    _executable(bin_dir / "pg_ctl")
    assert find_pg_bindir(bin_dir, search_path="") == bin_dir  # pg_config is not even looked for
    config = tmp_path / "amr.toml"
    config.write_text("")
    settings = read_settings(config, environ={"AMR_PG_BINDIR": str(bin_dir), "AMR_STATE_DIR": str(tmp_path / "state")})
    assert settings.db.bin_dir == bin_dir
    cluster = DatabaseServer.from_settings(settings).cluster
    assert cluster is not None and cluster.bin_dir == bin_dir


def test_a_configured_directory_without_pg_ctl_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ServiceError, match=f"AMR_PG_BINDIR.*{tmp_path}.*no pg_ctl"):
        find_pg_bindir(tmp_path)


def test_no_pg_config_and_no_variable_names_both(tmp_path: Path) -> None:
    with pytest.raises(ServiceError, match="AMR_PG_BINDIR is not set and pg_config is not on PATH") as caught:
        find_pg_bindir(None, search_path=str(tmp_path))
    assert "set AMR_PG_BINDIR" in str(caught.value)


def test_a_client_only_pg_config_is_refused(tmp_path: Path) -> None:
    # libpq's own pg_config (no server installed) names a directory without pg_ctl.
    _executable(tmp_path / "pg_config", f"#!/bin/sh\necho {tmp_path}\n")
    with pytest.raises(ServiceError, match=f"pg_config --bindir` gave '{tmp_path}', which holds no pg_ctl"):
        find_pg_bindir(None, search_path=str(tmp_path))


def _db_up(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """`amr db up` on a fresh state directory: it fails at the first program it needs, before creating anything."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AMR_")}
    clean |= {"AMR_STATE_DIR": str(tmp_path / "state"), "AMR_DB_DATA_DIR": str(tmp_path / "pg" / "data")} | env
    return subprocess.run(
        [sys.executable, "-m", "app", "db", "up"], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=120
    )


def test_amr_db_up_names_a_wrong_variable(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    done = _db_up(tmp_path, AMR_PG_BINDIR=str(empty))
    assert done.returncode == 2, done.stderr
    assert "AMR_PG_BINDIR" in done.stderr and str(empty) in done.stderr.replace("\n", "")
    assert not (tmp_path / "pg").exists()


def test_amr_db_up_without_pg_config_names_both(tmp_path: Path) -> None:
    no_programs = tmp_path / "path"
    no_programs.mkdir()
    done = _db_up(tmp_path, PATH=str(no_programs))
    assert done.returncode == 2, done.stderr
    message = " ".join(done.stderr.split())
    assert "AMR_PG_BINDIR is not set and pg_config is not on PATH" in message
    assert not (tmp_path / "pg").exists()
