"""The ``amr`` command line."""

from amr.cli.main import app, main

__all__ = ["app", "main"]
