#!/usr/bin/env bash
# apt-install.sh PACKAGE OTHERWISE: install a Debian package when run as root on Debian; else, or
# if that fails, say so and what happens without it (OTHERWISE). Never fails itself: what needs
# the package says what is missing.
set -uo pipefail
package=$1 otherwise=$2
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing Debian's $package package ..." >&2
  export DEBIAN_FRONTEND=noninteractive
  if apt-get update -qq >&2 && apt-get install -y -qq --no-install-recommends "$package" >&2; then
    exit 0
  fi
fi
echo "warning: Debian's $package package is not installed (apt-get install $package); $otherwise." >&2
