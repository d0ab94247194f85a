"""Database access: the project-local cluster or the server named by ``AMR_DATABASE_URL``, its roles, migrations."""

from amr.db.server import DatabaseServer, Role

__all__ = ["DatabaseServer", "Role"]
