#!/usr/bin/env bash
# Makes Prometheus' promtool available to the metrics test (test/routes/health.test.ts) without root: downloads the
# Debian package `prometheus` with apt-get (no install) and unpacks its promtool into .cache/promtool/bin. A promtool
# already on the PATH, or one fetched before, is used as is. Prints promtool's path. Where it cannot be had (no
# apt-get, no Debian mirror), it says why on stderr and exits 0: the metrics test then skips, saying so.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="$root/.cache/promtool"
bin="$cache/bin/promtool"
log="$cache/get-promtool.log"

if command -v promtool >/dev/null 2>&1; then
  command -v promtool
  exit 0
fi
if "$bin" --version >/dev/null 2>&1; then
  echo "$bin"
  exit 0
fi

unavailable() {
  echo "get-promtool: promtool is not available ($1); the promtool metrics test will be skipped" >&2
  [ -f "$log" ] && tail -n 5 "$log" | sed 's/^/get-promtool:   /' >&2
  exit 0
}
command -v apt-get >/dev/null 2>&1 && command -v dpkg-deb >/dev/null 2>&1 || unavailable "apt-get or dpkg-deb not found"

work="$cache/download"
rm -rf "$work"
mkdir -p "$work" "$cache/bin"
: >"$log"
cd "$work"
# The machine's package lists where they name the package; else a private copy of them, fetched from the machine's
# configured mirrors into the cache (a fresh machine may have none, and only root may update the system's).
if ! apt-get download prometheus >>"$log" 2>&1; then
  private=(-o "Dir::State::Lists=$cache/apt/lists" -o "Dir::Cache=$cache/apt/cache" -o Debug::NoLocking=1)
  mkdir -p "$cache/apt/lists/partial" "$cache/apt/cache/archives/partial"
  apt-get "${private[@]}" update >>"$log" 2>&1 || unavailable "apt-get update failed"
  apt-get "${private[@]}" download prometheus >>"$log" 2>&1 || unavailable "apt-get download prometheus failed"
fi
dpkg-deb -x prometheus_*.deb unpacked >>"$log" 2>&1 || unavailable "dpkg-deb could not unpack the package"
mv unpacked/usr/bin/promtool "$bin"
cd "$root"
rm -rf "$work"
"$bin" --version >>"$log" 2>&1 || unavailable "the unpacked promtool does not run"
echo "$bin"
