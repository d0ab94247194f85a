"""Database access: the project-local cluster or the server named by ``AMR_DATABASE_URL``, its roles, migrations.

Import the modules (``amr.db.server``, ``amr.db.roles``, ...): this package imports nothing, so a light module
such as ``amr.db.roles`` does not load psycopg."""
