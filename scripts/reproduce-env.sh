# Sourced by scripts/reproduce.sh and scripts/reproduce-v1.sh: the Python environment, training/ as the working
# folder, and $root / $py. Each script then names its own data and run folders.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup-venv.sh"
cd "$root/training"
py=.venv/bin/python
