"""The wheel, installed outside the checkout: it carries its data files (migrations, register maps, tariffs, VEE
rules, dashboard assets), `amr db up` migrates a fresh database from it, the dashboards serve their stylesheet, and
its state directory is not site-packages/.amr.

The new virtual environment gets the third-party dependencies from the project's .venv through a .pth line naming
the .venv's site-packages. Python does not process .pth files inside a directory added that way, so the editable
install's finder (a .pth of the .venv) stays inactive and `amr` must come from the installed wheel: checked."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.services import free_port, make_state_dir

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
# The packages of [tool.setuptools.packages.find]: their non-Python files are the data the wheel must carry.
PACKAGES = ("amr", "collectors", "ingest", "billing", "dashboards", "simulators", "fleet", "app", "sql")
BUILD_TIMEOUT_S = 600  # pip fetches setuptools for the isolated build from the index: slow on a cold cache
COMMAND_TIMEOUT_S = 300  # initdb and the first start of a cluster on a busy 2-core machine


def _source_files() -> list[str]:
    """The files a checkout holds (tracked, plus new ones not ignored): what a fresh clone with this work has."""
    listing = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [name for name in listing.split("\0") if name and (ROOT / name).is_file()]


def _data_files(files: list[str]) -> list[str]:
    return sorted(f for f in files if f.split("/", 1)[0] in PACKAGES and not f.endswith((".py", ".pyi")))


@pytest.fixture(scope="module")
def source_files() -> list[str]:
    return _source_files()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory, source_files: list[str]) -> Path:
    """The wheel, built from a copy of the checkout's files: an in-tree build would leave build/ and egg-info
    behind in the checkout, and build/lib would carry files deleted since."""
    src = tmp_path_factory.mktemp("wheel-src")
    for name in source_files:
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, src / name)
    dist = tmp_path_factory.mktemp("wheel-dist")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check", "-w", str(dist), str(src)],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (built,) = dist.glob("amr_platform-*.whl")
    return built


def _site_packages(venv_dir: Path) -> Path:
    return Path(sysconfig.get_path("purelib", vars={"base": str(venv_dir), "platbase": str(venv_dir)}))


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory, wheel: Path) -> Path:
    """A fresh virtual environment outside the checkout with the wheel installed; returns its directory."""
    venv_dir = tmp_path_factory.mktemp("wheel-venv")
    assert not venv_dir.is_relative_to(ROOT)
    venv.create(venv_dir, with_pip=False, clear=True)
    # The wheel first, into the bare environment: pip must not see the .venv's editable amr-platform as installed.
    done = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv_dir / "bin" / "python"), "install", "--no-deps",
         "--no-index", "--disable-pip-version-check", str(wheel)],
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    dependencies = Path(sysconfig.get_path("purelib"))  # the project's .venv (this interpreter's)
    (_site_packages(venv_dir) / "amr_test_dependencies.pth").write_text(f"{dependencies}\n", encoding="utf-8")
    return venv_dir


@pytest.fixture()
def workdir(tmp_path: Path) -> Path:
    """A working directory outside the checkout, so that nothing is imported from the checkout's folders."""
    work = tmp_path / "work"
    work.mkdir()
    return work


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AMR_", "XDG_")) and k != "PYTHONPATH"}
    return env | {"COLUMNS": "200"} | extra


def _run(venv_dir: Path, args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(venv_dir / "bin" / args[0]), *args[1:]],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
    )


def _python(venv_dir: Path, code: str, cwd: Path, env: dict[str, str]) -> str:
    done = _run(venv_dir, ["python", "-c", code], cwd, env)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_the_wheel_lists_every_data_file(wheel: Path, source_files: list[str]) -> None:
    import zipfile

    names = set(zipfile.ZipFile(wheel).namelist())
    expected = _data_files(source_files)
    assert {"sql/001_core_schema.sql", "dashboards/assets/style.css", "billing/vee_rules.toml"} <= set(expected)
    assert [f for f in expected if f not in names] == []
    assert "sql/__init__.py" in names


def test_the_installed_package_is_imported_from_the_new_environment(installed: Path, workdir: Path) -> None:
    code = (
        "import json, amr, app, dashboards, sql, numpy\n"
        "print(json.dumps({m.__name__: m.__file__ for m in (amr, app, dashboards, sql, numpy)}))"
    )
    files = {name: Path(path) for name, path in json.loads(_python(installed, code, workdir, _env())).items()}
    site = _site_packages(installed)
    for name in ("amr", "app", "dashboards", "sql"):
        assert files[name].is_relative_to(site), f"{name} imported from {files[name]}, not the wheel"
    assert not files["numpy"].is_relative_to(site)  # the dependency comes from the project's .venv


