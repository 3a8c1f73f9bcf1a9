#!/usr/bin/env bash
# Regenerates the server's test model bundle test/fixtures/micro/: the micro preset with random weights (seed 0), a
# tokenizer trained on dlip's tiny built-in corpus, written by the same exporter as real bundles. Must stay < 1 MB.
# Usage: scripts/make-fixtures.sh   (needs training/.venv: npm run setup:python or scripts/setup-venv.sh)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$root/test/fixtures/micro"
cd "$root/training"
.venv/bin/python -m dlip export --random-init --preset micro --seed 0 --name micro --out "$out" --overwrite
bytes=$(du -cb "$out"/* | tail -1 | cut -f1)
if [ "$bytes" -ge 1000000 ]; then
  echo "error: $out is $bytes bytes; the fixture must stay under 1 MB" >&2
  exit 1
fi
echo "fixture $out: $bytes bytes"
