#!/usr/bin/env bash
# Creates (or refreshes) the training virtualenv training/.venv with the pinned requirements.
# Re-running is cheap: it only reinstalls when training/requirements.txt or pyproject.toml changed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/training/.venv"
python="${PYTHON:-python3.11}"
stamp="$venv/.requirements.sha256"
want="$(cat "$root/training/requirements.txt" "$root/training/pyproject.toml" | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$venv/bin/python" ]; then
  exit 0
fi
command -v "$python" >/dev/null || { echo "error: $python not found (Python 3.11 is required)" >&2; exit 1; }
echo "setting up $venv (first run takes a few minutes)" >&2
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$root/training/requirements.txt"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e "$root/training"
echo "$want" > "$stamp"
