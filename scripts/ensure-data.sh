#!/usr/bin/env bash
# Make the real Fashion-MNIST available without a download when we can: on Debian, as root,
# install the dataset-fashion-mnist package (IDX files under /usr/share/datasets/fashion-mnist/).
# Elsewhere softsweep itself downloads the files from the official mirror (checked by SHA-256).
set -euo pipefail
if [ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] \
   || [ -n "${SOFTSWEEP_DATA:-}" ] \
   || [ -f "${XDG_CACHE_HOME:-$HOME/.cache}/softsweep/fashion-mnist/train-images-idx3-ubyte.gz" ]; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing Debian's dataset-fashion-mnist package ..." >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2 && apt-get install -y -qq dataset-fashion-mnist >&2 || \
    echo "warning: could not install dataset-fashion-mnist; softsweep will try to download it." >&2
fi
