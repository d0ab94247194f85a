"""`python -m app` = the `amr` command (used to start child processes with the same interpreter)."""

from app.cli import main

main()
