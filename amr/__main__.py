"""`python -m amr` = the `amr` command (used to start child processes with the same interpreter)."""

from amr.cli import main

main()
