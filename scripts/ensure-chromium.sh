#!/usr/bin/env bash
# The browser tests drive headless Chromium through Playwright (pip's playwright package, pointed
# at the system browser: no browser download). On Debian, as root, install the chromium package
# when it is missing.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ]; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing Debian's chromium package (headless browser for the browser tests) ..." >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2 && apt-get install -y -qq --no-install-recommends chromium >&2
else
  echo "warning: Chromium is missing; install it (Debian: apt-get install chromium) or the browser tests fail." >&2
fi
