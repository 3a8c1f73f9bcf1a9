#!/usr/bin/env bash
# Runs every test: the static checks (ruff on training/, the TypeScript type check, prettier), the Python training
# tests (pytest), then the server tests (node --test, on test/fixtures/micro).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup-venv.sh"
cd "$root/training"
.venv/bin/ruff check --quiet .
cd "$root"
npm run --silent typecheck  # the test runner strips types: a type error would pass the tests
npm run --silent format:check
cd "$root/training"
.venv/bin/python -m pytest -q "$@"
cd "$root"
bash scripts/get-promtool.sh >/dev/null  # promtool for the metrics test (Debian package, no root)
bash scripts/get-chromium.sh >/dev/null  # Debian chromium for the playground browser test (apt-get as root, else unpacked)
npm run --silent test:server
