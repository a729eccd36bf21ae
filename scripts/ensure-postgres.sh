#!/usr/bin/env bash
# The many-workers tests start a throwaway PostgreSQL server (tests/servers.py: initdb and
# pg_ctl in a temporary folder). On Debian, as root, install the server package when missing.
set -euo pipefail
if ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || command -v pg_ctl >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing Debian's postgresql package (server binaries for the tests) ..." >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2 && apt-get install -y -qq --no-install-recommends postgresql >&2
else
  echo "warning: PostgreSQL's server (pg_ctl, initdb) is missing; install it (Debian: apt-get install postgresql) or the many-workers tests fail." >&2
fi
