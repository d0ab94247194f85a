"""Where the platform finds its migrations and keeps its state, in a checkout and installed (tests/app/test_wheel.py
runs an installed wheel end to end)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from amr.db.migrate import apply_migrations, migrations_dir, read_migrations
from amr.db.server import DatabaseServer, Role
from amr.errors import MigrationError
from amr.settings import PROJECT_ROOT, SYSTEM_STATE_DIR, checkout_root, default_state_dir, read_settings

ROOT = Path(__file__).resolve().parents[2]


def test_the_migrations_come_from_the_sql_package() -> None:
    assert migrations_dir() == ROOT / "sql"
    assert [m.path.name for m in read_migrations()] == sorted(p.name for p in (ROOT / "sql").glob("*.sql"))


def test_no_migration_files_is_refused_not_up_to_date(db: DatabaseServer, tmp_path: Path) -> None:
    (tmp_path / "README").write_text("not a migration\n")
    with pytest.raises(MigrationError, match=f"{tmp_path}: no migration files .*incomplete, refusing to run"):
        read_migrations(tmp_path)
    with pytest.raises(MigrationError, match="no migration files"):
        apply_migrations(db.conninfo(Role.OWNER), sql_dir=tmp_path)


def test_another_sql_package_first_on_the_path_is_refused(tmp_path: Path) -> None:
    # `python -m app` puts the working directory first on sys.path: a user's own sql/ package there shadows ours.
    (tmp_path / "sql").mkdir()
    (tmp_path / "sql" / "__init__.py").write_text("")
    code = f"import sys; sys.path.insert(1, {str(ROOT)!r}); from amr.db.migrate import migrations_dir; migrations_dir()"
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert f"{tmp_path / 'sql' / '__init__.py'}: this 'sql' is not amr-platform's migrations package" in done.stderr


def test_a_checkout_is_recognised_by_its_pyproject(tmp_path: Path) -> None:
    assert checkout_root() == PROJECT_ROOT == ROOT
    assert checkout_root(tmp_path) is None  # an installed package: nothing beside it
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "someone-else"\n')
    assert checkout_root(tmp_path) is None
    (tmp_path / "pyproject.toml").write_text("[project\n")
    assert checkout_root(tmp_path) is None


def test_the_state_directory_defaults(tmp_path: Path) -> None:
    home = tmp_path / "home"
    xdg = tmp_path / "xdg"
    assert default_state_dir({"XDG_STATE_HOME": str(xdg)}, checkout=ROOT, is_root=True) == ROOT / ".amr"
    assert default_state_dir({"XDG_STATE_HOME": str(xdg)}, checkout=None, is_root=False, home=home) == xdg / "amr"
    assert default_state_dir({"XDG_STATE_HOME": str(xdg)}, checkout=None, is_root=True, home=home) == xdg / "amr"
    # XDG base directory spec: a relative value is invalid and ignored
    relative = {"XDG_STATE_HOME": "state"}
    assert default_state_dir(relative, checkout=None, is_root=False, home=home) == home / ".local/state/amr"
    assert default_state_dir({"HOME": str(home)}, checkout=None, is_root=False) == home / ".local/state/amr"
    assert default_state_dir({}, checkout=None, is_root=True, home=home) == SYSTEM_STATE_DIR == Path("/var/lib/amr")
    (home / ".local/state/amr").mkdir(parents=True)  # root's existing state stays in use
    assert default_state_dir({}, checkout=None, is_root=True, home=home) == home / ".local/state/amr"


def test_settings_state_directory_in_this_checkout(tmp_path: Path) -> None:
    config = tmp_path / "amr.toml"
    config.write_text("")
    environ = {"XDG_STATE_HOME": str(tmp_path / "xdg")}
    assert read_settings(config, environ=environ).state_dir == ROOT / ".amr"
    moved = tmp_path / "moved"
    assert read_settings(config, environ=environ | {"AMR_STATE_DIR": str(moved)}).state_dir == moved
    config.write_text(f'state_dir = "{tmp_path / "from-file"}"\n')
    assert read_settings(config, environ=environ).state_dir == tmp_path / "from-file"
