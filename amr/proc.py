"""Running system programs, as the service user when the CLI runs as root (PostgreSQL refuses root)."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from amr.errors import ServiceError


def is_root() -> bool:
    return os.geteuid() == 0


def service_user_ids(user: str) -> tuple[int, int] | None:
    """(uid, gid) of a system user when we run as root and it exists, else None (run as ourselves)."""
    if not is_root():
        return None
    try:
        entry = pwd.getpwnam(user)
    except KeyError as exc:
        raise ServiceError(f"system user {user!r} is missing: install its Debian package") from exc
    return entry.pw_uid, entry.pw_gid


def chown_tree(path: Path, ids: tuple[int, int] | None) -> None:
    if ids is None:
        return
    for root, dirs, files in os.walk(path):
        os.chown(root, *ids)
        for name in dirs + files:
            os.chown(os.path.join(root, name), *ids, follow_symlinks=False)


def require_program(path: str) -> str:
    found = shutil.which(path) if os.sep not in path else (path if Path(path).exists() else None)
    if not found:
        raise ServiceError(f"{path} not found: run `make setup` (scripts/setup-system.sh) first")
    return found


def run_as(
    user: str, argv: Sequence[str], *, check: bool = True, env: dict[str, str] | None = None, timeout_s: float = 120.0
) -> subprocess.CompletedProcess[str]:
    """Run argv as `user` when root (via runuser), else as the current user; capture output as text."""
    full = ["runuser", "-u", user, "--", *argv] if service_user_ids(user) is not None else list(argv)
    proc = subprocess.run(full, capture_output=True, text=True, env=env, timeout=timeout_s, check=False)
    if check and proc.returncode != 0:
        output = proc.stderr.strip() or proc.stdout.strip()
        raise ServiceError(f"{' '.join(argv[:2])} failed ({proc.returncode}): {output}")
    return proc


def user_can_reach(user: str, path: Path) -> bool:
    """Whether `user` can traverse to `path` (every parent directory searchable by it)."""
    if service_user_ids(user) is None:
        return True
    existing = path
    while not existing.exists():
        existing = existing.parent
    return run_as(user, ["test", "-x", str(existing)], check=False).returncode == 0
