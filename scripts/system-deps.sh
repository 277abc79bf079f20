#!/usr/bin/env bash
# System packages the browser test needs: Debian's chromium (driven by playwright) and the
# widget manager's JavaScript from the npm registry (so the rendered notebook needs no CDN).
# Installs what is missing when it can (root + apt-get, npm); otherwise says what to do.
# Usage: scripts/system-deps.sh        (idempotent: a second run only checks)
set -euo pipefail
cd "$(dirname "$0")/.."

find_chromium() {
  for candidate in "${TASKORCH_CHROMIUM:-}" /usr/bin/chromium /usr/bin/chromium-browser; do
    if [ -n "$candidate" ] && [ -x "$candidate" ]; then echo "$candidate"; return 0; fi
  done
  return 1
}

if chromium_path="$(find_chromium)"; then
  echo "system-deps: chromium found at $chromium_path"
elif [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "system-deps: installing Debian's chromium with apt-get (about 500 MB) ..."
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
  chromium_path="$(find_chromium)" || { echo "system-deps: chromium did not install" >&2; exit 1; }
  echo "system-deps: chromium installed at $chromium_path"
else
  echo "system-deps: chromium is missing and cannot be installed here" \
       "(needs root and apt-get); install it with: sudo apt-get install -y chromium," \
       "or set TASKORCH_CHROMIUM to a Chromium binary. The browser test will be skipped." >&2
fi

# @jupyter-widgets/html-manager: renders the stored widget state in a static page, offline.
vendor=".cache/js"
if [ -f "$vendor/html-manager/dist/embed.js" ]; then
  echo "system-deps: widget manager found in $vendor/html-manager"
elif command -v npm >/dev/null 2>&1; then
  echo "system-deps: fetching @jupyter-widgets/html-manager from the npm registry ..."
  mkdir -p "$vendor"
  tarball="$(cd "$vendor" && npm pack --silent @jupyter-widgets/html-manager@1 | tail -n 1)"
  rm -rf "$vendor/html-manager" && mkdir -p "$vendor/html-manager"
  tar -xzf "$vendor/$tarball" -C "$vendor/html-manager" --strip-components=1
  rm -f "$vendor/$tarball"
  echo "system-deps: widget manager in $vendor/html-manager"
else
  echo "system-deps: npm is missing: the browser test fetches @jupyter-widgets/html-manager" \
       "with it (sudo apt-get install -y npm)" >&2
fi
