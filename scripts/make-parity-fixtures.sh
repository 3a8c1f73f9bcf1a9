#!/usr/bin/env bash
# Regenerates test/parity/ (expected token ids, pixels, embeddings, captions and answers from the Python side for
# the micro fixture bundle; the server's parity tests compare against it). Run after scripts/make-fixtures.sh.
# Usage: scripts/make-parity-fixtures.sh   (needs training/.venv: npm run setup:python)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root/training"
PYTHONPATH="$root/training" .venv/bin/python "$root/scripts/parity_fixtures.py"  # this checkout's dlip
