#!/usr/bin/env bash
# Runs every test: the Python training tests (pytest), then the server tests once the server exists.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup-venv.sh"
cd "$root/training"
.venv/bin/python -m pytest -q "$@"
