#!/usr/bin/env bash
# The browser tests drive headless Chromium through Playwright (pip's playwright package, pointed
# at the system browser: no browser download). On Debian, as root, install the chromium package
# when it is missing.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ]; then
  exit 0
fi
bash "$(dirname "$0")/apt-install.sh" chromium "the browser tests fail without it"
