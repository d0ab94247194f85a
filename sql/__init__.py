"""The platform's schema migrations, ``NNN_name.sql``, applied in order by :mod:`amr.db.migrate`.

A package (not only a folder) so that the .sql files ship as package data in the wheel and an installed copy
finds them through ``importlib.resources``, wherever it is installed; in a checkout it is this folder.
"""

# Checked by amr.db.migrate: another top-level "sql" module earlier on sys.path (a user's own folder in the
# working directory under `python -m app`) must not be mistaken for the platform's migrations.
AMR_MIGRATIONS = True
