#!/usr/bin/env bash
# Makes Debian's chromium available to the playground's browser test (test/browser/playground.test.ts, driven by
# playwright-core, which never downloads a browser of its own). A chromium already on the PATH, or one unpacked
# before, is used as is. Else: as root, `apt-get install chromium` (CI runs as root on a fresh Debian machine);
# without root, the Debian packages chromium needs and the machine lacks are downloaded with apt-get (no install) and
# unpacked into .cache/chromium/root, run through a wrapper that points LD_LIBRARY_PATH there. Prints the binary's
# path. Where it cannot be had (no apt-get, no Debian mirror), it says why on stderr and exits 0: the browser test
# then skips, saying so. GET_CHROMIUM_NO_ROOT=1 takes the no-root way even as root.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="$root/.cache/chromium"
wrapper="$cache/bin/chromium"
log="$cache/get-chromium.log"

runs() { "$1" --headless --no-sandbox --version >/dev/null 2>&1; }

for cmd in chromium chromium-browser; do
  if command -v "$cmd" >/dev/null 2>&1 && runs "$(command -v "$cmd")"; then
    command -v "$cmd"
    exit 0
  fi
done
if [ -x "$wrapper" ] && runs "$wrapper"; then
  echo "$wrapper"
  exit 0
fi

mkdir -p "$cache"
: >"$log"
unavailable() {
  echo "get-chromium: chromium is not available ($1); the playground browser test will be skipped" >&2
  [ -f "$log" ] && tail -n 5 "$log" | sed 's/^/get-chromium:   /' >&2
  exit 0
}
command -v apt-get >/dev/null 2>&1 && command -v dpkg-deb >/dev/null 2>&1 || unavailable "apt-get or dpkg-deb not found"

if [ "$(id -u)" = 0 ] && [ "${GET_CHROMIUM_NO_ROOT:-0}" != 1 ]; then
  export DEBIAN_FRONTEND=noninteractive
  # the machine's package lists where they name the package; else fresh ones (a new machine may have none)
  if ! apt-get install -y --no-install-recommends chromium >>"$log" 2>&1; then
    apt-get update >>"$log" 2>&1 || unavailable "apt-get update failed"
    apt-get install -y --no-install-recommends chromium >>"$log" 2>&1 || unavailable "apt-get install chromium failed"
  fi
  runs /usr/bin/chromium || unavailable "the installed /usr/bin/chromium does not run"
  echo /usr/bin/chromium
  exit 0
fi

# No root: the machine's package lists where they name the package; else a private copy of them, fetched from the
# machine's configured mirrors into the cache (only root may update the system's).
apt=(apt-get)
cache_apt=(apt-cache)
if ! apt-cache show chromium >>"$log" 2>&1; then
  private=(-o "Dir::State::Lists=$cache/apt/lists" -o "Dir::Cache=$cache/apt/cache" -o Debug::NoLocking=1)
  mkdir -p "$cache/apt/lists/partial" "$cache/apt/cache/archives/partial"
  apt-get "${private[@]}" update >>"$log" 2>&1 || unavailable "apt-get update failed"
  apt=(apt-get "${private[@]}")
  cache_apt=(apt-cache "${private[@]}")
fi
# chromium and every package it depends on (recursively) that is not installed here
missing=()
while read -r pkg; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
done < <("${cache_apt[@]}" depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
  --no-replaces --no-enhances chromium 2>>"$log" | grep -E '^[a-z0-9]' | grep -v ':i386$' | sort -u)
[ "${#missing[@]}" -gt 0 ] || unavailable "apt-cache found no chromium package"

work="$cache/download"
rm -rf "$work" "$cache/root"
mkdir -p "$work" "$cache/root" "$cache/bin"
cd "$work"
"${apt[@]}" download "${missing[@]}" >>"$log" 2>&1 || unavailable "apt-get download of chromium's packages failed"
for deb in ./*.deb; do
  dpkg-deb -x "$deb" "$cache/root" >>"$log" 2>&1 || unavailable "dpkg-deb could not unpack $deb"
done
cd "$root"
rm -rf "$work"
[ -x "$cache/root/usr/lib/chromium/chromium" ] || unavailable "the chromium package holds no usr/lib/chromium/chromium"
# every folder of the unpacked tree that holds shared libraries (some, as pulseaudio's, sit in sub-folders)
libdirs="$(cd "$cache/root" && find . -name '*.so*' -printf '%h\n' | sort -u | sed 's|^\.|$here|' | paste -sd:)"
cat >"$wrapper" <<EOF
#!/bin/sh
# chromium unpacked by scripts/get-chromium.sh, with the libraries unpacked beside it
here="\$(cd "\$(dirname "\$0")/../root" && pwd)"
export LD_LIBRARY_PATH="$libdirs\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
exec "\$here/usr/lib/chromium/chromium" "\$@"
EOF
chmod +x "$wrapper"
runs "$wrapper" || unavailable "the unpacked chromium does not run"
echo "$wrapper"