def test_the_installed_package_carries_its_data_files(installed: Path, source_files: list[str]) -> None:
    site = _site_packages(installed)
    missing = [f for f in _data_files(source_files) if not (site / f).is_file()]
    assert missing == []
    assert sorted(p.name for p in (site / "amr" / "modbus" / "maps").glob("*.toml"))
    assert (site / "billing" / "tariffs" / "tou.toml").is_file()


def test_the_installed_package_finds_its_data_through_the_package(installed: Path, workdir: Path) -> None:
    code = (
        "import json\n"
        "from amr.db.migrate import migrations_dir, read_migrations\n"
        "from amr.modbus.registermap import MAPS_DIR\n"
        "from billing.rules import DEFAULT_RULES_FILE, read_vee_rules\n"
        "from billing.tariff_book import TARIFF_DIR, read_tariff_book\n"
        "read_vee_rules(); read_tariff_book()\n"
        "print(json.dumps({'sql': str(migrations_dir()), 'count': len(read_migrations()), 'maps': str(MAPS_DIR),"
        " 'rules': str(DEFAULT_RULES_FILE), 'tariffs': str(TARIFF_DIR)}))"
    )
    found = json.loads(_python(installed, code, workdir, _env()))
    site = _site_packages(installed)
    assert found.pop("count") == len(list((ROOT / "sql").glob("*.sql")))
    for key, path in found.items():
        assert Path(path).is_relative_to(site), f"{key}: {path}"


def test_the_state_directory_of_an_installed_copy_follows_xdg(installed: Path, workdir: Path, tmp_path: Path) -> None:
    code = "from amr.settings import read_settings; print(read_settings().state_dir)"
    xdg = tmp_path / "xdg-state"
    assert Path(_python(installed, code, workdir, _env(XDG_STATE_HOME=str(xdg))).strip()) == xdg / "amr"
    moved = tmp_path / "elsewhere"
    assert Path(_python(installed, code, workdir, _env(AMR_STATE_DIR=str(moved))).strip()) == moved


@pytest.fixture()
def state_dir() -> Iterator[Path]:
    state = make_state_dir("amr-wheel-")  # mode 0755: the cluster runs as the postgres user under root
    try:
        yield state
    finally:
        shutil.rmtree(state, ignore_errors=True)


def test_amr_db_up_from_the_installed_wheel(installed: Path, workdir: Path, state_dir: Path) -> None:
    env = _env(AMR_STATE_DIR=str(state_dir), AMR_DB_PORT=str(free_port()))
    helped = _run(installed, ["amr", "--help"], workdir, env)
    assert helped.returncode == 0, helped.stderr
    assert "db" in helped.stdout and "demo" in helped.stdout
    try:
        up = _run(installed, ["amr", "db", "up"], workdir, env)
        assert up.returncode == 0, up.stdout + up.stderr
        assert "applied migrations: 001_core_schema" in up.stdout
        status = _run(installed, ["amr", "db", "status"], workdir, env)
        assert status.returncode == 0, status.stdout + status.stderr
        count = len(list((ROOT / "sql").glob("*.sql")))
        assert f"{count} applied" in status.stdout
        assert "readings" in status.stdout and "meter_events" in status.stdout
        dashboards = _python(installed, _DASHBOARD_CHECK, workdir, env)
        result = json.loads(dashboards)
        assert result["index"] == 200 and "assets/style.css" in result["index_html"]
        assert result["css"] == 200 and result["css_bytes"] == (ROOT / "dashboards/assets/style.css").stat().st_size
        assert result["page"] == 200, result["page_body"]
    finally:
        down = _run(installed, ["amr", "db", "down"], workdir, env)
    assert down.returncode == 0, down.stdout + down.stderr
    assert "database stopped" in down.stdout
    assert (state_dir / "credentials.toml").is_file()  # the state went where AMR_STATE_DIR said


# The Dash app of the installed package against the migrated database: the index links the stylesheet, the
# stylesheet is served from the package's assets, and the rollout page renders (its queries find their tables).
_DASHBOARD_CHECK = """
import json
from amr.db.roles import Role
from amr.db.server import DatabaseServer
from amr.settings import read_settings
from dashboards.app import create_app

app = create_app(DatabaseServer.from_settings(read_settings()).conninfo(Role.READER), auth=None)
client = app.server.test_client()
index = client.get("/")
css = client.get("/assets/style.css")
payload = {
    "output": "..page.children...nav.children..",
    "outputs": [{"id": "page", "property": "children"}, {"id": "nav", "property": "children"}],
    "inputs": [{"id": "url", "property": "pathname", "value": "/"}],
    "state": [{"id": "url", "property": "search", "value": ""}],
    "changedPropIds": ["url.pathname"],
}
page = client.post("/_dash-update-component", json=payload)
print(json.dumps({
    "index": index.status_code, "index_html": index.get_data(as_text=True),
    "css": css.status_code, "css_bytes": len(css.get_data()),
    "page": page.status_code, "page_body": page.get_data(as_text=True)[:2000],
}))
"""
