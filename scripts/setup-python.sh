#!/usr/bin/env bash
# The project's virtual environment with the package installed editable and its dev extra.
# Idempotent: reinstalls only when pyproject.toml changed since the last install.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv
STAMP="$VENV/.installed-$(sha1sum pyproject.toml | cut -c1-12)"
[ -f "$STAMP" ] && exit 0
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --disable-pip-version-check --upgrade pip
"$VENV/bin/pip" install -q --disable-pip-version-check -e '.[dev]'
rm -f "$VENV"/.installed-*
touch "$STAMP"
