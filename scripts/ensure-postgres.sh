#!/usr/bin/env bash
# The many-workers tests start a throwaway PostgreSQL server (tests/servers.py: initdb and
# pg_ctl in a temporary folder). On Debian, as root, install the server package when missing.
set -euo pipefail
if ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || command -v pg_ctl >/dev/null 2>&1; then
  exit 0
fi
bash "$(dirname "$0")/apt-install.sh" postgresql "the many-workers tests fail without its server (pg_ctl, initdb)"
